package stack

import (
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/xstack/xstack/internal/testframe"
	"github.com/xstack/xstack/stack/packet"
)

// countingDispatcher counts the packets the endpoint hands to gVisor.
type countingDispatcher struct{ n int }

func (d *countingDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *gvstack.PacketBuffer) {
	d.n++
}

func (d *countingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *gvstack.PacketBuffer) {}

// TestSynFin hands frames to the endpoint's receive path and checks which
// it drops as SYN+FIN segments: only well-formed TCP segments (a first
// fragment included), whatever else is wrong with the others, which go on
// to gVisor.
func TestSynFin(t *testing.T) {
	e, _, _ := pairEndpoint(t, 4)
	e.guard.init(func() uint64 { return 0 }, func() time.Duration { return time.Second })
	var d countingDispatcher
	e.Attach(&d)

	tcpSeg := func(flags header.TCPFlags) []byte {
		return testframe.TCP{SrcPort: 1, DstPort: 80, Flags: flags}.Segment(nil)
	}
	frame := func(proto tcpip.NetworkProtocolNumber, ip []byte) []byte {
		return testframe.Eth{Dst: e.mac}.Frame(proto, ip)
	}
	v4 := func(h testframe.IPv4, l4 []byte) []byte {
		h.Proto = header.TCPProtocolNumber
		return frame(header.IPv4ProtocolNumber, h.Packet(l4))
	}
	v6 := func(next tcpip.TransportProtocolNumber, l4 []byte) []byte {
		return frame(header.IPv6ProtocolNumber, testframe.IPv6{Next: next}.Packet(l4))
	}
	plain, withOpts := testframe.IPv4{}, testframe.IPv4{Options: make([]byte, 4)}
	df, mf := testframe.IPv4{Flags: header.IPv4FlagDontFragment}, testframe.IPv4{Flags: header.IPv4FlagMoreFragments}
	later := testframe.IPv4{FragOff: 24}
	with := func(f []byte, off int, v ...byte) []byte {
		copy(f[header.EthernetMinimumSize+off:], v)
		return f
	}
	synFinSeg := tcpSeg(header.TCPFlagSyn | header.TCPFlagFin)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  bool
	}{
		{"v4 syn+fin", v4(plain, synFinSeg), true},
		{"v4 syn+fin+ack", v4(plain, tcpSeg(header.TCPFlagSyn|header.TCPFlagFin|header.TCPFlagAck)), true},
		{"v4 with options", v4(withOpts, synFinSeg), true},
		{"v4 syn", v4(plain, tcpSeg(header.TCPFlagSyn)), false},
		{"v4 fin+ack", v4(plain, tcpSeg(header.TCPFlagFin|header.TCPFlagAck)), false},
		{"v4 DF set", v4(df, synFinSeg), true},
		{"v4 first fragment", v4(mf, synFinSeg), true},
		{"v4 later fragment", v4(later, synFinSeg), false},
		{"v4 header length past the packet", v4(plain, nil), false},
		{"v4 ihl 60 in 20 bytes", with(v4(plain, nil), 0, 0x4f), false},
		{"v4 ihl below 20", with(v4(plain, synFinSeg), 0, 0x41), false},
		{"v4 truncated tcp", v4(plain, synFinSeg[:13]), false},
		{"v4 version 6", with(v4(plain, synFinSeg), 0, 0x65), false},
		{"v4 total length past the frame", with(v4(plain, synFinSeg), 2, 0, 41), false},
		{"v4 total length cuts the tcp header", with(v4(plain, synFinSeg), 2, 0, 39), false},
		{"v4 data offset past the segment", with(v4(plain, synFinSeg), 20+12, 0x60), false},
		{"v4 short", frame(header.IPv4ProtocolNumber, make([]byte, 10)), false},
		{"v6 syn+fin", v6(header.TCPProtocolNumber, synFinSeg), true},
		{"v6 syn", v6(header.TCPProtocolNumber, tcpSeg(header.TCPFlagSyn)), false},
		{"v6 udp", v6(header.UDPProtocolNumber, synFinSeg), false},
		{"v6 version 4", with(v6(header.TCPProtocolNumber, synFinSeg), 0, 0x40), false},
		{"v6 payload length past the frame", with(v6(header.TCPProtocolNumber, synFinSeg), 4, 0, 21), false},
		{"v6 short", frame(header.IPv6ProtocolNumber, make([]byte, 30)), false},
		{"arp", frame(header.ARPProtocolNumber, make([]byte, 60)), false},
	} {
		before, delivered := e.rxSynFin.Load(), d.n
		var p packet.Parsed
		packet.Parse(setChecksums(tc.frame), &p)
		e.deliver(tc.frame, &p)
		e.endBurst()
		dropped := e.rxSynFin.Load() != before
		if dropped != tc.want {
			t.Errorf("%s: dropped as SYN+FIN %v, want %v", tc.name, dropped, tc.want)
		}
		if dropped == (d.n != delivered) {
			t.Errorf("%s: dropped %v, yet handed to gVisor %v", tc.name, dropped, d.n != delivered)
		}
	}
}
