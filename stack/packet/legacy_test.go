package packet

import "encoding/binary"

// The parsers Parse replaced, their checks kept unchanged, as the oracle
// of the differential check in FuzzParse: the link endpoint's receive-side TCP
// parser and the transmit side's ACK-elision parser (the steering
// classifier has its own oracle in core). Parse makes the union of their
// checks, so where both accept a frame Parse must accept it with the same
// fields, and where Parse accepts one both must.

// legacyTCPSegment is the receive path's parser: p is the frame's IP
// packet and v6 its EtherType. It checked neither the IPv4 version nor
// the total length, nor the IPv6 version and payload length.
func legacyTCPSegment(p []byte, v6 bool) []byte {
	var l4 []byte
	if !v6 {
		if len(p) < 20 || p[9] != 6 || p[6]&0x1f != 0 || p[7] != 0 {
			return nil
		}
		ihl := int(p[0]&0xf) * 4
		if ihl < 20 || ihl > len(p) {
			return nil
		}
		l4 = p[ihl:]
	} else {
		if len(p) < 40 || p[6] != 6 {
			return nil
		}
		l4 = p[40:]
	}
	if len(l4) < 20 {
		return nil
	}
	return l4
}

// legacySeg is what the transmit side's parser read of a frame.
type legacySeg struct {
	ok                 bool // an unfragmented TCP segment with a valid header
	flags              uint8
	ack                uint32
	win                uint16
	sport, dport       uint16
	hdrLen, payloadLen int
	src, dst           []byte
}

// legacyParseSeg is the ACK-elision parser of an Ethernet frame, with its
// checks unchanged and its results laid out for comparison. It checked
// neither the IPv6 version nor the IPv4 fragment bits beyond MF and the
// offset.
func legacyParseSeg(f []byte) (m legacySeg) {
	if len(f) < 14 {
		return m
	}
	var tcp []byte
	switch binary.BigEndian.Uint16(f[12:14]) {
	case 0x0800:
		ip := f[14:]
		if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != 6 {
			return m
		}
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 || ihl < 20 || total < ihl || total > len(ip) {
			return m
		}
		m.src, m.dst = ip[12:16], ip[16:20]
		tcp = ip[ihl:total]
	case 0x86dd:
		ip := f[14:]
		if len(ip) < 40 || ip[6] != 6 {
			return m
		}
		plen := int(binary.BigEndian.Uint16(ip[4:6]))
		if 40+plen > len(ip) {
			return m
		}
		m.src, m.dst = ip[8:24], ip[24:40]
		tcp = ip[40 : 40+plen]
	default:
		return m
	}
	if len(tcp) < 20 {
		return m
	}
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || doff > len(tcp) {
		return m
	}
	m.ok = true
	m.sport, m.dport = binary.BigEndian.Uint16(tcp[0:2]), binary.BigEndian.Uint16(tcp[2:4])
	m.flags = tcp[13]
	m.ack = binary.BigEndian.Uint32(tcp[8:12])
	m.win = binary.BigEndian.Uint16(tcp[14:16])
	m.hdrLen, m.payloadLen = doff, len(tcp)-doff
	return m
}
