// Package testframe builds the Ethernet frames that tests feed to xstack's
// parsers, classifier and receive path: Ethernet, ARP, IPv4 (with flags,
// fragment offset and options), IPv6 (with fragment and options extension
// headers), TCP, UDP and ICMP. Every header is written by gVisor's header
// encoders rather than by the code under test, so a parser is checked
// against an independent writer; Checksums sets the checksums with gVisor's
// checksum package.
//
// Builders return fresh slices and leave every checksum zero, so a test can
// spoil a field first and then decide whether the checksums should match
// the spoiled frame. Addresses default to the peer sending to us: MACPeer
// to MACUs, V4Peer to V4Us, V6Peer to V6Us.
package testframe

import (
	"cmp"
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// The addresses of the two ends, from the test ranges the rigs use
// (198.18.0.0/15, 2001:2::/48).
var (
	MACUs   = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x01")
	MACPeer = tcpip.LinkAddress("\x02\x00\x00\x00\x00\x02")
	V4Us    = tcpip.AddrFrom4([4]byte{198, 18, 0, 1})
	V4Peer  = tcpip.AddrFrom4([4]byte{198, 18, 0, 2})
	V6Us    = tcpip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: 1})
	V6Peer  = tcpip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: 2})
)

// Eth is an Ethernet header. Src and Dst default to MACPeer and MACUs.
type Eth struct {
	Src, Dst tcpip.LinkAddress
}

// Frame returns payload behind an Ethernet header of type typ.
func (e Eth) Frame(typ tcpip.NetworkProtocolNumber, payload []byte) []byte {
	e.Src, e.Dst = cmp.Or(e.Src, MACPeer), cmp.Or(e.Dst, MACUs)
	b := make([]byte, header.EthernetMinimumSize+len(payload))
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: e.Src, DstAddr: e.Dst, Type: typ})
	copy(b[header.EthernetMinimumSize:], payload)
	return b
}

// Frame is payload in an Ethernet frame of type typ from MACPeer to MACUs.
func Frame(typ tcpip.NetworkProtocolNumber, payload []byte) []byte {
	return Eth{}.Frame(typ, payload)
}

// IPv4 is an IPv4 header. Src and Dst default to V4Peer and V4Us, TTL to 64.
type IPv4 struct {
	Src, Dst tcpip.Address
	Proto    tcpip.TransportProtocolNumber
	ID       uint16
	Flags    uint8
	FragOff  uint16 // in bytes, a multiple of 8
	TTL      uint8
	Options  []byte // a multiple of 4 bytes, at most 40
}

// Packet returns payload behind the IPv4 header, with the total length and
// header length it makes.
func (h IPv4) Packet(payload []byte) []byte {
	h.Src, h.Dst, h.TTL = cmp.Or(h.Src, V4Peer), cmp.Or(h.Dst, V4Us), cmp.Or(h.TTL, 64)
	hl := header.IPv4MinimumSize + len(h.Options)
	b := make([]byte, hl+len(payload))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(b)), ID: h.ID, Flags: h.Flags, FragmentOffset: h.FragOff,
		TTL: h.TTL, Protocol: uint8(h.Proto), SrcAddr: h.Src, DstAddr: h.Dst,
	})
	ip.SetHeaderLength(uint8(hl))
	copy(b[header.IPv4MinimumSize:], h.Options)
	copy(b[hl:], payload)
	return b
}

// Frame is the packet in an Ethernet frame from MACPeer to MACUs.
func (h IPv4) Frame(payload []byte) []byte {
	return Frame(header.IPv4ProtocolNumber, h.Packet(payload))
}

// IPv6 is an IPv6 header. Src and Dst default to V6Peer and V6Us, HopLimit
// to 64.
type IPv6 struct {
	Src, Dst tcpip.Address
	Next     tcpip.TransportProtocolNumber
	HopLimit uint8
}

// Packet returns payload (extension headers included) behind the IPv6
// header, with the payload length it makes.
func (h IPv6) Packet(payload []byte) []byte {
	h.Src, h.Dst, h.HopLimit = cmp.Or(h.Src, V6Peer), cmp.Or(h.Dst, V6Us), cmp.Or(h.HopLimit, 64)
	b := make([]byte, header.IPv6MinimumSize+len(payload))
	header.IPv6(b).Encode(&header.IPv6Fields{
		PayloadLength: uint16(len(payload)), TransportProtocol: h.Next,
		HopLimit: h.HopLimit, SrcAddr: h.Src, DstAddr: h.Dst,
	})
	copy(b[header.IPv6MinimumSize:], payload)
	return b
}

// Frame is the packet in an Ethernet frame from MACPeer to MACUs.
func (h IPv6) Frame(payload []byte) []byte {
	return Frame(header.IPv6ProtocolNumber, h.Packet(payload))
}

// FragmentHeader is an IPv6 Fragment extension header (RFC 8200 section
// 4.5) of packet id at byte offset off (a multiple of 8), followed by
// next, with payload after it.
func FragmentHeader(next tcpip.TransportProtocolNumber, id uint32, off int, more bool, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	b[0] = uint8(next)
	v := uint16(off)
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:], v)
	binary.BigEndian.PutUint32(b[4:], id)
	copy(b[8:], payload)
	return b
}

// OptionsHeader is a Hop-by-Hop or Destination Options extension header
// (RFC 8200 section 4.3) of 8*(units+1) bytes, filled with one PadN
// option, followed by next, with payload after it.
func OptionsHeader(next tcpip.TransportProtocolNumber, units int, payload []byte) []byte {
	n := 8 * (units + 1)
	b := make([]byte, n+len(payload))
	b[0], b[1] = uint8(next), uint8(units)
	b[2], b[3] = 1, uint8(n-4)
	copy(b[n:], payload)
	return b
}

// TCP is a TCP header. Options are padded with zeros (End of Option List)
// to a multiple of 4 bytes.
type TCP struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            header.TCPFlags
	Window           uint16
	Options          []byte
}

// Segment returns payload behind the TCP header.
func (s TCP) Segment(payload []byte) []byte {
	hl := header.TCPMinimumSize + (len(s.Options)+3)&^3
	b := make([]byte, hl+len(payload))
	header.TCP(b).Encode(&header.TCPFields{
		SrcPort: s.SrcPort, DstPort: s.DstPort, SeqNum: s.Seq, AckNum: s.Ack,
		DataOffset: uint8(hl), Flags: s.Flags, WindowSize: s.Window,
	})
	copy(b[header.TCPMinimumSize:], s.Options)
	copy(b[hl:], payload)
	return b
}

// UDP is a UDP header.
type UDP struct {
	SrcPort, DstPort uint16
}

// Datagram returns payload behind the UDP header, with the length it makes.
func (u UDP) Datagram(payload []byte) []byte {
	b := make([]byte, header.UDPMinimumSize+len(payload))
	header.UDP(b).Encode(&header.UDPFields{SrcPort: u.SrcPort, DstPort: u.DstPort, Length: uint16(len(b))})
	copy(b[header.UDPMinimumSize:], payload)
	return b
}

// ICMP is an ICMPv4 or ICMPv6 message: type, code, the 4 bytes after the
// checksum (an echo's identifier is their upper half), and the body. Both
// versions share that 8-byte header (RFC 792, RFC 4443 section 2.1).
func ICMP[T ~uint8](typ T, code uint8, rest uint32, body []byte) []byte {
	b := make([]byte, header.ICMPv4MinimumSize+len(body))
	b[0], b[1] = byte(typ), code
	binary.BigEndian.PutUint32(b[4:], rest)
	copy(b[header.ICMPv4MinimumSize:], body)
	return b
}

// ARP is an ARP packet for IPv4 over Ethernet from sha and spa about tpa.
func ARP(op header.ARPOp, sha tcpip.LinkAddress, spa, tpa tcpip.Address) []byte {
	b := make([]byte, header.ARPSize)
	a := header.ARP(b)
	a.SetIPv4OverEthernet()
	a.SetOp(op)
	copy(a.HardwareAddressSender(), sha)
	copy(a.ProtocolAddressSender(), spa.AsSlice())
	copy(a.ProtocolAddressTarget(), tpa.AsSlice())
	return b
}

// NOPs is n bytes of NOP options (kind 1 in both IPv4 and TCP).
func NOPs(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = 1
	}
	return b
}

// Checksums sets the checksums of frame in place where its headers say
// where they are: the IPv4 header's, and the transport checksum of an
// unfragmented IPv4 datagram or of an IPv6 packet whose transport header
// comes first. Whatever does not parse that far is left as it is.
func Checksums(frame []byte) {
	if len(frame) < header.EthernetMinimumSize {
		return
	}
	p := frame[header.EthernetMinimumSize:]
	switch header.Ethernet(frame).Type() {
	case header.IPv4ProtocolNumber:
		if len(p) < header.IPv4MinimumSize || p[0]>>4 != 4 {
			return
		}
		ihl := int(p[0]&0xf) * 4
		if ihl < header.IPv4MinimumSize || ihl > len(p) {
			return
		}
		h := header.IPv4(p)
		h.SetChecksum(0)
		h.SetChecksum(^h.CalculateChecksum())
		total := int(h.TotalLength())
		if total < ihl || total > len(p) || h.More() || h.FragmentOffset() != 0 {
			return
		}
		L4Checksum(tcpip.TransportProtocolNumber(p[9]), h.SourceAddress(), h.DestinationAddress(), p[ihl:total])
	case header.IPv6ProtocolNumber:
		if len(p) < header.IPv6MinimumSize || p[0]>>4 != 6 {
			return
		}
		h := header.IPv6(p)
		end := header.IPv6MinimumSize + int(h.PayloadLength())
		if end > len(p) {
			return
		}
		L4Checksum(tcpip.TransportProtocolNumber(p[6]), h.SourceAddress(), h.DestinationAddress(), p[header.IPv6MinimumSize:end])
	}
}

// L4Checksum sets the checksum of l4, a whole TCP segment, UDP datagram,
// ICMPv4, IGMP or ICMPv6 message of protocol proto between src and dst.
// Other protocols, and messages too short to hold a checksum, are left as
// they are.
func L4Checksum(proto tcpip.TransportProtocolNumber, src, dst tcpip.Address, l4 []byte) {
	var off int
	pseudo := true
	switch proto {
	case header.TCPProtocolNumber:
		if len(l4) < header.TCPMinimumSize {
			return
		}
		off = header.TCPChecksumOffset
	case header.UDPProtocolNumber:
		if len(l4) < header.UDPMinimumSize {
			return
		}
		off = 6
	case header.ICMPv4ProtocolNumber, header.IGMPProtocolNumber:
		if len(l4) < header.IGMPMinimumSize {
			return
		}
		off, pseudo = 2, false
	case header.ICMPv6ProtocolNumber:
		if len(l4) < header.ICMPv6MinimumSize {
			return
		}
		off = 2
	default:
		return
	}
	l4[off], l4[off+1] = 0, 0
	var init uint16
	if pseudo {
		init = header.PseudoHeaderChecksum(proto, src, dst, uint16(len(l4)))
	}
	sum := ^checksum.Checksum(l4, init)
	if sum == 0 && proto == header.UDPProtocolNumber {
		sum = 0xffff // 0 means "no checksum" in UDP
	}
	binary.BigEndian.PutUint16(l4[off:], sum)
}
