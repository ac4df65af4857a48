package core

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/internal/testframe"
)

// Frames are built with testframe over gVisor's encoders, so the offsets
// Classify reads are checked against an independent writer.

func steerTCP(sport, dport uint16) []byte {
	return testframe.TCP{SrcPort: sport, DstPort: dport, Flags: header.TCPFlagAck, Window: 1024}.Segment(nil)
}

func steerUDP(sport, dport uint16) []byte {
	return testframe.UDP{SrcPort: sport, DstPort: dport}.Datagram(make([]byte, 4))
}

// steerICMP is an echo or error message with ident where echo messages
// carry it (the upper half of the 4 bytes after the checksum).
func steerICMP[T ~uint8](typ T, ident uint16, body []byte) []byte {
	return testframe.ICMP(typ, 0, uint32(ident)<<16, body)
}

func steerARP(op header.ARPOp, spa, tpa tcpip.Address) []byte {
	return testframe.Frame(header.ARPProtocolNumber, testframe.ARP(op, testframe.MACPeer, spa, tpa))
}

// steerIP6Ext is an IPv6 packet whose first header is an 8-byte extension
// header (Hop-by-Hop or Fragment) followed by TCP.
func steerIP6Ext(nh tcpip.TransportProtocolNumber, dport uint16) []byte {
	ext := make([]byte, 8)
	ext[0] = uint8(header.TCPProtocolNumber)
	return testframe.IPv6{Next: nh}.Frame(append(ext, steerTCP(40000, dport)...))
}

// A steerCase is a frame and the lcore that owns it, or steerAny (whoever
// receives it processes it) or steerAll (Broadcast).
type steerCase struct {
	name  string
	frame []byte
	owner int
}

const (
	steerAny = -1
	steerAll = -2
)

// want is the verdict and owner that lcore self must return for the case.
func (c steerCase) want(self int) (Verdict, int) {
	switch {
	case c.owner == steerAll:
		return Broadcast, self
	case c.owner == steerAny || c.owner == self:
		return Local, self
	}
	return HandOff, c.owner
}

// steerCases are for 4 lcores with ranges of 1000 from 10000: lcore 0
// 10000-10999, 1 11000-11999, 2 12000-12999, 3 13000-13999.
func steerCases() []steerCase {
	tcp, udp := header.TCPProtocolNumber, header.UDPProtocolNumber
	ip4TCP, ip4UDP, ip4ICMP := testframe.IPv4{Proto: tcp}, testframe.IPv4{Proto: udp}, testframe.IPv4{Proto: header.ICMPv4ProtocolNumber}
	ip6TCP, ip6UDP, ip6ICMP := testframe.IPv6{Next: tcp}, testframe.IPv6{Next: udp}, testframe.IPv6{Next: header.ICMPv6ProtocolNumber}
	// What we sent and an ICMP error quotes: from our port to the peer.
	us4, peer4, us6, peer6 := testframe.V4Us, testframe.V4Peer, testframe.V6Us, testframe.V6Peer
	ourTCP4 := testframe.IPv4{Src: us4, Dst: peer4, Proto: tcp}.Packet(steerTCP(12001, 80))
	ourUDP4 := testframe.IPv4{Src: us4, Dst: peer4, Proto: udp}.Packet(steerUDP(10001, 53))
	ourPing4 := testframe.IPv4{Src: us4, Dst: peer4, Proto: ip4ICMP.Proto}.Packet(steerICMP(header.ICMPv4Echo, 12002, nil))
	ourTCP6 := testframe.IPv6{Src: us6, Dst: peer6, Next: tcp}.Packet(steerTCP(13002, 443))
	ourPing6 := testframe.IPv6{Src: us6, Dst: peer6, Next: ip6ICMP.Next}.Packet(steerICMP(header.ICMPv6EchoRequest, 10003, nil))
	padded := ip4UDP.Frame(steerUDP(53, 12000)[:8])
	padded = append(padded, make([]byte, 60-len(padded))...)
	badTotal := ip4TCP.Frame(steerTCP(80, 12000))
	binary.BigEndian.PutUint16(badTotal[14+2:], 200)
	shortTotal := ip4TCP.Frame(steerTCP(80, 12000))
	binary.BigEndian.PutUint16(shortTotal[14+2:], 22) // 2 bytes of TCP in the datagram
	badIHL := ip4TCP.Frame(steerTCP(80, 12000))
	badIHL[14] = 0x44
	v6InV4 := ip4TCP.Frame(steerTCP(80, 12000))
	v6InV4[14] = 0x65
	badPayloadLen := ip6TCP.Frame(steerTCP(80, 12000))
	binary.BigEndian.PutUint16(badPayloadLen[14+4:], 100)
	arpBadHType := steerARP(header.ARPReply, testframe.V4Peer, testframe.V4Us)
	arpBadHType[15] = 6 // IEEE 802
	arpShort := steerARP(header.ARPReply, testframe.V4Peer, testframe.V4Us)[:14+27]

	return []steerCase{
		{"tcp4 to lcore 2", ip4TCP.Frame(steerTCP(80, 12345)), 2},
		{"tcp4 to lcore 1", ip4TCP.Frame(steerTCP(80, 11500)), 1},
		{"tcp4 to first port of lcore 0", ip4TCP.Frame(steerTCP(80, 10000)), 0},
		{"tcp4 to last port of lcore 0", ip4TCP.Frame(steerTCP(80, 10999)), 0},
		{"tcp4 to first port of lcore 1", ip4TCP.Frame(steerTCP(80, 11000)), 1},
		{"tcp4 to last port of lcore 3", ip4TCP.Frame(steerTCP(80, 13999)), 3},
		{"tcp4 past the ranges", ip4TCP.Frame(steerTCP(80, 14000)), steerAny},
		{"tcp4 below the ranges", ip4TCP.Frame(steerTCP(80, 9999)), steerAny},
		{"tcp4 to a listening port", ip4TCP.Frame(steerTCP(12345, 80)), steerAny},
		{"tcp4 with IP options", testframe.IPv4{Proto: tcp, Options: testframe.NOPs(8)}.Frame(steerTCP(80, 12000)), 2},
		{"tcp4 with DF", testframe.IPv4{Proto: tcp, Flags: header.IPv4FlagDontFragment}.Frame(steerTCP(80, 13000)), 3},
		{"udp4 to lcore 3", ip4UDP.Frame(steerUDP(53, 13000)), 3},
		{"udp4 with ethernet padding", padded, 2},
		{"udp4 to a listening port", ip4UDP.Frame(steerUDP(13000, 53)), steerAny},
		{"ipv4 first fragment", testframe.IPv4{Proto: udp, Flags: header.IPv4FlagMoreFragments}.Frame(steerUDP(53, 11000)), 0},
		{"ipv4 middle fragment", testframe.IPv4{Proto: udp, Flags: header.IPv4FlagMoreFragments, FragOff: 1480}.Frame(make([]byte, 16)), 0},
		{"ipv4 last fragment", testframe.IPv4{Proto: udp, FragOff: 1480}.Frame(make([]byte, 16)), 0},
		{"sctp4", testframe.IPv4{Proto: 132}.Frame(steerTCP(80, 12000)), steerAny},
		{"tcp6 to lcore 2", ip6TCP.Frame(steerTCP(80, 12999)), 2},
		{"tcp6 to lcore 1", ip6TCP.Frame(steerTCP(80, 11001)), 1},
		{"tcp6 to a listening port", ip6TCP.Frame(steerTCP(11001, 443)), steerAny},
		{"udp6 to lcore 0", ip6UDP.Frame(steerUDP(53, 10500)), 0},
		{"tcp6 after hop-by-hop", steerIP6Ext(0, 12000), steerAny},
		{"tcp6 after a routing header", steerIP6Ext(43, 12000), steerAny},
		{"ipv6 fragment", steerIP6Ext(header.IPv6FragmentHeader, 12000), 0},
		{"arp request", steerARP(header.ARPRequest, testframe.V4Peer, testframe.V4Us), steerAll},
		{"arp reply", steerARP(header.ARPReply, testframe.V4Peer, testframe.V4Us), steerAll},
		{"gratuitous arp request", steerARP(header.ARPRequest, testframe.V4Peer, testframe.V4Peer), steerAll},
		{"gratuitous arp reply", steerARP(header.ARPReply, testframe.V4Peer, testframe.V4Peer), steerAll},
		{"arp probe", steerARP(header.ARPRequest, tcpip.AddrFrom4([4]byte{}), testframe.V4Us), steerAll},
		{"arp unknown op", steerARP(3, testframe.V4Peer, testframe.V4Us), steerAny},
		{"arp not ethernet", arpBadHType, steerAny},
		{"arp short", arpShort, steerAny},
		{"icmp4 echo request", ip4ICMP.Frame(steerICMP(header.ICMPv4Echo, 13001, nil)), steerAny},
		{"icmp4 echo reply to lcore 3", ip4ICMP.Frame(steerICMP(header.ICMPv4EchoReply, 13001, nil)), 3},
		{"icmp4 echo reply outside the ranges", ip4ICMP.Frame(steerICMP(header.ICMPv4EchoReply, 7, nil)), steerAny},
		{"icmp4 frag needed quoting our tcp", ip4ICMP.Frame(steerICMP(header.ICMPv4DstUnreachable, 1400, ourTCP4[:28])), 2},
		{"icmp4 port unreachable quoting our udp", ip4ICMP.Frame(steerICMP(header.ICMPv4DstUnreachable, 0, ourUDP4)), 0},
		{"icmp4 time exceeded quoting our ping", ip4ICMP.Frame(steerICMP(header.ICMPv4TimeExceeded, 0, ourPing4)), 2},
		{"icmp4 parameter problem quoting our tcp", ip4ICMP.Frame(steerICMP(header.ICMPv4ParamProblem, 0, ourTCP4)), 2},
		{"icmp4 error quoting too little", ip4ICMP.Frame(steerICMP(header.ICMPv4DstUnreachable, 0, ourTCP4[:27])), steerAny},
		{"icmp4 error quoting a fragment", ip4ICMP.Frame(steerICMP(header.ICMPv4DstUnreachable, 0,
			testframe.IPv4{Src: us4, Dst: peer4, Proto: tcp, FragOff: 8}.Packet(steerTCP(12001, 80)))), steerAny},
		{"icmp4 error quoting ipv6", ip4ICMP.Frame(steerICMP(header.ICMPv4DstUnreachable, 0, ourTCP6)), steerAny},
		{"icmp4 redirect", ip4ICMP.Frame(steerICMP(header.ICMPv4Redirect, 0, ourTCP4)), steerAny},
		{"icmp4 short", ip4ICMP.Frame([]byte{0, 0, 0, 0, 0x2e}), steerAny},
		{"icmp6 neighbor solicitation", ip6ICMP.Frame(steerICMP(header.ICMPv6NeighborSolicit, 0, make([]byte, 16))), steerAll},
		{"icmp6 neighbor advertisement", ip6ICMP.Frame(steerICMP(header.ICMPv6NeighborAdvert, 0, make([]byte, 16))), steerAll},
		{"icmp6 router advertisement", ip6ICMP.Frame(steerICMP(header.ICMPv6RouterAdvert, 0, make([]byte, 8))), steerAll},
		{"icmp6 router solicitation", ip6ICMP.Frame(steerICMP(header.ICMPv6RouterSolicit, 0, nil)), steerAny},
		{"icmp6 redirect", ip6ICMP.Frame(steerICMP(header.ICMPv6RedirectMsg, 0, make([]byte, 32))), steerAny},
		{"icmp6 echo request", ip6ICMP.Frame(steerICMP(header.ICMPv6EchoRequest, 12000, nil)), steerAny},
		{"icmp6 echo reply to lcore 2", ip6ICMP.Frame(steerICMP(header.ICMPv6EchoReply, 12000, nil)), 2},
		{"icmp6 echo reply to lcore 1", ip6ICMP.Frame(steerICMP(header.ICMPv6EchoReply, 11999, nil)), 1},
		{"icmp6 packet too big quoting our tcp", ip6ICMP.Frame(steerICMP(header.ICMPv6PacketTooBig, 0, ourTCP6)), 3},
		{"icmp6 unreachable quoting our ping", ip6ICMP.Frame(steerICMP(header.ICMPv6DstUnreachable, 0, ourPing6)), 0},
		{"icmp6 error quoting too little", ip6ICMP.Frame(steerICMP(header.ICMPv6TimeExceeded, 0, ourTCP6[:47])), steerAny},
		{"icmp6 short", ip6ICMP.Frame([]byte{136, 0, 0}), steerAny},
		{"empty", nil, steerAny},
		{"13 bytes", ip4TCP.Frame(steerTCP(80, 12000))[:13], steerAny},
		{"ethernet header only", testframe.Frame(header.IPv4ProtocolNumber, nil), steerAny},
		{"ipv4 header cut", ip4TCP.Frame(steerTCP(80, 12000))[:14+19], steerAny},
		{"ipv4 total length past the frame", badTotal, steerAny},
		{"ipv4 total length cuts the ports", shortTotal, steerAny},
		{"ipv4 header length past the frame", badIHL, steerAny},
		{"ipv4 ethertype, version 6", v6InV4, steerAny},
		{"tcp4 ports cut", ip4TCP.Frame([]byte{0, 80, 0x2e}), steerAny},
		{"ipv6 header cut", ip6TCP.Frame(steerTCP(80, 12000))[:14+39], steerAny},
		{"ipv6 payload length past the frame", badPayloadLen, steerAny},
		{"udp6 ports cut", ip6UDP.Frame([]byte{0, 53, 0x2e}), steerAny},
		{"vlan tagged", testframe.Frame(0x8100, make([]byte, 64)), steerAny},
		{"unknown ethertype", testframe.Frame(0x88cc, make([]byte, 64)), steerAny},
	}
}

func TestSteerClassify(t *testing.T) {
	for self := range 4 {
		s := NewSteer(4, self, 10000, 1000)
		for _, tc := range steerCases() {
			t.Run(fmt.Sprintf("lcore%d/%s", self, tc.name), func(t *testing.T) {
				wantV, wantOwner := tc.want(self)
				if v, owner := s.Classify(tc.frame); v != wantV || owner != wantOwner {
					t.Errorf("Classify = %v, %d, want %v, %d", v, owner, wantV, wantOwner)
				}
			})
		}
	}
}

func TestSteerOneLcore(t *testing.T) {
	s := NewSteer(1, 0, 10000, 1000)
	for _, tc := range steerCases() {
		if v, owner := s.Classify(tc.frame); v != Local || owner != 0 {
			t.Errorf("%s: Classify with one lcore = %v, %d, want local, 0", tc.name, v, owner)
		}
	}
}

// TestSteerEveryPort checks the port rule for every port against
// PortRange, with ranges that end at 65535.
func TestSteerEveryPort(t *testing.T) {
	const n = 3
	for self := range n {
		s := NewSteer(n, self, 65536-3*5000, 5000)
		frame := testframe.IPv4{Proto: header.TCPProtocolNumber}.Frame(steerTCP(80, 0))
		dport := frame[14+20+2:]
		for port := range 1 << 16 {
			want, wantOwner := Local, self
			for i := range n {
				if lo, hi := s.PortRange(i); port >= int(lo) && port <= int(hi) && i != self {
					want, wantOwner = HandOff, i
				}
			}
			binary.BigEndian.PutUint16(dport, uint16(port))
			if v, owner := s.Classify(frame); v != want || owner != wantOwner {
				t.Fatalf("lcore %d, port %d: Classify = %v, %d, want %v, %d", self, port, v, owner, want, wantOwner)
			}
		}
	}
}

func TestSteerPortRange(t *testing.T) {
	s := NewSteer(4, 2, 32768, 8192)
	for i, want := range [][2]uint16{{32768, 40959}, {40960, 49151}, {49152, 57343}, {57344, 65535}} {
		if lo, hi := s.PortRange(i); lo != want[0] || hi != want[1] {
			t.Errorf("PortRange(%d) = [%d, %d], want [%d, %d]", i, lo, hi, want[0], want[1])
		}
	}
}

func TestNewSteerPanics(t *testing.T) {
	for _, tc := range []struct {
		n, self    int
		base, per  uint16
		wantsPanic bool
	}{
		{1, 0, 0, 0, false},
		{2, 1, 32768, 16384, false},
		{2, 1, 32768, 16385, true},
		{0, 0, 10000, 100, true},
		{2, 2, 10000, 100, true},
		{2, -1, 10000, 100, true},
		{2, 0, 10000, 0, true},
	} {
		func() {
			defer func() {
				if got := recover() != nil; got != tc.wantsPanic {
					t.Errorf("NewSteer(%d, %d, %d, %d): panic %v, want %v", tc.n, tc.self, tc.base, tc.per, got, tc.wantsPanic)
				}
			}()
			NewSteer(tc.n, tc.self, tc.base, tc.per)
		}()
	}
}

func TestSteerAllocs(t *testing.T) {
	s := NewSteer(4, 1, 10000, 1000)
	cases := steerCases()
	allocs := testing.AllocsPerRun(100, func() {
		for _, tc := range cases {
			s.Classify(tc.frame)
		}
	})
	if allocs != 0 {
		t.Fatalf("Classify allocates %v times per run", allocs)
	}
}

func TestSteerVerdictString(t *testing.T) {
	for v, want := range map[Verdict]string{Local: "local", HandOff: "hand-off", Broadcast: "broadcast", 7: "Verdict(7)"} {
		if got := v.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", v, got, want)
		}
	}
}

// steerModel is the owner the steering rules give frame under portBase
// and perLcore ranges of n lcores, worked out with gVisor's header parsers
// rather than Classify's own offsets: an lcore, steerAll or steerAny. ok
// is false for the frames the model leaves out (ICMP messages other than
// the neighbour discovery ones, which quote other packets).
func steerModel(frame []byte, n int, portBase, perLcore uint16) (owner int, ok bool) {
	byPort := func(port uint16) int {
		for i := range n {
			lo := int(portBase) + i*int(perLcore)
			if int(port) >= lo && int(port) < lo+int(perLcore) {
				return i
			}
		}
		return steerAny
	}
	if n == 1 || len(frame) < header.EthernetMinimumSize {
		return steerAny, true
	}
	p := frame[header.EthernetMinimumSize:]
	switch header.Ethernet(frame).Type() {
	case header.ARPProtocolNumber:
		a := header.ARP(p)
		if a.IsValid() && (a.Op() == header.ARPRequest || a.Op() == header.ARPReply) {
			return steerAll, true
		}
	case header.IPv4ProtocolNumber:
		ip := header.IPv4(p)
		if !ip.IsValid(len(p)) {
			break
		}
		if ip.More() || ip.FragmentOffset() != 0 {
			return 0, true
		}
		l4 := p[ip.HeaderLength():ip.TotalLength()]
		switch ip.TransportProtocol() {
		case header.TCPProtocolNumber, header.UDPProtocolNumber:
			if len(l4) >= 4 {
				return byPort(binary.BigEndian.Uint16(l4[2:])), true
			}
		case header.ICMPv4ProtocolNumber:
			return 0, false
		}
	case header.IPv6ProtocolNumber:
		ip := header.IPv6(p)
		if len(p) < header.IPv6MinimumSize || header.IPVersion(p) != header.IPv6Version ||
			header.IPv6MinimumSize+int(ip.PayloadLength()) > len(p) {
			break
		}
		l4 := ip.Payload()
		switch ip.TransportProtocol() {
		case header.TCPProtocolNumber, header.UDPProtocolNumber:
			if len(l4) >= 4 {
				return byPort(binary.BigEndian.Uint16(l4[2:])), true
			}
		case header.IPv6FragmentHeader:
			return 0, true
		case header.ICMPv6ProtocolNumber:
			if len(l4) < header.ICMPv6HeaderSize {
				break
			}
			switch header.ICMPv6(l4).Type() {
			case header.ICMPv6NeighborSolicit, header.ICMPv6NeighborAdvert, header.ICMPv6RouterAdvert:
				return steerAll, true
			}
			return 0, false
		}
	}
	return steerAny, true
}

// FuzzClassify checks that Classify never panics on any frame and any valid
// lcore set, never writes to the frame, gives the verdict the classifier
// before packet.Parse gave (steer_legacy_test.go), and that the lcores
// agree: every
// lcore says Broadcast, or every one says Local, or exactly one says Local
// and every other hands the frame to that one, so a frame is processed
// exactly once (or everywhere, for neighbour traffic). Where the model
// above covers the frame, the owner is the model's. Seeds: every table
// case, and testdata/fuzz/FuzzClassify.
func FuzzClassify(f *testing.F) {
	for _, tc := range steerCases() {
		f.Add(tc.frame, uint8(4), uint8(1), uint16(10000), uint16(1000))
	}
	f.Fuzz(func(t *testing.T, frame []byte, n, self uint8, base, per uint16) {
		// Any arguments that describe a valid lcore set are used as they
		// are; the others are folded into one.
		nl := max(1, int(n)%65)
		if per == 0 {
			per = 1
		}
		if nl*int(per) > 1<<16 {
			per = uint16(1 << 16 / nl)
		}
		if int(base)+nl*int(per) > 1<<16 {
			base = uint16(1<<16 - nl*int(per))
		}
		orig := bytes.Clone(frame)
		verdicts := make([]Verdict, nl)
		owner := steerAny // what the lcores agree on
		for me := range nl {
			st := NewSteer(nl, me, base, per)
			v, o := st.Classify(frame)
			if lv, lo := (legacySteer{st}).Classify(frame); v != lv || o != lo {
				t.Fatalf("% x, lcore %d of %d: Classify = %v, %d; the classifier it replaced said %v, %d", frame, me, nl, v, o, lv, lo)
			}
			verdicts[me] = v
			switch v {
			case Local, Broadcast:
				if o != me {
					t.Fatalf("lcore %d: %v with owner %d", me, v, o)
				}
			case HandOff:
				if o == me || o < 0 || o >= nl {
					t.Fatalf("lcore %d: hand-off to %d of %d lcores", me, o, nl)
				}
				if owner != steerAny && owner != o {
					t.Fatalf("% x: lcores hand it to %d and to %d", frame, owner, o)
				}
				owner = o
			default:
				t.Fatalf("lcore %d: verdict %d", me, v)
			}
		}
		if verdicts[0] == Broadcast {
			owner = steerAll
		}
		for me, v := range verdicts {
			want := Local
			switch {
			case owner == steerAll:
				want = Broadcast
			case owner >= 0 && me != owner:
				want = HandOff
			}
			if v != want {
				t.Fatalf("% x: lcore %d says %v, want %v (owner %d)", frame, me, v, want, owner)
			}
		}
		if !bytes.Equal(frame, orig) {
			t.Fatalf("Classify changed the frame")
		}
		if want, ok := steerModel(frame, nl, base, per); ok && owner != want {
			t.Fatalf("% x with %d lcores of %d ports from %d: the lcores agree on owner %d, the model says %d", frame, nl, per, base, owner, want)
		}
	})
}

func BenchmarkSteerClassify(b *testing.B) {
	s := NewSteer(4, 1, 10000, 1000)
	tcp4, tcp6 := testframe.IPv4{Proto: header.TCPProtocolNumber}, testframe.IPv6{Next: header.TCPProtocolNumber}
	for _, bc := range []struct {
		name  string
		frame []byte
	}{
		{"tcp4-handoff", tcp4.Frame(steerTCP(80, 12345))},
		{"tcp4-listen", tcp4.Frame(steerTCP(40000, 80))},
		{"tcp6-handoff", tcp6.Frame(steerTCP(80, 12345))},
		{"arp-reply", steerARP(header.ARPReply, testframe.V4Peer, testframe.V4Us)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Classify(bc.frame)
			}
		})
	}
}

// The Microsoft RSS verification suite ("Verifying the RSS Hash
// Calculation"): its key and its published IPv4 and IPv6 results, each for
// the addresses alone and for addresses with TCP ports.
var rssTestKey, _ = hex.DecodeString("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa")

var rssTestVectors = []struct {
	src, dst     netip.AddrPort
	addrs, tuple uint32
}{
	{netip.MustParseAddrPort("66.9.149.187:2794"), netip.MustParseAddrPort("161.142.100.80:1766"), 0x323e8fc2, 0x51ccc178},
	{netip.MustParseAddrPort("199.92.111.2:14230"), netip.MustParseAddrPort("65.69.140.83:4739"), 0xd718262a, 0xc626b0ea},
	{netip.MustParseAddrPort("24.19.198.95:12898"), netip.MustParseAddrPort("12.22.207.184:38024"), 0xd2d0a5de, 0x5c2b394a},
	{netip.MustParseAddrPort("38.27.205.30:48228"), netip.MustParseAddrPort("209.142.163.6:2217"), 0x82989176, 0xafc7327f},
	{netip.MustParseAddrPort("153.39.163.191:44251"), netip.MustParseAddrPort("202.188.127.2:1303"), 0x5d1809c5, 0x10e828a2},
	{netip.MustParseAddrPort("[3ffe:2501:200:1fff::7]:2794"), netip.MustParseAddrPort("[3ffe:2501:200:3::1]:1766"), 0x2cc18cd5, 0x40207d3d},
	{netip.MustParseAddrPort("[3ffe:501:8::260:97ff:fe40:efab]:14230"), netip.MustParseAddrPort("[ff02::1]:4739"), 0x0f0c461c, 0xdde51bbf},
	{netip.MustParseAddrPort("[3ffe:1900:4545:3:200:f8ff:fe21:67cf]:44251"), netip.MustParseAddrPort("[fe80::200:f8ff:fe21:67cf]:38024"), 0x4b61e985, 0x02d1feef},
}

func TestToeplitzHash(t *testing.T) {
	for _, tc := range rssTestVectors {
		t.Run(tc.src.String()+"->"+tc.dst.String(), func(t *testing.T) {
			var buf [36]byte
			in, _ := rssInput(&buf, tc.src, tc.dst)
			if got := ToeplitzHash(rssTestKey, in); got != tc.tuple {
				t.Errorf("with ports: %#08x, want %#08x", got, tc.tuple)
			}
			addrs := in[:len(in)-4]
			if got := ToeplitzHash(rssTestKey, addrs); got != tc.addrs {
				t.Errorf("addresses only: %#08x, want %#08x", got, tc.addrs)
			}
		})
	}
	if got := ToeplitzHash(nil, []byte{1, 2, 3}); got != 0 {
		t.Errorf("empty key: %#x, want 0", got)
	}
	if got := ToeplitzHash(rssTestKey, nil); got != 0 {
		t.Errorf("empty input: %#x, want 0", got)
	}
	// A key too short for the input: the missing bits are zero.
	long := make([]byte, 64)
	long[63] = 1
	if got, want := ToeplitzHash(rssTestKey[:8], long), ToeplitzHash(append(rssTestKey[:8:8], make([]byte, 60)...), long); got != want {
		t.Errorf("short key: %#x, want %#x", got, want)
	}
}

func TestToeplitzHashLinear(t *testing.T) {
	// keyWindow is what PickPort relies on: each input bit XORs in the 32
	// key bits that start at its position.
	for bit := range 36 * 8 {
		in := make([]byte, 36)
		in[bit/8] = 0x80 >> (bit % 8)
		if got, want := ToeplitzHash(rssTestKey, in), keyWindow(rssTestKey, bit); got != want {
			t.Fatalf("bit %d: %#x, keyWindow %#x", bit, got, want)
		}
	}
}

func TestToeplitzPickPort(t *testing.T) {
	const queues = 4
	table := make([]uint32, 128) // ethtool's default spread
	for i := range table {
		table[i] = uint32(i % queues)
	}
	r := &RSS{Key: rssTestKey, Table: table}
	for _, c := range []struct {
		local  netip.Addr
		remote netip.AddrPort
	}{
		{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddrPort("198.18.0.2:80")},
		{netip.MustParseAddr("2001:2::1"), netip.MustParseAddrPort("[2001:2::2]:443")},
	} {
		for q := range queues {
			seen := 0
			for from := uint16(32768); ; {
				p, ok := r.PickPort(q, c.local, c.remote, 32768, 33791, from)
				if !ok {
					t.Fatalf("queue %d: no port", q)
				}
				if got := r.Queue(c.remote, netip.AddrPortFrom(c.local, p)); got != q {
					t.Fatalf("queue %d: port %d hashes to queue %d", q, p, got)
				}
				// Every port from `from` to p-1 must belong to another queue.
				for x := from; x < p; x++ {
					if r.Queue(c.remote, netip.AddrPortFrom(c.local, x)) == q {
						t.Fatalf("queue %d: PickPort from %d skipped port %d", q, from, x)
					}
				}
				seen++
				if p == 33791 || seen == 50 {
					break
				}
				from = p + 1
			}
		}
	}
	// Wrap from the top of the range to its bottom.
	local, remote := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddrPort("198.18.0.2:80")
	first, _ := r.PickPort(2, local, remote, 1000, 1999, 1000)
	if p, ok := r.PickPort(2, local, remote, 1000, first, first+1); !ok || p != first {
		t.Errorf("wrap: got %d, %v, want %d", p, ok, first)
	}
	if _, ok := r.PickPort(7, local, remote, 1000, 1999, 1000); ok {
		t.Error("found a port for a queue not in the table")
	}
	if _, ok := (&RSS{Key: rssTestKey}).PickPort(0, local, remote, 1000, 1999, 1000); ok {
		t.Error("found a port with no table")
	}
	if _, ok := r.PickPort(0, local, remote, 2000, 1000, 1000); ok {
		t.Error("found a port in an empty range")
	}
	allocs := testing.AllocsPerRun(100, func() { r.PickPort(3, local, remote, 1024, 65535, 5000) })
	if allocs != 0 {
		t.Errorf("PickPort allocates %v times", allocs)
	}
}

func BenchmarkToeplitzPickPort(b *testing.B) {
	table := make([]uint32, 128)
	for i := range table {
		table[i] = uint32(i % 8)
	}
	r := &RSS{Key: rssTestKey, Table: table}
	local, remote := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddrPort("198.18.0.2:80")
	b.ReportAllocs()
	var from uint16 = 32768
	for b.Loop() {
		p, _ := r.PickPort(5, local, remote, 32768, 65535, from)
		from = p + 1
	}
}

func ExampleSteer() {
	s := NewSteer(2, 0, 32768, 16384)
	lo, hi := s.PortRange(1)
	fmt.Println(lo, hi)
	// Output: 49152 65535
}
