package main

import (
	"net/netip"
	"testing"

	"github.com/xstack/xstack/stack/packet"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// memTx keeps the frames the engine sends in fixed buffers.
type memTx struct {
	bufs [64][2048]byte
	out  [][]byte
}

func (m *memTx) Buf() []byte {
	if len(m.out) == len(m.bufs) {
		return nil
	}
	return m.bufs[len(m.out)][:]
}

func (m *memTx) Send(f []byte) { m.out = append(m.out, f) }

var (
	testSrv  = netip.MustParseAddr("198.18.0.3")
	testSrc  = netip.MustParseAddr("198.18.1.1")
	testSrv6 = netip.MustParseAddr("2001:2::3")
	testSrc6 = netip.MustParseAddr("2001:2::100")
	testMAC  = [6]byte{2, 0, 0, 0, 0, 1}
	srvMAC   = [6]byte{2, 0, 0, 0, 0, 2}
	response = []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
)

// fakeServer answers the engine's segments as a kernel server would, in
// frames built into one reused buffer: from testSrv to testSrc, or with
// v6 from testSrv6 to testSrc6.
type fakeServer struct {
	buf [2048]byte
	iss uint32
	v6  bool
	bad int // frames sent to it not of its family, to it or with a good checksum
}

func (s *fakeServer) frame(dport uint16, seq, ack uint32, flags header.TCPFlags, data []byte) []byte {
	ipLen, typ := header.IPv4MinimumSize, header.IPv4ProtocolNumber
	src, dst := tcpip.AddrFrom4(testSrv.As4()), tcpip.AddrFrom4(testSrc.As4())
	if s.v6 {
		ipLen, typ = header.IPv6MinimumSize, header.IPv6ProtocolNumber
		src, dst = tcpip.AddrFrom16(testSrv6.As16()), tcpip.AddrFrom16(testSrc6.As16())
	}
	n := header.EthernetMinimumSize + ipLen + header.TCPMinimumSize + len(data)
	b := s.buf[:n]
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: tcpip.LinkAddress(srvMAC[:]),
		DstAddr: tcpip.LinkAddress(testMAC[:]), Type: typ})
	ip := b[header.EthernetMinimumSize:]
	if s.v6 {
		header.IPv6(ip).Encode(&header.IPv6Fields{PayloadLength: uint16(n - header.EthernetMinimumSize - ipLen),
			TransportProtocol: header.TCPProtocolNumber, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	} else {
		ip4 := header.IPv4(ip)
		ip4.Encode(&header.IPv4Fields{TotalLength: uint16(n - header.EthernetMinimumSize), TTL: 64,
			Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
		ip4.SetChecksum(^ip4.CalculateChecksum())
	}
	t := header.TCP(ip[ipLen:])
	t.Encode(&header.TCPFields{SrcPort: 80, DstPort: dport, SeqNum: seq, AckNum: ack,
		DataOffset: header.TCPMinimumSize, Flags: flags, WindowSize: 0xffff})
	copy(t[header.TCPMinimumSize:], data)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(t)))
	xsum = checksum.Combine(xsum, checksum.Checksum(data, 0))
	t.SetChecksum(^t.CalculateChecksum(xsum))
	return b
}

// answer feeds the engine the server's reply to each frame it sent.
func (s *fakeServer) answer(e *Engine, sent [][]byte, now int64) {
	for _, f := range sent {
		var p packet.Parsed
		packet.Parse(f, &p)
		if !p.Has(packet.TCP) {
			continue
		}
		if !s.mine(f, &p) {
			s.bad++
			continue
		}
		n := uint32(p.TCPPayloadLen())
		switch {
		case p.TCPFlags&header.TCPFlagSyn != 0:
			e.Input(s.frame(p.SrcPort, s.iss, p.Seq+1, header.TCPFlagSyn|header.TCPFlagAck, nil), now)
		case n > 0:
			e.Input(s.frame(p.SrcPort, p.Ack, p.Seq+n, header.TCPFlagAck|header.TCPFlagPsh, response), now)
		case p.TCPFlags&header.TCPFlagFin != 0:
			e.Input(s.frame(p.SrcPort, p.Ack, p.Seq+1, header.TCPFlagFin|header.TCPFlagAck, nil), now)
		}
	}
}

// mine reports whether a TCP segment is of s's family, from the client's
// address to the server's, with a good checksum.
func (s *fakeServer) mine(f []byte, p *packet.Parsed) bool {
	fam, cli, srv := packet.IPv4, testSrc, testSrv
	if s.v6 {
		fam, cli, srv = packet.IPv6, testSrc6, testSrv6
	}
	src, dst := p.Addrs(f)
	if a, _ := netip.AddrFromSlice(src); !p.Has(fam) || a != cli {
		return false
	}
	if a, _ := netip.AddrFromSlice(dst); a != srv {
		return false
	}
	l4 := p.L4(f)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber,
		addrOf(src), addrOf(dst), uint16(len(l4)))
	return checksum.Checksum(l4, xsum) == 0xffff
}

func testEngine(short bool) (*Engine, *memTx) { return familyEngine(short, false) }

// familyEngine is an engine of one source address, testSrc or with v6
// testSrc6, whose server's MAC address is known.
func familyEngine(short, v6 bool) (*Engine, *memTx) {
	tx := &memTx{}
	req := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	src, srv := testSrc, testSrv
	if v6 {
		src, srv = testSrc6, testSrv6
	}
	e := NewEngine(Config{MAC: testMAC, Srcs: []netip.Addr{src}, PortLo: 1000, PortHi: 1999,
		Server: srv, SrvPort: 80, Conns: 4, Short: short, Request: req, RTO: 200e6,
		Retries: 3, Timeout: 1e9, RcvWindow: 0xffff, MSS: 1460}, tx, 1)
	e.srvMAC, e.haveMAC = srvMAC, true
	return e, tx
}

// families names the two address families for subtests.
var families = []struct {
	name string
	v6   bool
}{{"ipv4", false}, {"ipv6", true}}

// step runs one pass: the engine's output is answered by the server.
func step(e *Engine, tx *memTx, s *fakeServer, now int64) {
	e.Poll(now)
	sent := tx.out
	tx.out = tx.out[:0]
	// The answers may make the engine send into the same buffers: keep
	// what it sends now for the next step.
	var batch [64][]byte
	k := copy(batch[:], sent)
	var copies [64][2048]byte
	for i := 0; i < k; i++ {
		batch[i] = copies[i][:copy(copies[i][:], batch[i])]
	}
	s.answer(e, batch[:k], now)
}

func TestEngineModes(t *testing.T) {
	for _, f := range families {
		for _, short := range []bool{false, true} {
			e, tx := familyEngine(short, f.v6)
			s := &fakeServer{iss: 5000, v6: f.v6}
			for i := 0; i < 100; i++ {
				step(e, tx, s, int64(i)*1000)
			}
			c := e.Counts
			if c.OK == 0 || c.Errors() != 0 || c.Retransmits != 0 || c.RxStray+c.RxBadChecksum != 0 {
				t.Errorf("%s short=%v: want only ok responses, no retransmits, no stray frames, got %+v", f.name, short, c)
			}
			if short && c.ConnsDone == 0 {
				t.Errorf("%s short: no connection closed cleanly: %+v", f.name, c)
			}
			if s.bad != 0 {
				t.Errorf("%s short=%v: the server got %d frames not of its family, addresses or with a bad checksum", f.name, short, s.bad)
			}
		}
	}
}

func TestEngineRetransmitsAndTimesOut(t *testing.T) {
	e, tx := testEngine(false)
	e.cfg.Conns = 1
	// No server: the SYN is sent, retransmitted with backoff, then given up.
	var syns int
	for now := int64(0); now < 10e9; now += 10e6 {
		e.Poll(now)
		syns += len(tx.out)
		tx.out = tx.out[:0]
		if e.Counts.Timeout > 0 {
			break
		}
	}
	if e.Counts.Timeout != 1 || e.Counts.Retransmits != 3 {
		t.Errorf("want 1 timeout after 3 retransmissions, got %+v", e.Counts)
	}
}

// The state machine allocates nothing per connection or request, in a
// closed loop and in an open one.
func TestEngineAllocs(t *testing.T) {
	for _, rate := range []float64{0, 1e6} {
		for _, f := range families {
			for _, short := range []bool{false, true} {
				e, tx := familyEngine(short, f.v6)
				if rate > 0 {
					e, tx = familyRateEngine(short, f.v6, 4, rate)
				}
				s := &fakeServer{iss: 5000, v6: f.v6}
				now := int64(0)
				for i := 0; i < 10; i++ {
					now += 1000
					step(e, tx, s, now)
				}
				before := e.Counts.OK
				allocs := testing.AllocsPerRun(200, func() {
					now += 1000
					step(e, tx, s, now)
				})
				if allocs != 0 || e.Counts.OK == before || s.bad != 0 {
					t.Errorf("%s short=%v rate=%v: %v allocations per pass, %d responses, %d bad frames; want 0, some and 0",
						f.name, short, rate, allocs, e.Counts.OK-before, s.bad)
				}
			}
		}
	}
}

func BenchmarkEngineShort(b *testing.B) {
	e, tx := testEngine(true)
	s := &fakeServer{iss: 5000}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		step(e, tx, s, int64(i)*1000)
	}
	b.ReportMetric(float64(e.Counts.OK)/float64(b.N), "conns/op")
}

// A SYN that a server's TIME-WAIT answers with an ACK of its old sequence
// space gets a reset at that ACK's number, and the SYN is retransmitted.
func TestEngineSynSentBadAck(t *testing.T) {
	e, tx := testEngine(false)
	e.cfg.Conns = 1
	s := &fakeServer{}
	e.Poll(0)
	if len(tx.out) != 1 {
		t.Fatalf("want one SYN, got %d frames", len(tx.out))
	}
	var syn packet.Parsed
	packet.Parse(tx.out[0], &syn)
	tx.out = tx.out[:0]
	e.Input(s.frame(syn.SrcPort, 7000, 12345, header.TCPFlagAck, nil), 1000)
	if len(tx.out) != 1 {
		t.Fatalf("want one reset, got %d frames", len(tx.out))
	}
	var rst packet.Parsed
	packet.Parse(tx.out[0], &rst)
	if rst.TCPFlags != header.TCPFlagRst || rst.Seq != 12345 || rst.DstPort != 80 || rst.SrcPort != syn.SrcPort {
		t.Errorf("want RST seq 12345 from port %d, got flags %v seq %d ports %d->%d",
			syn.SrcPort, rst.TCPFlags, rst.Seq, rst.SrcPort, rst.DstPort)
	}
	tx.out = tx.out[:0]
	e.Poll(e.cfg.RTO)
	var again packet.Parsed
	if len(tx.out) == 1 {
		packet.Parse(tx.out[0], &again)
	}
	if again.TCPFlags != header.TCPFlagSyn || again.Seq != syn.Seq || e.Counts.Errors() != 0 {
		t.Errorf("want the SYN retransmitted with seq %d and no error, got %d frames, flags %v seq %d, %+v",
			syn.Seq, len(tx.out), again.TCPFlags, again.Seq, e.Counts)
	}
}

// Connections leave from PortStart on, across the sources, and wrap.
func TestEnginePortStart(t *testing.T) {
	tx := &memTx{}
	srcs := []netip.Addr{testSrc, netip.MustParseAddr("198.18.1.2")}
	e := NewEngine(Config{MAC: testMAC, Srcs: srcs, PortLo: 1000, PortHi: 1002, PortStart: 1002,
		Server: testSrv, SrvPort: 80, Conns: 6, Request: []byte("GET / HTTP/1.1\r\n\r\n"), RTO: 200e6,
		Retries: 3, Timeout: 1e9, RcvWindow: 0xffff, MSS: 1460}, tx, 1)
	e.srvMAC, e.haveMAC = srvMAC, true
	e.Poll(0)
	want := []uint16{1002, 1002, 1000, 1000, 1001, 1001}
	if len(tx.out) != len(want) {
		t.Fatalf("want %d SYNs, got %d", len(want), len(tx.out))
	}
	for i, f := range tx.out {
		var p packet.Parsed
		packet.Parse(f, &p)
		src, _ := p.Addrs(f)
		if p.SrcPort != want[i] || netip.AddrFrom4([4]byte(src)) != srcs[i%2] {
			t.Errorf("SYN %d from %v:%d, want %v:%d", i, src, p.SrcPort, srcs[i%2], want[i])
		}
	}
}
