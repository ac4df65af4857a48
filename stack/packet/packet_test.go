package packet

import (
	"bytes"
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/internal/testframe"
)

// Frames are built with testframe over gVisor's encoders, so Parse's
// reading is checked against an independent writer. They go from the peer
// (v4A, v6A) to us (v4B, v6B).
var (
	v4A, v4B = testframe.V4Peer, testframe.V4Us
	v6A, v6B = testframe.V6Peer, testframe.V6Us
)

func ip4(proto tcpip.TransportProtocolNumber, flags uint8, fragOff uint16, l4 []byte) []byte {
	return testframe.IPv4{Proto: proto, Flags: flags, FragOff: fragOff}.Frame(l4)
}

func ip6(next tcpip.TransportProtocolNumber, l4 []byte) []byte {
	return testframe.IPv6{Next: next}.Frame(l4)
}

// tcpSeg is a TCP segment with optLen bytes of NOP options and n bytes
// of data.
func tcpSeg(flags header.TCPFlags, optLen, n int) []byte {
	return testframe.TCP{SrcPort: 40000, DstPort: 80, Seq: 1000, Ack: 2000, Flags: flags, Window: 512,
		Options: testframe.NOPs(optLen)}.Segment(make([]byte, n))
}

func udpDgram() []byte {
	return testframe.UDP{SrcPort: 53, DstPort: 12345}.Datagram(make([]byte, 4))
}

// icmp4 and icmp6 are messages with an echo identifier, which both
// versions carry in the same place.
func icmp4(typ header.ICMPv4Type, ident uint16, body []byte) []byte {
	return testframe.ICMP(typ, 0, uint32(ident)<<16, body)
}

func icmp6(typ header.ICMPv6Type, ident uint16, body []byte) []byte {
	return testframe.ICMP(typ, 0, uint32(ident)<<16, body)
}

func arp(op header.ARPOp) []byte {
	return testframe.Frame(header.ARPProtocolNumber, testframe.ARP(op, "", tcpip.Address{}, tcpip.Address{}))
}

// with returns a copy of f with the bytes at off replaced.
func with(f []byte, off int, v ...byte) []byte {
	f = bytes.Clone(f)
	copy(f[off:], v)
	return f
}

// parseCase is a frame and what Parse must make of it.
type parseCase struct {
	name  string
	frame []byte
	want  Parsed
}

func parseCases() []parseCase {
	const e = header.EthernetMinimumSize
	tcp := header.TCPProtocolNumber
	ack := header.TCPFlagAck | header.TCPFlagPsh
	v4TCP := ip4(tcp, 0, 0, tcpSeg(ack, 12, 100))
	v6TCP := ip6(tcp, tcpSeg(ack, 0, 10))
	tcpFields := func(f Flags, l4, end uint32, hdr uint8) Parsed {
		return Parsed{Flags: f | Ports | TCP, Proto: 6, L4Off: l4, End: end, SrcPort: 40000, DstPort: 80,
			TCPFlags: ack, TCPHdrLen: hdr, Window: 512, Seq: 1000, Ack: 2000}
	}
	v4 := func(f Flags) Flags { return Ether | IPv4 | f }
	v6 := func(f Flags) Flags { return Ether | IPv6 | f }
	quoted4 := ip4(header.ICMPv4ProtocolNumber, 0, 0, icmp4(header.ICMPv4DstUnreachable, 0,
		ip4(header.UDPProtocolNumber, 0, 0, udpDgram())[e:]))
	quoted6 := ip6(header.ICMPv6ProtocolNumber, icmp6(header.ICMPv6PacketTooBig, 0,
		ip6(tcp, tcpSeg(ack, 0, 0))[e:]))
	padded := append(bytes.Clone(v4TCP), make([]byte, 30)...)

	var cases = []parseCase{
		{"empty", nil, Parsed{}},
		{"short of ethernet", make([]byte, 13), Parsed{}},
		{"unknown ethertype", testframe.Frame(0x88cc, make([]byte, 40)), Parsed{Flags: Ether, EtherType: 0x88cc}},
		{"arp request", arp(header.ARPRequest), Parsed{Flags: Ether | ARP, EtherType: 0x0806, ARPOp: header.ARPRequest}},
		{"arp short", arp(header.ARPReply)[:e+27], Parsed{Flags: Ether, EtherType: 0x0806}},
		{"arp not over ipv4", with(arp(header.ARPReply), e+2, 0x86, 0xdd), Parsed{Flags: Ether, EtherType: 0x0806}},

		{"v4 tcp", v4TCP, tcpFields(v4(0), e+20, uint32(len(v4TCP)), 32)},
		{"v4 tcp padded", padded, tcpFields(v4(0), e+20, uint32(len(v4TCP)), 32)},
		{"v4 first fragment", ip4(tcp, header.IPv4FlagMoreFragments, 0, tcpSeg(ack, 0, 8)), tcpFields(v4(Fragment), e+20, e+48, 20)},
		{"v4 later fragment", ip4(tcp, 0, 64, tcpSeg(ack, 0, 8)), Parsed{Flags: v4(Fragment), Proto: 6, L4Off: e + 20, End: e + 48}},
		{"v4 DF is no fragment", ip4(tcp, header.IPv4FlagDontFragment, 0, tcpSeg(ack, 12, 100)), tcpFields(v4(0), e+20, uint32(len(v4TCP)), 32)},
		{"v4 version 6", with(v4TCP, e, 0x65), Parsed{Flags: Ether, EtherType: 0x0800}},
		{"v4 ihl below 20", with(v4TCP, e, 0x44), Parsed{Flags: Ether, EtherType: 0x0800}},
		{"v4 total length past the frame", with(v4TCP, e+2, 0xff, 0xff), Parsed{Flags: Ether, EtherType: 0x0800}},
		{"v4 total length below ihl", with(v4TCP, e+2, 0, 19), Parsed{Flags: Ether, EtherType: 0x0800}},
		{"v4 total length cuts tcp header", with(v4TCP, e+2, 0, 39),
			Parsed{Flags: v4(Ports), Proto: 6, L4Off: e + 20, End: e + 39, SrcPort: 40000, DstPort: 80}},
		{"v4 data offset past the segment", with(ip4(tcp, 0, 0, tcpSeg(ack, 0, 0)), e+20+12, 0x60),
			Parsed{Flags: v4(Ports), Proto: 6, L4Off: e + 20, End: e + 40, SrcPort: 40000, DstPort: 80}},
		{"v4 data offset below 20", with(v4TCP, e+20+12, 0x40),
			Parsed{Flags: v4(Ports), Proto: 6, L4Off: e + 20, End: uint32(len(v4TCP)), SrcPort: 40000, DstPort: 80}},
		{"v4 udp", ip4(header.UDPProtocolNumber, 0, 0, udpDgram()),
			Parsed{Flags: v4(Ports), Proto: 17, L4Off: e + 20, End: e + 32, SrcPort: 53, DstPort: 12345}},
		{"v4 udp of 3 bytes", ip4(header.UDPProtocolNumber, 0, 0, udpDgram()[:3]),
			Parsed{Flags: v4(0), Proto: 17, L4Off: e + 20, End: e + 23}},
		{"v4 echo reply", ip4(header.ICMPv4ProtocolNumber, 0, 0, icmp4(header.ICMPv4EchoReply, 10042, nil)),
			Parsed{Flags: v4(ICMP | Ident), Proto: 1, L4Off: e + 20, End: e + 28, ICMPType: 0, Ident: 10042}},
		{"v4 icmp of 7 bytes", ip4(header.ICMPv4ProtocolNumber, 0, 0, icmp4(header.ICMPv4EchoReply, 10042, nil)[:7]),
			Parsed{Flags: v4(0), Proto: 1, L4Off: e + 20, End: e + 27}},
		{"v4 unreachable quoting udp", quoted4,
			Parsed{Flags: v4(ICMP | Quoted), Proto: 1, L4Off: e + 20, End: uint32(len(quoted4)), ICMPType: 3, QuotedPort: 53}},
		{"v4 unreachable quoting a fragment", with(quoted4, e+28+7, 1),
			Parsed{Flags: v4(ICMP), Proto: 1, L4Off: e + 20, End: uint32(len(quoted4)), ICMPType: 3}},

		{"v6 tcp", v6TCP, tcpFields(v6(0), e+40, uint32(len(v6TCP)), 20)},
		{"v6 version 4", with(v6TCP, e, 0x40), Parsed{Flags: Ether, EtherType: 0x86dd}},
		{"v6 payload length past the frame", with(v6TCP, e+4, 0, 31), Parsed{Flags: Ether, EtherType: 0x86dd}},
		{"v6 short", v6TCP[:e+39], Parsed{Flags: Ether, EtherType: 0x86dd}},
		{"v6 fragment header", ip6(header.IPv6FragmentHeader, make([]byte, 16)),
			Parsed{Flags: v6(Fragment), Proto: 44, L4Off: e + 40, End: e + 56}},
		{"v6 neighbor solicitation", ip6(header.ICMPv6ProtocolNumber, icmp6(header.ICMPv6NeighborSolicit, 0, make([]byte, 16))),
			Parsed{Flags: v6(ICMP), Proto: 58, L4Off: e + 40, End: e + 64, ICMPType: 135}},
		{"v6 echo request", ip6(header.ICMPv6ProtocolNumber, icmp6(header.ICMPv6EchoRequest, 7, nil)),
			Parsed{Flags: v6(ICMP | Ident), Proto: 58, L4Off: e + 40, End: e + 48, ICMPType: 128, Ident: 7}},
		{"v6 packet too big quoting tcp", quoted6,
			Parsed{Flags: v6(ICMP | Quoted), Proto: 58, L4Off: e + 40, End: uint32(len(quoted6)), ICMPType: 2, QuotedPort: 40000}},
	}
	for i := range cases {
		if cases[i].want.Flags&Ether != 0 && cases[i].want.EtherType == 0 {
			cases[i].want.EtherType = uint16(header.Ethernet(cases[i].frame).Type())
		}
	}
	return cases
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases() {
		t.Run(tc.name, func(t *testing.T) {
			var got Parsed
			Parse(tc.frame, &got)
			if got != tc.want {
				t.Errorf("Parse(% x)\n got %+v\nwant %+v", tc.frame, got, tc.want)
			}
		})
	}
}

func TestParsedAccessors(t *testing.T) {
	f := ip4(header.TCPProtocolNumber, 0, 0, tcpSeg(header.TCPFlagAck, 12, 100))
	f = append(f, make([]byte, 10)...) // padding
	var p Parsed
	Parse(f, &p)
	src, dst := p.Addrs(f)
	if string(src) != string(v4A.AsSlice()) || string(dst) != string(v4B.AsSlice()) {
		t.Errorf("Addrs = %v, %v", src, dst)
	}
	if p.IPHeaderLen() != 20 || len(p.IP(f)) != 152 || len(p.L4(f)) != 132 || p.TCPPayloadLen() != 100 {
		t.Errorf("IP header %d, IP %d, L4 %d, payload %d bytes; want 20, 152, 132, 100",
			p.IPHeaderLen(), len(p.IP(f)), len(p.L4(f)), p.TCPPayloadLen())
	}
	if pair := p.AddrPair(f); string(pair) != string(v4A.AsSlice())+string(v4B.AsSlice()) {
		t.Errorf("AddrPair = %v", pair)
	}
	if pair := p.PortPair(f); binary.BigEndian.Uint16(pair) != 40000 || binary.BigEndian.Uint16(pair[2:]) != 80 {
		t.Errorf("PortPair = %v", pair)
	}
	if opts := p.TCPOptions(f); len(opts) != 12 || opts[0] != 1 {
		t.Errorf("TCPOptions = % x", opts)
	}
	if p.Network() != header.IPv4ProtocolNumber || !p.Has(IPv4|TCP) || p.Has(IPv6) {
		t.Errorf("Network %v, flags %b", p.Network(), p.Flags)
	}
	f6 := ip6(header.TCPProtocolNumber, tcpSeg(header.TCPFlagAck, 0, 0))
	Parse(f6, &p)
	if src, dst := p.Addrs(f6); string(src) != string(v6A.AsSlice()) || string(dst) != string(v6B.AsSlice()) {
		t.Errorf("v6 Addrs = %v, %v", src, dst)
	}
	if pair := p.AddrPair(f6); string(pair) != string(v6A.AsSlice())+string(v6B.AsSlice()) {
		t.Errorf("v6 AddrPair = %v", pair)
	}
}

func TestParseAllocs(t *testing.T) {
	cases := parseCases()
	var p Parsed
	if n := testing.AllocsPerRun(100, func() {
		for _, tc := range cases {
			Parse(tc.frame, &p)
		}
	}); n != 0 {
		t.Fatalf("Parse allocates %v times per run of %d frames", n, len(cases))
	}
}

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct {
		name  string
		frame []byte
	}{
		{"tcp4", ip4(header.TCPProtocolNumber, 0, 0, tcpSeg(header.TCPFlagAck, 12, 1000))},
		{"tcp6", ip6(header.TCPProtocolNumber, tcpSeg(header.TCPFlagAck, 12, 1000))},
		{"arp", arp(header.ARPReply)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var p Parsed
			b.ReportAllocs()
			for b.Loop() {
				Parse(bc.frame, &p)
			}
		})
	}
}

// FuzzParse checks that Parse never panics and never writes to the frame,
// that every offset it returns lies within the frame in order, and, against
// the parsers it replaced (legacy_test.go), that its TCP view is the union
// of their checks: a frame both accepted is a TCP segment with the same
// fields, unless it is not a well-formed IPv6 packet (which neither
// checked), and a segment Parse accepts both accepted. It also parses the
// frame's first bytes as the head of a frame of its length (ParseHead,
// cut in a few places), which must parse no layer Parse does not, and a
// TCP segment exactly as Parse does. Seeds: every table case, and
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, tc := range parseCases() {
		f.Add(tc.frame)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		orig := bytes.Clone(frame)
		var p Parsed
		Parse(frame, &p)
		if !bytes.Equal(frame, orig) {
			t.Fatal("Parse changed the frame")
		}
		checkOffsets(t, frame, &p)
		checkLegacy(t, frame, &p)
		for _, cut := range []int{len(frame), len(frame) / 2, 54, 34, 14, 0} {
			checkHead(t, frame, min(cut, len(frame)), &p)
		}
	})
}

// checkHead checks ParseHead of frame's first cut bytes against p, what
// Parse made of the whole frame.
func checkHead(t *testing.T, frame []byte, cut int, p *Parsed) {
	t.Helper()
	var h Parsed
	ParseHead(frame[:cut], len(frame), &h)
	if h.Flags&^p.Flags != 0 {
		t.Fatalf("% x cut at %d: ParseHead flags %b, Parse's %b", frame, cut, h.Flags, p.Flags)
	}
	if (cut == len(frame) || h.Has(TCP)) && h != *p {
		t.Fatalf("% x cut at %d: ParseHead %+v, Parse %+v", frame, cut, h, *p)
	}
	if h.Has(TCP) {
		_ = h.TCPOptions(frame[:cut])
		_ = h.PortPair(frame[:cut])
		_ = h.AddrPair(frame[:cut])
	}
}

// TestParseHead parses the first buffer of a jumbo TCP segment as the
// head of the whole frame: the segment's headers are all read.
func TestParseHead(t *testing.T) {
	for _, frame := range [][]byte{
		ip4(header.TCPProtocolNumber, 0, 0, tcpSeg(header.TCPFlagAck, 12, 8948)),
		ip6(header.TCPProtocolNumber, tcpSeg(header.TCPFlagAck, 12, 8928)),
	} {
		var p, h Parsed
		Parse(frame, &p)
		ParseHead(frame[:1792], len(frame), &h)
		if !h.Has(TCP) || h != p {
			t.Errorf("ParseHead of the first 1792 of %d bytes: %+v, want %+v", len(frame), h, p)
		}
		if h.TCPPayloadLen() != len(frame)-int(h.L4Off)-32 {
			t.Errorf("payload of %d bytes", h.TCPPayloadLen())
		}
		Parse(frame[:1792], &p)
		if p.Has(IPv4) || p.Has(IPv6) {
			t.Errorf("Parse of a cut frame: %+v", p)
		}
	}
}

func checkOffsets(t *testing.T, frame []byte, p *Parsed) {
	t.Helper()
	if p.Flags == 0 {
		if len(frame) >= header.EthernetMinimumSize {
			t.Fatalf("% x: no Ether flag on a frame of %d bytes", frame, len(frame))
		}
		return
	}
	ip := p.Flags&(IPv4|IPv6) != 0
	if p.Flags&(IPv4|IPv6) == IPv4|IPv6 {
		t.Fatalf("% x: both IPv4 and IPv6", frame)
	}
	if !ip && p.Flags&^(Ether|ARP) != 0 {
		t.Fatalf("% x: flags %b without an IP header", frame, p.Flags)
	}
	if ip {
		if p.L4Off < header.EthernetMinimumSize+header.IPv4MinimumSize || p.L4Off > p.End || int(p.End) > len(frame) {
			t.Fatalf("% x: L4Off %d, End %d of %d bytes", frame, p.L4Off, p.End, len(frame))
		}
		_, _ = p.Addrs(frame)
		_ = p.AddrPair(frame)
		_ = p.IP(frame)
		_ = p.L4(frame)
	}
	if p.Has(Ports) {
		if p.L4Off+4 > p.End {
			t.Fatalf("% x: ports at %d past the datagram's end %d", frame, p.L4Off, p.End)
		}
		_ = p.PortPair(frame)
	}
	if p.Has(TCP) {
		if !p.Has(Ports) || p.TCPHdrLen < header.TCPMinimumSize || p.L4Off+uint32(p.TCPHdrLen) > p.End {
			t.Fatalf("% x: TCP header of %d bytes at %d, datagram end %d", frame, p.TCPHdrLen, p.L4Off, p.End)
		}
		_ = p.TCPOptions(frame)
		if p.TCPPayloadLen() < 0 {
			t.Fatalf("% x: TCP payload of %d bytes", frame, p.TCPPayloadLen())
		}
	}
}

func checkLegacy(t *testing.T, frame []byte, p *Parsed) {
	t.Helper()
	if len(frame) < header.EthernetMinimumSize {
		return
	}
	et := binary.BigEndian.Uint16(frame[12:])
	if et != 0x0800 && et != 0x86dd {
		if p.Flags&(IPv4|IPv6) != 0 {
			t.Fatalf("% x: an IP header in EtherType %#04x", frame, et)
		}
		return
	}
	ip := frame[header.EthernetMinimumSize:]
	rx := legacyTCPSegment(ip, et == 0x86dd)
	tx := legacyParseSeg(frame)
	// What neither parser checked: the IPv6 version.
	v6Bad := et == 0x86dd && header.IPVersion(ip) != header.IPv6Version
	whole := p.Has(TCP) && p.Flags&Fragment == 0
	switch {
	case rx != nil && tx.ok && !v6Bad:
		if !whole {
			t.Fatalf("% x: both old parsers took it as a TCP segment, Parse says flags %b", frame, p.Flags)
		}
		src, dst := p.Addrs(frame)
		if uint8(p.TCPFlags) != tx.flags || rx[13] != tx.flags || p.Ack != tx.ack || p.Window != tx.win ||
			p.SrcPort != tx.sport || p.DstPort != tx.dport || int(p.TCPHdrLen) != tx.hdrLen ||
			p.TCPPayloadLen() != tx.payloadLen || !bytes.Equal(src, tx.src) || !bytes.Equal(dst, tx.dst) ||
			p.Seq != binary.BigEndian.Uint32(rx[4:]) {
			t.Fatalf("% x: Parse %+v, old parsers %+v", frame, *p, tx)
		}
	case whole:
		t.Fatalf("% x: Parse took a segment as TCP that an old parser refused (rx %v, tx %v)", frame, rx != nil, tx.ok)
	}
	// A first fragment: the receive side took its TCP header (the SYN+FIN
	// drop and the SYN guard apply to it); Parse must not take more.
	if p.Has(TCP|Fragment) && rx == nil {
		t.Fatalf("% x: Parse read the TCP header of a fragment the receive side refused", frame)
	}
}
