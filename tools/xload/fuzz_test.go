package main

import (
	"testing"

	"github.com/xstack/xstack/stack/packet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// FuzzEngineInput feeds any frame to three engines: an IPv6 one still
// resolving the server, and an IPv4 and an IPv6 one with connections
// open. None panics; a frame counted as bad ND changes nothing and gets no
// answer; and whatever an engine sends in answer is a well-formed frame of
// its own family, with good checksums, from one of its addresses.
func FuzzEngineInput(f *testing.F) {
	ns := ndMsg{typ: header.ICMPv6NeighborSolicit, src: testSrv6, dst: snm(testSrc6), target: testSrc6,
		opts: llOpt(1, srvMAC)}
	f.Add(ns.frame())
	f.Add(ndMsg{typ: header.ICMPv6NeighborAdvert, src: testSrv6, dst: testSrc6, target: testSrv6,
		naFlags: naSolicited | naOverride, opts: llOpt(2, srvMAC)}.frame())
	for _, v6 := range []bool{false, true} {
		s := &fakeServer{iss: 5000, v6: v6}
		f.Add(append([]byte(nil), s.frame(1000, 5000, 2, header.TCPFlagSyn|header.TCPFlagAck, nil)...))
		f.Add(append([]byte(nil), s.frame(1001, 5001, 30, header.TCPFlagAck|header.TCPFlagPsh, response)...))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		unresolved, tx0 := ndEngine()
		e4, tx4 := familyEngine(false, false)
		e6, tx6 := familyEngine(false, true)
		for _, c := range []struct {
			e  *Engine
			tx *memTx
		}{{unresolved, tx0}, {e4, tx4}, {e6, tx6}} {
			c.e.Poll(0)
			c.tx.out = c.tx.out[:0]
			before, mac, have := c.e.Counts, c.e.srvMAC, c.e.haveMAC
			c.e.Input(append([]byte(nil), frame...), 1000)
			if c.e.Counts.RxBadND != before.RxBadND &&
				(len(c.tx.out) != 0 || c.e.srvMAC != mac || c.e.haveMAC != have) {
				t.Fatalf("bad ND changed the engine: %d frames sent, server's MAC %x (was %x)",
					len(c.tx.out), c.e.srvMAC, mac)
			}
			for _, out := range c.tx.out {
				checkSent(t, c.e, out)
			}
		}
	})
}

// checkSent checks that a frame e sent is ARP, or IPv4 or IPv6 as e's
// family is, from one of e's addresses, with good checksums.
func checkSent(t *testing.T, e *Engine, f []byte) {
	t.Helper()
	var p packet.Parsed
	packet.Parse(f, &p)
	if !e.v6 && p.Has(packet.ARP) {
		return
	}
	fam := packet.IPv4
	if e.v6 {
		fam = packet.IPv6
	}
	if !p.Has(fam) {
		t.Fatalf("sent a frame not of the run's family: %x", f)
	}
	src, dst := p.Addrs(f)
	if e.srcIndex(addrOf(src)) < 0 {
		t.Fatalf("sent a frame from %x, not one of the sources", src)
	}
	l4 := p.L4(f)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, addrOf(src), addrOf(dst), uint16(len(l4)))
	switch {
	case p.Has(packet.TCP):
	case e.v6 && p.Has(packet.ICMP) && p.ICMPType == uint8(header.ICMPv6NeighborAdvert):
		xsum = header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, addrOf(src), addrOf(dst), uint16(len(l4)))
	default:
		t.Fatalf("sent neither TCP nor a neighbor advertisement: %x", f)
	}
	if checksum.Checksum(l4, xsum) != 0xffff {
		t.Fatalf("sent a frame with a bad checksum: %x", f)
	}
}
