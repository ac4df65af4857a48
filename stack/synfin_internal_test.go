package stack

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

func TestSynFin(t *testing.T) {
	tcpSeg := func(flags header.TCPFlags) []byte {
		b := make([]byte, header.TCPMinimumSize)
		header.TCP(b).Encode(&header.TCPFields{SrcPort: 1, DstPort: 80, DataOffset: header.TCPMinimumSize, Flags: flags})
		return b
	}
	v4 := func(ihl int, fragOff uint16, l4 []byte) []byte {
		b := make([]byte, ihl+len(l4))
		b[0] = 0x40 | byte(ihl/4)
		b[6], b[7] = byte(fragOff>>8), byte(fragOff)
		b[9] = uint8(header.TCPProtocolNumber)
		copy(b[ihl:], l4)
		return b
	}
	v6 := func(next uint8, l4 []byte) []byte {
		b := make([]byte, header.IPv6MinimumSize+len(l4))
		b[0] = 0x60
		b[6] = next
		copy(b[header.IPv6MinimumSize:], l4)
		return b
	}
	synFinSeg := tcpSeg(header.TCPFlagSyn | header.TCPFlagFin)
	for _, tc := range []struct {
		name  string
		p     []byte
		proto tcpip.NetworkProtocolNumber
		want  bool
	}{
		{"v4 syn+fin", v4(20, 0, synFinSeg), header.IPv4ProtocolNumber, true},
		{"v4 syn+fin+ack", v4(20, 0, tcpSeg(header.TCPFlagSyn|header.TCPFlagFin|header.TCPFlagAck)), header.IPv4ProtocolNumber, true},
		{"v4 with options", v4(24, 0, synFinSeg), header.IPv4ProtocolNumber, true},
		{"v4 syn", v4(20, 0, tcpSeg(header.TCPFlagSyn)), header.IPv4ProtocolNumber, false},
		{"v4 fin+ack", v4(20, 0, tcpSeg(header.TCPFlagFin|header.TCPFlagAck)), header.IPv4ProtocolNumber, false},
		{"v4 DF set", v4(20, 0x4000, synFinSeg), header.IPv4ProtocolNumber, true},
		{"v4 later fragment", v4(20, 3, synFinSeg), header.IPv4ProtocolNumber, false},
		{"v4 header length past the packet", v4(20, 0, nil)[:20], header.IPv4ProtocolNumber, false},
		{"v4 ihl 60 in 20 bytes", func() []byte { b := v4(20, 0, nil); b[0] = 0x4f; return b }(), header.IPv4ProtocolNumber, false},
		{"v4 ihl below 20", func() []byte { b := v4(20, 0, synFinSeg); b[0] = 0x41; return b }(), header.IPv4ProtocolNumber, false},
		{"v4 truncated tcp", v4(20, 0, synFinSeg[:13]), header.IPv4ProtocolNumber, false},
		{"v4 short", make([]byte, 10), header.IPv4ProtocolNumber, false},
		{"v6 syn+fin", v6(uint8(header.TCPProtocolNumber), synFinSeg), header.IPv6ProtocolNumber, true},
		{"v6 syn", v6(uint8(header.TCPProtocolNumber), tcpSeg(header.TCPFlagSyn)), header.IPv6ProtocolNumber, false},
		{"v6 udp", v6(uint8(header.UDPProtocolNumber), synFinSeg), header.IPv6ProtocolNumber, false},
		{"v6 short", make([]byte, 30), header.IPv6ProtocolNumber, false},
		{"arp", make([]byte, 60), header.ARPProtocolNumber, false},
	} {
		l4 := tcpSegment(tc.p, tc.proto)
		if got := l4 != nil && l4[13]&synFinFlags == synFinFlags; got != tc.want {
			t.Errorf("%s: SYN+FIN = %v, want %v", tc.name, got, tc.want)
		}
	}
}
