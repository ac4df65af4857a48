package main

import (
	"net/netip"
	"testing"

	"github.com/xstack/xstack/stack/packet"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var (
	testSrc6b = netip.MustParseAddr("2001:2::101")
	otherHost = netip.MustParseAddr("2001:2::9")
	otherMAC  = [6]byte{2, 0, 0, 0, 0, 9}
	allNodes  = netip.MustParseAddr("ff02::1")
)

// snm is a's solicited-node multicast address (RFC 4291 2.7.1).
func snm(a netip.Addr) netip.Addr {
	b := a.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
}

// ndMsg describes a Neighbor Solicitation or Advertisement sent to the
// engine.
type ndMsg struct {
	typ              header.ICMPv6Type
	src, dst, target netip.Addr
	ethSrc           [6]byte // default srvMAC
	hop              uint8   // default 255
	code             uint8
	naFlags          uint8  // the NA's R, S, O bits, as the first byte holds them
	opts             []byte // the options, as sent
	cut              int    // bytes cut off the message's end, checksum made after
	badSum           bool
}

const (
	naSolicited = 1 << 6
	naOverride  = 1 << 5
)

// llOpt is a link-layer address option: 1 is the source's, 2 the target's.
func llOpt(kind byte, mac [6]byte) []byte { return append([]byte{kind, 1}, mac[:]...) }

func (m ndMsg) frame() []byte {
	if m.hop == 0 {
		m.hop = 255
	}
	if m.ethSrc == ([6]byte{}) {
		m.ethSrc = srvMAC
	}
	msg := make([]byte, header.ICMPv6NeighborSolicitMinimumSize, 64)
	msg[0], msg[1], msg[4] = byte(m.typ), m.code, m.naFlags
	t := m.target.As16()
	copy(msg[8:], t[:])
	msg = append(msg, m.opts...)
	msg = msg[:len(msg)-m.cut]
	src, dst := tcpip.AddrFrom16(m.src.As16()), tcpip.AddrFrom16(m.dst.As16())
	ic := header.ICMPv6(msg)
	if len(msg) >= header.ICMPv6HeaderSize {
		ic.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: ic, Src: src, Dst: dst}))
		if m.badSum {
			ic.SetChecksum(ic.Checksum() ^ 0x0400)
		}
	}
	ethDst := testMAC[:]
	if m.dst.IsMulticast() {
		ethDst = multicastMAC(dst)
	}
	b := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+len(msg))
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(m.ethSrc[:]),
		DstAddr: tcpip.LinkAddress(ethDst), Type: header.IPv6ProtocolNumber})
	header.IPv6(b[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{PayloadLength: uint16(len(msg)),
		TransportProtocol: header.ICMPv6ProtocolNumber, HopLimit: m.hop, SrcAddr: src, DstAddr: dst})
	copy(b[header.EthernetMinimumSize+header.IPv6MinimumSize:], msg)
	return b
}

// ndEngine is an IPv6 engine of two source addresses, testSrc6 and
// testSrc6b, that does not know the server's MAC address yet.
func ndEngine() (*Engine, *memTx) {
	tx := &memTx{}
	e := NewEngine(Config{MAC: testMAC, Srcs: []netip.Addr{testSrc6, testSrc6b}, PortLo: 1000, PortHi: 1999,
		Server: testSrv6, SrvPort: 80, Conns: 4, Request: []byte("GET / HTTP/1.1\r\n\r\n"), RTO: 200e6,
		Retries: 3, Timeout: 1e9, RcvWindow: 0xffff, MSS: 1440}, tx, 1)
	return e, tx
}

// sentND is what the engine's NS or NA says.
type sentND struct {
	ethDst, lla   [6]byte
	src, dst      netip.Addr
	target        netip.Addr
	hop           uint8
	typ           header.ICMPv6Type
	flags         uint8 // an NA's R, S, O bits; an NS's reserved byte
	sumOK, optsOK bool
}

// readND reads an NS or NA the engine sent, checking its checksum and
// that it carries exactly one link-layer address option of the right
// kind (source for an NS, target for an NA).
func readND(t *testing.T, f []byte) sentND {
	t.Helper()
	var p packet.Parsed
	packet.Parse(f, &p)
	if !p.Has(packet.IPv6|packet.ICMP) || p.Proto != uint8(header.ICMPv6ProtocolNumber) {
		t.Fatalf("not an ICMPv6 frame: %x", f)
	}
	ip := header.IPv6(p.IP(f))
	m := header.ICMPv6(p.L4(f))
	if len(m) != ndLen {
		t.Fatalf("ND message of %d bytes, want %d", len(m), ndLen)
	}
	var s sentND
	copy(s.ethDst[:], header.Ethernet(f).DestinationAddress())
	s.src, s.dst = netip.AddrFrom16(ip.SourceAddress().As16()), netip.AddrFrom16(ip.DestinationAddress().As16())
	s.hop, s.typ, s.flags = ip.HopLimit(), m.Type(), m[4]
	s.target = netip.AddrFrom16([16]byte(m[8:24]))
	s.sumOK = checksum.Checksum(m, header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber,
		ip.SourceAddress(), ip.DestinationAddress(), uint16(len(m)))) == 0xffff
	kind := byte(1)
	if s.typ == header.ICMPv6NeighborAdvert {
		kind = 2
	}
	o := m[24:]
	s.optsOK = o[0] == kind && o[1] == 1 && m[1] == 0 && m[5] == 0 && m[6] == 0 && m[7] == 0
	copy(s.lla[:], o[2:8])
	return s
}

// The engine resolves the server with a Neighbor Solicitation to its
// solicited-node group, retried like the ARP request, and learns its MAC
// address from the advertisement.
func TestEngineResolvesServerND(t *testing.T) {
	e, tx := ndEngine()
	e.Poll(0)
	if len(tx.out) != 1 {
		t.Fatalf("want one solicitation, got %d frames", len(tx.out))
	}
	got := readND(t, tx.out[0])
	want := sentND{ethDst: [6]byte{0x33, 0x33, 0xff, 0, 0, 3}, lla: testMAC, src: testSrc6,
		dst: netip.MustParseAddr("ff02::1:ff00:3"), target: testSrv6, hop: 255,
		typ: header.ICMPv6NeighborSolicit, sumOK: true, optsOK: true}
	if got != want {
		t.Errorf("solicitation (-want +got):\n-%+v\n+%+v", want, got)
	}
	tx.out = tx.out[:0]
	e.Poll(100e6)
	if len(tx.out) != 0 {
		t.Errorf("a solicitation 100 ms after the first: want none before 200 ms, got %d frames", len(tx.out))
	}
	e.Poll(200e6)
	if len(tx.out) != 1 || readND(t, tx.out[0]) != want {
		t.Fatalf("want the solicitation again after 200 ms, got %d frames", len(tx.out))
	}
	tx.out = tx.out[:0]

	e.Input(ndMsg{typ: header.ICMPv6NeighborAdvert, src: testSrv6, dst: testSrc6, target: testSrv6,
		naFlags: naSolicited | naOverride, opts: llOpt(2, srvMAC)}.frame(), 250e6)
	if !e.haveMAC || e.srvMAC != srvMAC || len(tx.out) != 0 {
		t.Fatalf("after the advertisement: MAC known %v, %x, %d frames sent; want %x and none",
			e.haveMAC, e.srvMAC, len(tx.out), srvMAC)
	}
	e.Poll(300e6)
	if len(tx.out) != e.cfg.Conns {
		t.Fatalf("want %d SYNs once the server is resolved, got %d frames", e.cfg.Conns, len(tx.out))
	}
	for _, f := range tx.out {
		var p packet.Parsed
		packet.Parse(f, &p)
		if !p.Has(packet.IPv6|packet.TCP) || p.TCPFlags != header.TCPFlagSyn ||
			[6]byte([]byte(header.Ethernet(f).DestinationAddress())) != srvMAC {
			t.Errorf("want an IPv6 SYN to %x, got %x", srvMAC, f)
		}
	}
	if c := e.Counts; c.RxBadND+c.RxStray != 0 {
		t.Errorf("nothing bad or stray was sent, got %+v", c)
	}
}

// The engine answers solicitations for each of its addresses, and learns
// the server's MAC address from one the server sends.
func TestEngineAnswersNS(t *testing.T) {
	na := func(ethDst [6]byte, from, to netip.Addr, flags uint8) sentND {
		return sentND{ethDst: ethDst, lla: testMAC, src: from, dst: to, target: from, hop: 255,
			typ: header.ICMPv6NeighborAdvert, flags: flags, sumOK: true, optsOK: true}
	}
	tests := []struct {
		name  string
		ns    ndMsg
		want  sentND
		learn bool
	}{
		{"from the server to the solicited-node group",
			ndMsg{src: testSrv6, dst: snm(testSrc6), target: testSrc6, opts: llOpt(1, srvMAC)},
			na(srvMAC, testSrc6, testSrv6, naSolicited|naOverride), true},
		{"from another host, for the second address",
			ndMsg{src: otherHost, dst: snm(testSrc6b), target: testSrc6b, ethSrc: otherMAC, opts: llOpt(1, otherMAC)},
			na(otherMAC, testSrc6b, otherHost, naSolicited|naOverride), false},
		{"unicast, without a link-layer address: to the frame's source",
			ndMsg{src: testSrv6, dst: testSrc6, target: testSrc6},
			na(srvMAC, testSrc6, testSrv6, naSolicited|naOverride), false},
		{"unicast probe with the server's link-layer address",
			ndMsg{src: testSrv6, dst: testSrc6b, target: testSrc6b, opts: llOpt(1, srvMAC)},
			na(srvMAC, testSrc6b, testSrv6, naSolicited|naOverride), true},
		{"duplicate address detection: to all nodes, unsolicited",
			ndMsg{src: netip.IPv6Unspecified(), dst: snm(testSrc6), target: testSrc6, ethSrc: otherMAC},
			na([6]byte{0x33, 0x33, 0, 0, 0, 1}, testSrc6, allNodes, naOverride), false},
		{"with an unknown option before the address",
			ndMsg{src: testSrv6, dst: snm(testSrc6), target: testSrc6,
				opts: append([]byte{200, 1, 0, 0, 0, 0, 0, 0}, llOpt(1, srvMAC)...)},
			na(srvMAC, testSrc6, testSrv6, naSolicited|naOverride), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, tx := ndEngine()
			tt.ns.typ = header.ICMPv6NeighborSolicit
			e.Input(tt.ns.frame(), 0)
			if len(tx.out) != 1 {
				t.Fatalf("want one advertisement, got %d frames (%+v)", len(tx.out), e.Counts)
			}
			if got := readND(t, tx.out[0]); got != tt.want {
				t.Errorf("advertisement (-want +got):\n-%+v\n+%+v", tt.want, got)
			}
			if e.haveMAC != tt.learn || tt.learn && e.srvMAC != srvMAC {
				t.Errorf("server's MAC learnt: %v (%x), want %v", e.haveMAC, e.srvMAC, tt.learn)
			}
			if c := e.Counts; c.RxBadND+c.RxStray != 0 {
				t.Errorf("want nothing counted bad or stray, got %+v", c)
			}
		})
	}
}

// Neighbor Discovery that fails RFC 4861's checks is counted and dropped:
// no answer, nothing learnt. Valid messages that are not for the engine
// are stray, and ignored as well.
func TestEngineDropsBadND(t *testing.T) {
	ns := ndMsg{typ: header.ICMPv6NeighborSolicit, src: testSrv6, dst: snm(testSrc6), target: testSrc6,
		opts: llOpt(1, srvMAC)}
	na := ndMsg{typ: header.ICMPv6NeighborAdvert, src: testSrv6, dst: testSrc6, target: testSrv6,
		naFlags: naSolicited | naOverride, opts: llOpt(2, srvMAC)}
	with := func(m ndMsg, change func(*ndMsg)) []byte { change(&m); return m.frame() }
	arp := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(arp).Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(srvMAC[:]),
		DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber})
	a := header.ARP(arp[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), srvMAC[:])
	tests := []struct {
		name  string
		frame []byte
		bad   bool // counted as bad ND, else as stray
	}{
		{"NS hop limit 64", with(ns, func(m *ndMsg) { m.hop = 64 }), true},
		{"NA hop limit 254", with(na, func(m *ndMsg) { m.hop = 254 }), true},
		{"NS bad checksum", with(ns, func(m *ndMsg) { m.badSum = true }), true},
		{"NA bad checksum", with(na, func(m *ndMsg) { m.badSum = true }), true},
		{"NS code 1", with(ns, func(m *ndMsg) { m.code = 1 }), true},
		{"NS of 20 bytes", with(ns, func(m *ndMsg) { m.opts, m.cut = nil, 4 }), true},
		{"NA of 23 bytes", with(na, func(m *ndMsg) { m.opts, m.cut = nil, 1 }), true},
		{"NS for a multicast target", with(ns, func(m *ndMsg) { m.target = allNodes }), true},
		{"NA for a multicast target", with(na, func(m *ndMsg) { m.target = allNodes }), true},
		{"NS option of length 0", with(ns, func(m *ndMsg) { m.opts = []byte{1, 0, 2, 0, 0, 0, 0, 1} }), true},
		{"NS option past the end", with(ns, func(m *ndMsg) { m.opts = append([]byte{1, 2}, srvMAC[:]...) }), true},
		{"NA option cut short", with(na, func(m *ndMsg) { m.cut = 3 }), true},
		{"NS from a multicast source", with(ns, func(m *ndMsg) { m.src = allNodes }), true},
		{"DAD probe with a link-layer address", with(ns, func(m *ndMsg) { m.src = netip.IPv6Unspecified() }), true},
		{"DAD probe to a unicast address", with(ns, func(m *ndMsg) {
			m.src, m.dst, m.opts = netip.IPv6Unspecified(), testSrc6, nil
		}), true},
		{"NA to all nodes, solicited", with(na, func(m *ndMsg) { m.dst = allNodes }), true},
		{"NA with a group link-layer address", with(na, func(m *ndMsg) {
			m.opts = llOpt(2, [6]byte{0x33, 0x33, 0, 0, 0, 1})
		}), true},
		{"NS with the zero link-layer address", with(ns, func(m *ndMsg) { m.opts = llOpt(1, [6]byte{}) }), true},
		{"NS for another address", with(ns, func(m *ndMsg) { m.target, m.dst = otherHost, snm(otherHost) }), false},
		{"NS to another group", with(ns, func(m *ndMsg) { m.dst = snm(otherHost) }), false},
		{"NA for another address", with(na, func(m *ndMsg) { m.target = otherHost }), false},
		{"NA claiming our address", with(na, func(m *ndMsg) { m.target = testSrc6 }), false},
		{"ARP on an IPv6 run", arp, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, tx := ndEngine()
			e.Input(tt.frame, 0)
			want := Counts{RxFrames: 1, RxStray: 1}
			if tt.bad {
				want = Counts{RxFrames: 1, RxBadND: 1}
			}
			if len(tx.out) != 0 || e.haveMAC || e.Counts != want {
				t.Errorf("sent %d frames, server's MAC learnt %v, counts %+v; want none, no, %+v",
					len(tx.out), e.haveMAC, e.Counts, want)
			}
		})
	}

	// An IPv4 run takes no ND.
	e, tx := testEngine(false)
	e.Input(ns.frame(), 0)
	if len(tx.out) != 0 || e.Counts.RxStray != 1 {
		t.Errorf("IPv4 run: an NS got %d frames, counts %+v; want none and one stray", len(tx.out), e.Counts)
	}
}
