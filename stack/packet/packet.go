// Package packet parses the headers of an Ethernet frame once into a
// Parsed, a small value of offsets and fields that every per-frame
// consumer reads: the lcore's steering (core), the link endpoint's SYN+FIN
// drop, SYN-flood guard and zero-window rescue on receive, and ACK elision
// on transmit (stack). One parser makes every check any of them needs, so
// a check added here reaches them all.
//
// Parse is a pure function of the frame: it reads at most the headers,
// never writes, never allocates and never panics, whatever the bytes. The
// caller owns the Parsed; it holds no reference to the frame, so the
// methods that return parts of the frame take it again.
package packet

import (
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Flags say which of a Parsed's fields hold values.
type Flags uint16

const (
	// Ether: the frame holds an Ethernet header; EtherType is valid.
	Ether Flags = 1 << iota
	// ARP: an Ethernet/IPv4 ARP packet (RFC 826) of full size; ARPOp is
	// valid.
	ARP
	// IPv4: a valid IPv4 header (RFC 791): version 4, a header length of
	// at least 20 bytes, within a total length that is within the frame.
	// Proto, L4Off and End are valid.
	IPv4
	// IPv6: a valid IPv6 header (RFC 8200): version 6 and a payload
	// length within the frame. Proto (the first next header), L4Off and
	// End are valid.
	IPv6
	// Fragment: an IPv4 datagram with More Fragments set or a fragment
	// offset, or an IPv6 packet whose first next header is a Fragment
	// header. Only a first IPv4 fragment (offset 0) has its transport
	// header parsed.
	Fragment
	// Ports: a TCP or UDP header with at least its two ports; SrcPort
	// and DstPort are valid.
	Ports
	// TCP: a complete TCP header (RFC 9293): a data offset of at least
	// 20 bytes within the datagram. TCPFlags, Seq, Ack, Window and
	// TCPHdrLen are valid, and Ports is set.
	TCP
	// ICMP: an ICMPv4 header of 8 bytes or an ICMPv6 header of 4 (the
	// protocol says which); ICMPType is valid.
	ICMP
	// Ident: an ICMP echo request or reply of at least 8 bytes; Ident is
	// valid.
	Ident
	// Quoted: an ICMP error (RFC 792; RFC 4443 2.4) quoting a TCP or UDP
	// packet or an echo request, unfragmented and with no extension
	// header; QuotedPort is the quoted packet's source port or
	// identifier, which names the local end of the flow that sent it.
	Quoted
)

// Parsed is what Parse read of one frame. The zero value says nothing:
// no flag set.
type Parsed struct {
	Flags     Flags
	EtherType uint16       // with Ether
	ARPOp     header.ARPOp // with ARP

	Proto uint8  // IPv4 protocol or IPv6 first next header; with IPv4 or IPv6
	L4Off uint32 // offset of the transport header in the frame
	End   uint32 // end of the IP datagram in the frame (Ethernet padding excluded)

	SrcPort, DstPort uint16 // with Ports

	TCPFlags  header.TCPFlags // with TCP
	TCPHdrLen uint8           // the TCP header's length in bytes, options included
	Window    uint16          // the window field, unscaled
	Seq, Ack  uint32

	ICMPType   uint8  // with ICMP: an ICMPv4 or ICMPv6 type, by Proto
	Ident      uint16 // with Ident
	QuotedPort uint16 // with Quoted
}

// Has reports whether every flag of f is set.
func (p *Parsed) Has(f Flags) bool { return p.Flags&f == f }

// Network is the frame's EtherType as gVisor names network protocols.
func (p *Parsed) Network() tcpip.NetworkProtocolNumber {
	return tcpip.NetworkProtocolNumber(p.EtherType)
}

// IPHeaderLen is the IP header's length (IPv4 options included; the fixed
// header alone for IPv6).
func (p *Parsed) IPHeaderLen() int { return int(p.L4Off) - header.EthernetMinimumSize }

// IP returns frame's IP datagram, header onwards, padding cut off. Valid
// with IPv4 or IPv6.
func (p *Parsed) IP(frame []byte) []byte { return frame[header.EthernetMinimumSize:p.End] }

// L4 returns frame's transport header and payload, padding cut off. Valid
// with IPv4 or IPv6.
func (p *Parsed) L4(frame []byte) []byte { return frame[p.L4Off:p.End] }

// Addrs returns frame's source and destination addresses, 4 or 16 bytes
// each. Valid with IPv4 or IPv6.
func (p *Parsed) Addrs(frame []byte) (src, dst []byte) {
	ip := frame[header.EthernetMinimumSize:]
	if p.Flags&IPv4 != 0 {
		return ip[12:16], ip[16:20]
	}
	return ip[8:24], ip[24:40]
}

// AddrPair returns frame's source and destination addresses as the IP
// header holds them, one after the other: 8 or 32 bytes. Valid with IPv4
// or IPv6.
func (p *Parsed) AddrPair(frame []byte) []byte {
	ip := frame[header.EthernetMinimumSize:]
	if p.Flags&IPv4 != 0 {
		return ip[12:20]
	}
	return ip[8:40]
}

// PortPair returns frame's source and destination ports as the TCP or UDP
// header holds them: 4 bytes. Valid with Ports.
func (p *Parsed) PortPair(frame []byte) []byte { return frame[p.L4Off : p.L4Off+4] }

// TCPOptions returns the TCP header's options. Valid with TCP.
func (p *Parsed) TCPOptions(frame []byte) []byte {
	off := int(p.L4Off)
	return frame[off+header.TCPMinimumSize : off+int(p.TCPHdrLen)]
}

// TCPPayloadLen is the number of data bytes of a TCP segment. Valid with
// TCP.
func (p *Parsed) TCPPayloadLen() int { return int(p.End) - int(p.L4Off) - int(p.TCPHdrLen) }

// Parse fills p from frame, an Ethernet frame. Whatever it cannot read,
// short or malformed, leaves the flags of that layer and the ones above
// it unset; the stack counts and drops such frames, and every other
// consumer leaves them alone.
func Parse(frame []byte, p *Parsed) {
	*p = Parsed{}
	p.Flags = p.parse(frame, len(frame))
}

// ParseHead is Parse for a frame of size bytes of which head is the
// start: the first buffer of a frame that spans several (AF_XDP
// multi-buffer), which holds its headers. Lengths in the headers are
// checked against size, and fields are read from head only; a header that
// does not lie whole in head is not parsed, as a short frame's is not.
// Offsets up to End may then lie beyond head: the methods that take the
// frame need the whole of it, except Addrs, AddrPair, PortPair and
// TCPOptions, whose bytes a parsed header holds. ParseHead(f, len(f), p)
// is Parse(f, p).
func ParseHead(head []byte, size int, p *Parsed) {
	*p = Parsed{}
	p.Flags = p.parse(head, size)
}

// parse fills p's fields but Flags, and returns the flags. The IP and TCP
// path is one function, since it runs for nearly every frame; ARP and
// ICMP are read out of line. Each header's fields are read before p is
// written: the compiler cannot tell that the stores leave the frame alone.
// frame is the frame's first size bytes, or fewer (ParseHead).
func (p *Parsed) parse(frame []byte, size int) Flags {
	if len(frame) < header.EthernetMinimumSize {
		return 0
	}
	eth := header.Ethernet(frame)
	et := eth.Type()
	p.EtherType = uint16(et)
	b := frame[header.EthernetMinimumSize:]
	var l4 []byte
	var f Flags
	var proto tcpip.TransportProtocolNumber
	switch et {
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(b)
		// IsValid: at least 20 bytes, version 4, 20 <= IHL <= total
		// length <= what the frame holds.
		if !ip.IsValid(size - header.EthernetMinimumSize) {
			return Ether
		}
		hl, total := int(ip.HeaderLength()), int(ip.TotalLength())
		more, fragOff := ip.More(), ip.FragmentOffset()
		proto = ip.TransportProtocol()
		f = Ether | IPv4
		p.Proto = uint8(proto)
		p.L4Off = uint32(header.EthernetMinimumSize + hl)
		p.End = uint32(header.EthernetMinimumSize + total)
		if more || fragOff != 0 {
			f |= Fragment
			if fragOff != 0 {
				return f // no transport header in a later fragment
			}
		}
		if hl > len(b) {
			return f // options beyond head (ParseHead)
		}
		l4 = b[hl:min(total, len(b))]
		if proto == header.ICMPv4ProtocolNumber {
			return f | p.icmpv4(header.ICMPv4(l4))
		}
	case header.IPv6ProtocolNumber:
		if len(b) < header.IPv6MinimumSize || header.IPVersion(b) != header.IPv6Version {
			return Ether
		}
		ip := header.IPv6(b)
		// A payload length of 0 is a jumbogram's (RFC 2675) only with a
		// Hop-by-Hop header, which the stack does not take: its payload
		// is empty here.
		end := header.IPv6MinimumSize + int(ip.PayloadLength())
		if end > size-header.EthernetMinimumSize {
			return Ether
		}
		proto = tcpip.TransportProtocolNumber(ip.NextHeader())
		f = Ether | IPv6
		p.Proto = uint8(proto)
		p.L4Off = header.EthernetMinimumSize + header.IPv6MinimumSize
		p.End = uint32(header.EthernetMinimumSize + end)
		l4 = b[header.IPv6MinimumSize:min(end, len(b))]
		switch proto {
		case header.ICMPv6ProtocolNumber:
			return f | p.icmpv6(header.ICMPv6(l4))
		case header.IPv6FragmentHeader:
			return f | Fragment
		}
	case header.ARPProtocolNumber:
		return Ether | p.arp(header.ARP(b))
	default:
		return Ether
	}

	// TCP or UDP, l4 cut to the datagram's end.
	isTCP := proto == header.TCPProtocolNumber
	if !isTCP && proto != header.UDPProtocolNumber || len(l4) < 4 {
		return f
	}
	// The two protocols put their ports in the same place.
	u := header.UDP(l4)
	sport, dport := u.SourcePort(), u.DestinationPort()
	p.SrcPort, p.DstPort = sport, dport
	f |= Ports
	if !isTCP || len(l4) < header.TCPMinimumSize {
		return f
	}
	t := header.TCP(l4)
	off := t.DataOffset()
	if off < header.TCPMinimumSize || int(off) > len(l4) {
		return f
	}
	flags, win, seq, ack := t.Flags(), t.WindowSize(), t.SequenceNumber(), t.AckNumber()
	p.TCPFlags, p.TCPHdrLen, p.Window = flags, off, win
	p.Seq, p.Ack = seq, ack
	return f | TCP
}

func (p *Parsed) arp(a header.ARP) Flags {
	if !a.IsValid() {
		return 0
	}
	p.ARPOp = a.Op()
	return ARP
}

func (p *Parsed) icmpv4(m header.ICMPv4) Flags {
	if len(m) < header.ICMPv4MinimumSize {
		return 0
	}
	p.ICMPType = uint8(m.Type())
	switch m.Type() {
	case header.ICMPv4Echo, header.ICMPv4EchoReply:
		p.Ident = m.Ident()
		return ICMP | Ident
	case header.ICMPv4DstUnreachable, header.ICMPv4TimeExceeded, header.ICMPv4ParamProblem:
		// The quoted datagram: its header and at least 8 bytes of its
		// payload, maybe cut short, so its total length is not checked.
		q := header.IPv4(m[header.ICMPv4MinimumSize:])
		if len(q) < header.IPv4MinimumSize || header.IPVersion(q) != header.IPv4Version {
			return ICMP
		}
		hl := int(q.HeaderLength())
		if hl < header.IPv4MinimumSize || len(q) < hl+8 || q.FragmentOffset() != 0 {
			return ICMP
		}
		l4 := q[hl:]
		e := header.ICMPv4(l4)
		return ICMP | p.quote(q.TransportProtocol(), l4,
			q.TransportProtocol() == header.ICMPv4ProtocolNumber && e.Type() == header.ICMPv4Echo)
	}
	return ICMP
}

func (p *Parsed) icmpv6(m header.ICMPv6) Flags {
	if len(m) < header.ICMPv6HeaderSize {
		return 0
	}
	p.ICMPType = uint8(m.Type())
	switch t := m.Type(); {
	case t == header.ICMPv6EchoRequest || t == header.ICMPv6EchoReply:
		if len(m) >= header.ICMPv6MinimumSize {
			p.Ident = m.Ident()
			return ICMP | Ident
		}
	case t >= header.ICMPv6DstUnreachable && t <= header.ICMPv6ParamProblem:
		// The quoted packet, with no extension header, and 8 bytes of
		// its payload.
		if len(m) < header.ICMPv6MinimumSize+header.IPv6MinimumSize+8 {
			return ICMP
		}
		q := header.IPv6(m[header.ICMPv6MinimumSize:])
		if header.IPVersion(q) != header.IPv6Version {
			return ICMP
		}
		l4 := q[header.IPv6MinimumSize:]
		e := header.ICMPv6(l4)
		return ICMP | p.quote(q.TransportProtocol(), l4,
			q.TransportProtocol() == header.ICMPv6ProtocolNumber && e.Type() == header.ICMPv6EchoRequest)
	}
	return ICMP
}

// quote reads the transport header l4 of a packet an ICMP error quotes, of
// protocol proto, at least 8 bytes of it; echoRequest says whether it is
// an echo request of the error's own ICMP version. The quoted packet went
// out from this host, so its source port or identifier is the local end.
func (p *Parsed) quote(proto tcpip.TransportProtocolNumber, l4 []byte, echoRequest bool) Flags {
	switch {
	case proto == header.TCPProtocolNumber || proto == header.UDPProtocolNumber:
		p.QuotedPort = header.UDP(l4).SourcePort()
	case echoRequest:
		// ICMPv4 and ICMPv6 echo messages put the identifier in the same
		// place.
		p.QuotedPort = header.ICMPv4(l4).Ident()
	default:
		return 0
	}
	return Quoted
}
