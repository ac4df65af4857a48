package stack

import (
	"encoding/binary"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"

	"github.com/xstack/xstack/stack/packet"
)

// Receive offload: the frames of one burst go through gVisor's GRO, which
// merges consecutive in-order segments of a TCP flow into one packet, so
// that gVisor's TCP runs once per merged segment instead of once per
// frame (and acknowledges once). The burst ends with Stack.Deliver, which
// flushes what GRO holds: nothing stays held between passes.
//
// A merged segment carries the first segment's TCP checksum and an IPv4
// header whose total length changed, so gVisor must skip its checksum
// checks for it. gVisor decides that per packet from the link endpoint's
// CapabilityRXChecksumOffload (the NIC reads Capabilities for every
// packet it is handed), and under that capability it checks no IPv4
// header checksum and no TCP or UDP checksum (ICMP checksums it checks
// always). So the endpoint checks those itself before GRO, on the frame
// as received, and drops and counts what fails. A frame whose transport
// checksum it cannot check in place (a fragment, whose checksum covers
// the reassembled datagram; an IPv6 packet with extension headers; a
// truncated header gVisor counts as malformed) goes to gVisor with the
// capability off, after GRO has let go of what it held, so that gVisor
// checks it as it always did and its order in the burst is kept.

// rxOffload is the endpoint's GRO and checksum state. Only the lcore loop
// uses it, except off and validated, which the control plane and gVisor's
// goroutines read.
type rxOffload struct {
	gro gro.GRO
	// on says whether this burst goes through GRO: off as it was when the
	// burst began, so that turning GRO off never lets a frame overtake
	// one GRO holds.
	on bool
	// off is net.inet.tcp.gro=0.
	off atomic.Bool
	// validated is what Capabilities reports as RX checksum offload: set
	// while the packets handed to gVisor have had their checksums checked
	// by the endpoint. validatedNow is the loop's copy, so that the atomic
	// is written only when it changes.
	validated    atomic.Bool
	validatedNow bool

	badChecksum atomic.Uint64 // frames dropped for a bad checksum
	delivered   atomic.Uint64 // packets handed to gVisor, merged ones once
}

func (r *rxOffload) init(e *endpoint) {
	r.gro.Init(true)
	r.gro.Dispatcher = (*groSink)(e)
	r.on = true
}

// setValidated sets what Capabilities reports for the packets gVisor is
// handed next.
func (r *rxOffload) setValidated(v bool) {
	if r.validatedNow != v {
		r.validatedNow = v
		r.validated.Store(v)
	}
}

// enqueue hands pkt to gVisor, through GRO when its checksums were checked
// (validated) and GRO is on.
func (e *endpoint) enqueue(pkt *gvstack.PacketBuffer, validated bool) {
	r := &e.rx
	if validated && r.on {
		// GRO checks the checksums itself unless told they hold.
		pkt.RXChecksumValidated = true
		r.setValidated(true)
		r.gro.Enqueue(pkt)
		return
	}
	if r.on {
		r.setValidated(true)
		r.gro.Flush()
	}
	r.setValidated(validated)
	(*groSink)(e).DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
}

// beginBurst starts a burst: it takes GRO's setting for the burst.
func (e *endpoint) beginBurst() { e.rx.on = !e.rx.off.Load() }

// endBurst hands gVisor what GRO holds; the burst is over.
func (e *endpoint) endBurst() {
	r := &e.rx
	if r.on {
		r.setValidated(true)
		r.gro.Flush()
	}
}

// groSink is the endpoint as GRO's dispatcher: it counts what GRO lets go
// and passes it to gVisor.
type groSink endpoint

func (s *groSink) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *gvstack.PacketBuffer) {
	s.rx.delivered.Add(1)
	if d := s.dispatcher; d != nil {
		d.DeliverNetworkPacket(proto, pkt)
	}
}

func (s *groSink) DeliverLinkPacket(proto tcpip.NetworkProtocolNumber, pkt *gvstack.PacketBuffer) {
	if d := s.dispatcher; d != nil {
		d.DeliverLinkPacket(proto, pkt)
	}
}

var _ gvstack.NetworkDispatcher = (*groSink)(nil)

// rxChecksums checks the checksums of frame, whose headers p holds, that
// gVisor skips under RX checksum offload. ok is false when one is wrong:
// the frame is to be dropped. all says whether every such checksum of the
// frame was checked here; when it is false gVisor must check the frame
// itself.
func rxChecksums(frame []byte, p *packet.Parsed) (ok, all bool) {
	v4 := p.Flags&packet.IPv4 != 0
	switch {
	case v4:
		// RFC 791: the one's complement sum of the header, checksum
		// included, is all ones.
		if checksum.Checksum(frame[header.EthernetMinimumSize:p.L4Off], 0) != 0xffff {
			return false, false
		}
	case p.Flags&packet.IPv6 == 0:
		return true, false // ARP, or an IP header gVisor counts as malformed
	}
	if p.Flags&packet.Fragment != 0 {
		return true, false
	}
	l4 := frame[p.L4Off:p.End]
	switch tcpip.TransportProtocolNumber(p.Proto) {
	case header.TCPProtocolNumber:
		if p.Flags&packet.TCP == 0 {
			return true, false
		}
	case header.UDPProtocolNumber:
		// gVisor counts a length outside the datagram as malformed and
		// sums the bytes the length covers (RFC 768).
		if len(l4) < header.UDPMinimumSize {
			return true, false
		}
		n := int(binary.BigEndian.Uint16(l4[4:6]))
		if n < header.UDPMinimumSize || n > len(l4) {
			return true, false
		}
		if v4 && l4[6] == 0 && l4[7] == 0 {
			return true, true // RFC 768: no checksum; IPv6 requires one (RFC 8200 8.1)
		}
		l4 = l4[:n]
	case header.ICMPv4ProtocolNumber:
		// gVisor checks ICMP checksums whatever the capability.
		return true, v4
	case header.ICMPv6ProtocolNumber:
		return true, !v4
	default:
		return true, false
	}
	// The pseudo-header (RFC 9293 3.1, RFC 768, RFC 8200 8.1): addresses,
	// protocol, transport length.
	sum := checksum.Checksum(p.AddrPair(frame), 0)
	sum = checksum.Combine(sum, uint16(p.Proto))
	sum = checksum.Combine(sum, uint16(len(l4)))
	return checksum.Checksum(l4, sum) == 0xffff, true
}
