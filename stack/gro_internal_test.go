package stack

import (
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/stack/packet"
)

// setChecksums makes f's IPv4 header checksum and the TCP or UDP checksum
// of an unfragmented datagram right, where the headers say where they are,
// so that the endpoint's checks pass it on to what a test means to reach.
func setChecksums(f []byte) []byte {
	var p packet.Parsed
	packet.Parse(f, &p)
	if p.Flags&packet.IPv4 != 0 {
		ip := f[header.EthernetMinimumSize:p.L4Off]
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ^checksum.Checksum(ip, 0))
	}
	if p.Flags&(packet.IPv4|packet.IPv6) == 0 || p.Flags&packet.Fragment != 0 {
		return f
	}
	l4 := f[p.L4Off:p.End]
	var off int
	switch tcpip.TransportProtocolNumber(p.Proto) {
	case header.TCPProtocolNumber:
		if p.Flags&packet.TCP == 0 {
			return f
		}
		off = 16
	case header.UDPProtocolNumber:
		if len(l4) < header.UDPMinimumSize {
			return f
		}
		n := int(binary.BigEndian.Uint16(l4[4:6]))
		if n < header.UDPMinimumSize || n > len(l4) {
			return f // malformed: gVisor's to count
		}
		l4 = l4[:n]
		off = 6
	default:
		return f
	}
	l4[off], l4[off+1] = 0, 0
	sum := checksum.Checksum(p.AddrPair(f), 0)
	sum = checksum.Combine(sum, uint16(p.Proto))
	sum = checksum.Combine(sum, uint16(len(l4)))
	binary.BigEndian.PutUint16(l4[off:], ^checksum.Checksum(l4, sum))
	return f
}

// TestRxChecksums checks which frames the endpoint's checksum check drops
// and which it leaves for gVisor to check.
func TestRxChecksums(t *testing.T) {
	v4 := func(proto tcpip.TransportProtocolNumber, frag uint16, l4 []byte) []byte {
		f := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+len(l4))
		header.Ethernet(f).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
		ip := header.IPv4(f[header.EthernetMinimumSize:])
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(ip)), TTL: 64, Protocol: uint8(proto),
			SrcAddr: tcpip.AddrFrom4([4]byte{198, 18, 0, 2}), DstAddr: tcpip.AddrFrom4([4]byte{198, 18, 0, 1})})
		binary.BigEndian.PutUint16(ip[6:8], frag)
		copy(ip[header.IPv4MinimumSize:], l4)
		return setChecksums(f)
	}
	v6 := func(next uint8, l4 []byte) []byte {
		f := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+len(l4))
		header.Ethernet(f).Encode(&header.EthernetFields{Type: header.IPv6ProtocolNumber})
		ip := header.IPv6(f[header.EthernetMinimumSize:])
		ip.Encode(&header.IPv6Fields{PayloadLength: uint16(len(l4)), HopLimit: 64,
			SrcAddr: tcpip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: 2}), DstAddr: tcpip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: 1})})
		ip[6] = next
		copy(ip[header.IPv6MinimumSize:], l4)
		return setChecksums(f)
	}
	tcpSeg := make([]byte, header.TCPMinimumSize+101) // odd length: the sum's last byte is padded
	header.TCP(tcpSeg).Encode(&header.TCPFields{SrcPort: 40000, DstPort: 80, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck})
	for i := header.TCPMinimumSize; i < len(tcpSeg); i++ {
		tcpSeg[i] = byte(i)
	}
	udp := func(n int) []byte {
		b := make([]byte, n)
		header.UDP(b).Encode(&header.UDPFields{SrcPort: 40000, DstPort: 53, Length: uint16(n)})
		return b
	}
	icmp := make([]byte, header.ICMPv4MinimumSize) // checksum left wrong: gVisor's to check
	icmp[0] = byte(header.ICMPv4Echo)
	// flip flips bit 0 of byte off of the frame's IP packet.
	flip := func(f []byte, off int) []byte { f[header.EthernetMinimumSize+off] ^= 1; return f }
	l4v4, l4v6 := header.IPv4MinimumSize, header.IPv6MinimumSize
	zeroSum := func(f []byte, off int) []byte { f[off], f[off+1] = 0, 0; return f }
	const tcp, udpP = header.TCPProtocolNumber, header.UDPProtocolNumber
	for _, tc := range []struct {
		name    string
		frame   []byte
		ok, all bool
	}{
		{"v4 tcp", v4(tcp, 0, tcpSeg), true, true},
		{"v4 tcp with DF", v4(tcp, 0x4000, tcpSeg), true, true},
		{"v4 bad header checksum", flip(v4(tcp, 0, tcpSeg), 8), false, false},
		{"v4 tcp bad checksum", flip(v4(tcp, 0, tcpSeg), l4v4+30), false, true},
		{"v4 tcp bad checksum, first fragment", flip(v4(tcp, 0x2000, tcpSeg), l4v4+30), true, false},
		{"v4 later fragment", v4(tcp, 0x0010, tcpSeg), true, false},
		{"v4 truncated tcp", v4(tcp, 0, tcpSeg[:12]), true, false},
		{"v4 udp", v4(udpP, 0, udp(30)), true, true},
		{"v4 udp bad checksum", flip(v4(udpP, 0, udp(30)), l4v4+20), false, true},
		{"v4 udp no checksum", zeroSum(v4(udpP, 0, udp(30)), header.EthernetMinimumSize+l4v4+6), true, true},
		{"v4 udp length past the datagram", flip(v4(udpP, 0, udp(30)), l4v4+5), true, false},
		{"v4 udp bytes past its length", flip(v4(udpP, 0, append(udp(30), 1, 2, 3)), l4v4+31), true, true},
		{"v4 icmp", v4(header.ICMPv4ProtocolNumber, 0, icmp), true, true},
		{"v4 unknown protocol", v4(99, 0, icmp), true, false},
		{"v6 tcp", v6(uint8(tcp), tcpSeg), true, true},
		{"v6 tcp bad checksum", flip(v6(uint8(tcp), tcpSeg), l4v6+25), false, true},
		{"v6 udp", v6(uint8(udpP), udp(30)), true, true},
		{"v6 udp bad checksum", flip(v6(uint8(udpP), udp(30)), l4v6+9), false, true},
		{"v6 udp zero checksum", zeroSum(v6(uint8(udpP), udp(30)), header.EthernetMinimumSize+l4v6+6), false, true},
		{"v6 hop-by-hop first", v6(0, tcpSeg), true, false},
		{"v6 fragment header", v6(44, tcpSeg), true, false},
		{"v6 icmp", v6(uint8(header.ICMPv6ProtocolNumber), icmp), true, true},
		{"not IP", make([]byte, 42), true, false},
	} {
		var p packet.Parsed
		packet.Parse(tc.frame, &p)
		if ok, all := rxChecksums(tc.frame, &p); ok != tc.ok || all != tc.all {
			t.Errorf("%s: ok %v, all checked %v; want %v, %v", tc.name, ok, all, tc.ok, tc.all)
		}
	}
}
