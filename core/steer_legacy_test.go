package core

import "encoding/binary"

// The steering classifier as it was before it read packet.Parsed, kept
// unchanged as the oracle of FuzzClassify: the rules did not change, so
// for every frame the classifier must give the verdict and owner this one
// gives.
type legacySteer struct{ *Steer }

// Frame offsets and values the rules read (IEEE 802.3, RFC 826, RFC 791,
// RFC 8200, RFC 792, RFC 4443, RFC 4861).
const (
	steerEthLen    = 14
	steerEtherIPv4 = 0x0800
	steerEtherARP  = 0x0806
	steerEtherIPv6 = 0x86dd

	steerARPLen     = 28
	steerARPRequest = 1
	steerARPReply   = 2

	steerIPv4MinLen   = 20
	steerIPv4MoreFrag = 0x2000
	steerIPv4FragOff  = 0x1fff
	steerIPv6Len      = 40

	steerProtoICMPv4   = 1
	steerProtoTCP      = 6
	steerProtoUDP      = 17
	steerProtoFragment = 44
	steerProtoICMPv6   = 58

	steerICMPv4EchoReply   = 0
	steerICMPv4Unreachable = 3
	steerICMPv4Echo        = 8
	steerICMPv4TimeExceed  = 11
	steerICMPv4ParamProb   = 12

	steerICMPv6Unreachable = 1
	steerICMPv6ParamProb   = 4
	steerICMPv6Echo        = 128
	steerICMPv6EchoReply   = 129
	steerICMPv6RA          = 134
	steerICMPv6NS          = 135
	steerICMPv6NA          = 136
)

// Classify returns what the lcore does with frame, an Ethernet frame it
// received, and the owner lcore for HandOff (the lcore itself otherwise).
// It reads at most the headers, never writes, and does not allocate.
func (s legacySteer) Classify(frame []byte) (verdict Verdict, owner int) {
	if s.n == 1 || len(frame) < steerEthLen {
		return Local, s.self
	}
	p := frame[steerEthLen:]
	switch binary.BigEndian.Uint16(frame[12:]) {
	case steerEtherIPv4:
		return s.ipv4(p)
	case steerEtherIPv6:
		return s.ipv6(p)
	case steerEtherARP:
		return s.arp(p)
	}
	return Local, s.self
}

func (s legacySteer) arp(p []byte) (Verdict, int) {
	// Ethernet/IPv4 ARP only: hardware type 1, protocol 0x0800, lengths 6
	// and 4. Sender IP at 14, target IP at 24.
	if len(p) < steerARPLen || binary.BigEndian.Uint32(p) != 0x00010800 || p[4] != 6 || p[5] != 4 {
		return Local, s.self
	}
	// Every lcore keeps its own neighbour table, so every lcore must see
	// what a peer says of its address: replies, and requests too (a peer
	// whose MAC address changed flushes its own table and asks again, with
	// its new address as the sender). Each lcore answers a request: the
	// peer gets one identical reply per lcore, which does no harm.
	switch binary.BigEndian.Uint16(p[6:]) {
	case steerARPReply, steerARPRequest:
		return Broadcast, s.self
	}
	return Local, s.self
}

func (s legacySteer) ipv4(p []byte) (Verdict, int) {
	l4, ok := legacySteerIPv4(p)
	if !ok {
		return Local, s.self
	}
	if binary.BigEndian.Uint16(p[6:])&(steerIPv4MoreFrag|steerIPv4FragOff) != 0 {
		return s.to(0)
	}
	switch p[9] {
	case steerProtoTCP, steerProtoUDP:
		if len(l4) >= 4 {
			return s.byPort(binary.BigEndian.Uint16(l4[2:]))
		}
	case steerProtoICMPv4:
		return s.icmpv4(l4)
	}
	return Local, s.self
}

// legacySteerIPv4 checks an IPv4 header and returns the payload, cut to the
// datagram's total length (Ethernet padding is not payload).
func legacySteerIPv4(p []byte) (payload []byte, ok bool) {
	if len(p) < steerIPv4MinLen || p[0]>>4 != 4 {
		return nil, false
	}
	ihl := int(p[0]&0xf) * 4
	total := int(binary.BigEndian.Uint16(p[2:]))
	if ihl < steerIPv4MinLen || total < ihl || total > len(p) {
		return nil, false
	}
	return p[ihl:total], true
}

func (s legacySteer) icmpv4(m []byte) (Verdict, int) {
	if len(m) < 8 {
		return Local, s.self
	}
	switch m[0] {
	case steerICMPv4EchoReply:
		return s.byPort(binary.BigEndian.Uint16(m[4:]))
	case steerICMPv4Unreachable, steerICMPv4TimeExceed, steerICMPv4ParamProb:
		// The quoted datagram: its header and at least 8 bytes of payload,
		// maybe cut short, so its total length is not checked.
		q := m[8:]
		if len(q) < steerIPv4MinLen || q[0]>>4 != 4 {
			break
		}
		ihl := int(q[0]&0xf) * 4
		if ihl < steerIPv4MinLen || len(q) < ihl+8 ||
			binary.BigEndian.Uint16(q[6:])&steerIPv4FragOff != 0 {
			break
		}
		l4 := q[ihl:]
		switch q[9] {
		case steerProtoTCP, steerProtoUDP:
			return s.byPort(binary.BigEndian.Uint16(l4))
		case steerProtoICMPv4:
			if l4[0] == steerICMPv4Echo {
				return s.byPort(binary.BigEndian.Uint16(l4[4:]))
			}
		}
	}
	return Local, s.self
}

func (s legacySteer) ipv6(p []byte) (Verdict, int) {
	if len(p) < steerIPv6Len || p[0]>>4 != 6 {
		return Local, s.self
	}
	// A payload length of 0 with a Hop-by-Hop header is a jumbogram
	// (RFC 2675): Local like every extension header.
	end := steerIPv6Len + int(binary.BigEndian.Uint16(p[4:]))
	if end > len(p) {
		return Local, s.self
	}
	l4 := p[steerIPv6Len:end]
	switch p[6] {
	case steerProtoTCP, steerProtoUDP:
		if len(l4) >= 4 {
			return s.byPort(binary.BigEndian.Uint16(l4[2:]))
		}
	case steerProtoICMPv6:
		return s.icmpv6(l4)
	case steerProtoFragment:
		return s.to(0)
	}
	return Local, s.self
}

func (s legacySteer) icmpv6(m []byte) (Verdict, int) {
	if len(m) < 4 {
		return Local, s.self
	}
	switch t := m[0]; {
	case t == steerICMPv6NS || t == steerICMPv6NA || t == steerICMPv6RA:
		return Broadcast, s.self
	case t == steerICMPv6EchoReply && len(m) >= 8:
		return s.byPort(binary.BigEndian.Uint16(m[4:]))
	case t >= steerICMPv6Unreachable && t <= steerICMPv6ParamProb:
		// The quoted packet (RFC 4443 2.4), with no extension header.
		if len(m) < 8+steerIPv6Len+8 {
			break
		}
		q := m[8:]
		if q[0]>>4 != 6 {
			break
		}
		l4 := q[steerIPv6Len:]
		switch q[6] {
		case steerProtoTCP, steerProtoUDP:
			return s.byPort(binary.BigEndian.Uint16(l4))
		case steerProtoICMPv6:
			if l4[0] == steerICMPv6Echo {
				return s.byPort(binary.BigEndian.Uint16(l4[4:]))
			}
		}
	}
	return Local, s.self
}
