package core

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/stack/packet"
)

// Verdict is what an lcore does with a frame it received.
type Verdict uint8

const (
	// Local: the frame is processed by the lcore that received it.
	Local Verdict = iota
	// HandOff: another lcore owns the frame's flow; copy the frame to its
	// hand-off ring and do not process it here.
	HandOff
	// Broadcast: every lcore needs the frame (neighbour information):
	// process it here and copy it to every other lcore.
	Broadcast
)

var verdictNames = [...]string{Local: "local", HandOff: "hand-off", Broadcast: "broadcast"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// Steer decides which lcore owns a received frame when the NIC's hash is
// not known (veth, virtio) and active connections encode their lcore in the
// local port instead: lcore i's stack picks its ephemeral ports from
// [portBase + i*portsPerLcore, portBase + (i+1)*portsPerLcore), so a reply
// carries its owner in the destination port. Classify is a pure function of
// the frame: each lcore has its own Steer and calls it on every frame of a
// burst, on the loop goroutine, without allocating.
//
// The rules, by frame:
//   - TCP and UDP over IPv4, or over IPv6 with no extension header: the
//     lcore whose ephemeral range holds the destination port; a port in no
//     range (a listening port: a passive flow stays on the queue the NIC
//     chose, since every lcore listens) is Local. A listening port inside
//     the ephemeral ranges is steered like an ephemeral port: keep them
//     apart.
//   - ICMP echo replies (v4 and v6): the lcore whose range holds the
//     identifier, which gVisor's ping endpoints take from the ephemeral
//     range. Echo requests are Local: whoever receives them answers.
//   - ICMP errors (v4 destination unreachable, time exceeded, parameter
//     problem; v6 the same and packet too big) quoting a TCP or UDP packet
//     or an echo request: the lcore whose range holds the quoted packet's
//     source port or identifier, since that packet was ours (RFC 792,
//     RFC 4443 2.4: the error carries as much of it as fits). Path MTU
//     discovery for an active connection needs this.
//   - IPv4 fragments (MF set or a fragment offset) and IPv6 packets whose
//     first header is a Fragment header: lcore 0, since reassembly needs
//     every fragment in one stack and only the first one carries ports. A
//     reassembled datagram of an active flow of another lcore is then not
//     delivered to its socket on lcore 0; TCP avoids fragments (path MTU
//     discovery), fragmented UDP to an active socket on lcore > 0 is lost.
//   - IPv6 with any other extension header first: Local.
//   - ARP requests and replies: Broadcast. Replies, so that the lcore that
//     asked learns the answer whichever queue it arrived on; requests,
//     because each lcore learns the sender's address from them (a peer
//     whose MAC address changed asks again with its new address). Every
//     lcore answers a request; the duplicate replies do no harm.
//   - ICMPv6 Neighbor Solicitations, Neighbor Advertisements and Router
//     Advertisements: Broadcast, for the same reasons. Other ICMPv6: Local.
//   - Anything else, and any frame too short or malformed to read the
//     fields a rule needs: Local (the stack counts and drops what is bad).
//
// With one lcore every frame is Local. The owner returned with Local and
// Broadcast is the lcore itself; it is always in [0, nLcores).
type Steer struct {
	n        int
	self     int
	portBase uint32
	perLcore uint32
	portEnd  uint32 // portBase + n*perLcore: the first port past the ranges
}

// NewSteer makes the steering for lcore self of nLcores, whose ephemeral
// port ranges are portsPerLcore ports each, from portBase up. It panics
// when the arguments do not describe such a set (the config layer checks
// them first): nLcores < 1, self out of range, portsPerLcore 0 with more
// than one lcore, or ranges past port 65535.
func NewSteer(nLcores, self int, portBase, portsPerLcore uint16) *Steer {
	if nLcores < 1 || self < 0 || self >= nLcores {
		panic(fmt.Sprintf("core.NewSteer: lcore %d of %d", self, nLcores))
	}
	end := uint32(portBase) + uint32(nLcores)*uint32(portsPerLcore)
	if (nLcores > 1 && portsPerLcore == 0) || end > 1<<16 {
		panic(fmt.Sprintf("core.NewSteer: %d lcores of %d ports from %d do not fit in the port space", nLcores, portsPerLcore, portBase))
	}
	return &Steer{n: nLcores, self: self, portBase: uint32(portBase), perLcore: uint32(portsPerLcore), portEnd: end}
}

// PortRange returns lcore i's ephemeral port range [lo, hi], what its
// stack's SetPortRange takes.
func (s *Steer) PortRange(i int) (lo, hi uint16) {
	lo32 := s.portBase + uint32(i)*s.perLcore
	return uint16(lo32), uint16(lo32 + s.perLcore - 1)
}

// Classify returns what the lcore does with frame, an Ethernet frame it
// received, and the owner lcore for HandOff (the lcore itself otherwise).
// It reads at most the headers, never writes, and does not allocate. A
// caller that has the frame's headers parsed already calls ClassifyParsed.
func (s *Steer) Classify(frame []byte) (verdict Verdict, owner int) {
	if s.n == 1 {
		return Local, s.self
	}
	var p packet.Parsed
	packet.Parse(frame, &p)
	return s.ClassifyParsed(&p)
}

// ClassifyParsed is Classify of the frame p was parsed from.
func (s *Steer) ClassifyParsed(p *packet.Parsed) (verdict Verdict, owner int) {
	if s.n == 1 {
		return Local, s.self
	}
	f := p.Flags
	// The common case first: TCP or UDP, not a fragment.
	if f&(packet.Ports|packet.Fragment) == packet.Ports {
		return s.byPort(p.DstPort)
	}
	switch {
	case f&packet.ARP != 0:
		// Every lcore keeps its own neighbour table, so every lcore must
		// see what a peer says of its address: replies, and requests too
		// (a peer whose MAC address changed flushes its own table and
		// asks again, with its new address as the sender). Each lcore
		// answers a request: the peer gets one identical reply per
		// lcore, which does no harm.
		if p.ARPOp == header.ARPRequest || p.ARPOp == header.ARPReply {
			return Broadcast, s.self
		}
	case f&packet.Fragment != 0:
		// Reassembly needs every fragment in one stack.
		return s.to(0)
	case f&packet.Quoted != 0:
		// An error about a packet this host sent: the quoted source
		// port or identifier is the local end.
		return s.byPort(p.QuotedPort)
	case f&packet.IPv4 != 0:
		if f&packet.Ident != 0 && header.ICMPv4Type(p.ICMPType) == header.ICMPv4EchoReply {
			return s.byPort(p.Ident)
		}
	case f&(packet.IPv6|packet.ICMP) == packet.IPv6|packet.ICMP:
		switch t := header.ICMPv6Type(p.ICMPType); {
		case t == header.ICMPv6NeighborSolicit || t == header.ICMPv6NeighborAdvert || t == header.ICMPv6RouterAdvert:
			return Broadcast, s.self
		case t == header.ICMPv6EchoReply && f&packet.Ident != 0:
			return s.byPort(p.Ident)
		}
	}
	return Local, s.self
}

// byPort steers by a local port: the lcore whose ephemeral range holds it,
// or Local when none does.
func (s *Steer) byPort(port uint16) (Verdict, int) {
	off := uint32(port) - s.portBase // wraps to a large value below the base
	if off >= s.portEnd-s.portBase {
		return Local, s.self
	}
	return s.to(int(off / s.perLcore))
}

func (s *Steer) to(owner int) (Verdict, int) {
	if owner == s.self {
		return Local, s.self
	}
	return HandOff, owner
}

// ToeplitzHash returns the Toeplitz hash of input under key, the receive
// side scaling hash of the Microsoft RSS specification that NICs compute
// over a packet's addresses and ports. The key needs len(input)+4 bytes
// (a 40-byte key covers IPv6 with ports); missing key bytes count as zero.
func ToeplitzHash(key, input []byte) uint32 {
	// win holds the 64 key bits starting at the current input bit; its top
	// 32 bits are what a set input bit XORs in.
	var win uint64
	for i := range 8 {
		win = win<<8 | uint64(keyByte(key, i))
	}
	var h uint32
	for i, b := range input {
		for bit := 7; bit >= 0; bit-- {
			if b>>bit&1 != 0 {
				h ^= uint32(win >> 32)
			}
			win <<= 1
		}
		win |= uint64(keyByte(key, i+8))
	}
	return h
}

func keyByte(key []byte, i int) byte {
	if i < len(key) {
		return key[i]
	}
	return 0
}

// RSS is a NIC's receive side scaling set-up: the Toeplitz key and the
// indirection table that maps a hash to a queue (ethtool -x; the
// ETHTOOL_GRSSH ioctl reads both). It tells an active connection which
// local port makes the peer's packets land on the opener's queue.
type RSS struct {
	Key   []byte   // the Toeplitz key, usually 40 bytes
	Table []uint32 // queue = Table[hash % len(Table)]
}

// rssInput lays out the hash input of a packet from src to dst, as the
// NIC reads it: source address, destination address, source port,
// destination port. It returns the input and the bit offset of the
// destination port in it.
func rssInput(buf *[36]byte, src, dst netip.AddrPort) (in []byte, dportBit int) {
	sa, da := src.Addr().Unmap(), dst.Addr().Unmap()
	n := 4
	if sa.Is6() {
		n = 16
	}
	if sa.Is4() {
		a := sa.As4()
		copy(buf[:], a[:])
	} else {
		a := sa.As16()
		copy(buf[:], a[:])
	}
	if da.Is4() {
		a := da.As4()
		copy(buf[n:], a[:])
	} else {
		a := da.As16()
		copy(buf[n:], a[:])
	}
	binary.BigEndian.PutUint16(buf[2*n:], src.Port())
	binary.BigEndian.PutUint16(buf[2*n+2:], dst.Port())
	return buf[:2*n+4], (2*n + 2) * 8
}

// Queue returns the queue the NIC delivers a TCP or UDP packet from src to
// dst to (both IPv4 or both IPv6), or 0 when the table is empty.
func (r *RSS) Queue(src, dst netip.AddrPort) int {
	if len(r.Table) == 0 {
		return 0
	}
	var buf [36]byte
	in, _ := rssInput(&buf, src, dst)
	return int(r.Table[ToeplitzHash(r.Key, in)%uint32(len(r.Table))])
}

// PickPort returns the first port from `from` up to hi, then from lo, such
// that the peer's packets for a connection from local:port to remote land
// on queue: the Fastsocket / F-Stack way of keeping an active connection on
// the core that opened it. ok is false when no port in [lo, hi] does (a
// queue absent from the table, or a range too small for it). A caller whose
// bind fails with the port taken asks again from port+1. The hash is linear
// in its input, so the fixed part is computed once and each candidate
// costs 16 XORs at most; PickPort does not allocate.
func (r *RSS) PickPort(queue int, local netip.Addr, remote netip.AddrPort, lo, hi, from uint16) (port uint16, ok bool) {
	if len(r.Table) == 0 || lo > hi {
		return 0, false
	}
	var buf [36]byte
	in, dportBit := rssInput(&buf, remote, netip.AddrPortFrom(local, 0))
	base := ToeplitzHash(r.Key, in)
	// portKey[j] is what bit j of the port (from the top) XORs in.
	var portKey [16]uint32
	for j := range portKey {
		portKey[j] = keyWindow(r.Key, dportBit+j)
	}
	if from < lo || from > hi {
		from = lo
	}
	span := uint32(hi) - uint32(lo) + 1
	for i := range span {
		p := uint16(uint32(lo) + (uint32(from-lo)+i)%span)
		h := base
		for j := range 16 {
			if p>>(15-j)&1 != 0 {
				h ^= portKey[j]
			}
		}
		if int(r.Table[h%uint32(len(r.Table))]) == queue {
			return p, true
		}
	}
	return 0, false
}

// keyWindow returns the 32 key bits starting at bit off.
func keyWindow(key []byte, off int) uint32 {
	var w uint64
	for i := range 5 {
		w = w<<8 | uint64(keyByte(key, off/8+i))
	}
	return uint32(w >> (8 - off%8))
}
