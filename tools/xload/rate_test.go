package main

import (
	"testing"

	"github.com/xstack/xstack/stack/packet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// rateEngine is testEngine's engine with an open loop of rate per second.
func rateEngine(short bool, conns int, rate float64) (*Engine, *memTx) {
	return familyRateEngine(short, false, conns, rate)
}

// familyRateEngine is familyEngine's engine with an open loop.
func familyRateEngine(short, v6 bool, conns int, rate float64) (*Engine, *memTx) {
	e, tx := familyEngine(short, v6)
	e2 := NewEngine(Config{MAC: testMAC, Srcs: e.cfg.Srcs, PortLo: 1000, PortHi: 1999,
		Server: e.cfg.Server, SrvPort: 80, Conns: conns, Short: short, Request: e.cfg.Request,
		RTO: 200e6, Retries: 3, Timeout: 1e9, RcvWindow: 0xffff, MSS: 1460, Rate: rate}, tx, 1)
	e2.srvMAC, e2.haveMAC = srvMAC, true
	return e2, tx
}

// heldServer answers like fakeServer, but while hold is set it keeps the
// engine's frames and answers them when hold is cleared: a stalled server.
type heldServer struct {
	fakeServer
	hold   bool
	held   [][]byte
	copies [256][2048]byte
}

func (s *heldServer) step(e *Engine, tx *memTx, now int64) (requests int) {
	e.Poll(now)
	for _, f := range tx.out {
		var p packet.Parsed
		packet.Parse(f, &p)
		if p.TCPPayloadLen() > 0 {
			requests++
		}
		s.held = append(s.held, s.copies[len(s.held)][:copy(s.copies[len(s.held)][:], f)])
	}
	tx.out = tx.out[:0]
	if s.hold {
		return requests
	}
	batch := s.held
	s.held = s.held[len(s.held):]
	s.answer(e, batch, now)
	if len(s.held) == 0 {
		s.held = s.held[:0:0]
	}
	return requests
}

// Requests leave on the schedule, one per interval, on idle connections,
// and a server that keeps up sees none late or unsent.
func TestEngineOpenLoopKeepsTheSchedule(t *testing.T) {
	e, tx := rateEngine(false, 4, 1000) // one request per ms
	s := &heldServer{fakeServer: fakeServer{iss: 5000}}
	perMs := map[int64]int{}
	for now := int64(0); now < 100e6; now += 100e3 {
		perMs[now/1e6] += s.step(e, tx, now)
	}
	e.Stop()
	for ms, n := range perMs {
		if n > 1 {
			t.Errorf("%d requests in ms %d, want at most 1", n, ms)
		}
	}
	c := e.Counts
	if c.OK < 95 || c.Errors() != 0 || c.Late != 0 || c.Unsent != 0 || c.Scheduled != c.OK {
		t.Errorf("want ~100 ok, all scheduled sent on time, got %+v", c)
	}
	// Each answer came in the pass after the request was due, within
	// one pass (100 µs) of its scheduled time.
	if p := e.Hist.Quantile(1); p > 110e3 {
		t.Errorf("max latency %d ns, want within one pass of the schedule", p)
	}
}

// A stall of the server shows in the latency of every request scheduled
// behind it, not only the one it held (coordinated omission).
func TestEngineOpenLoopCountsTheStall(t *testing.T) {
	e, tx := rateEngine(false, 1, 1000)
	s := &heldServer{fakeServer: fakeServer{iss: 5000}}
	now := int64(0)
	for ; now < 20e6; now += 100e3 {
		s.step(e, tx, now)
	}
	s.hold = true
	for ; now < 70e6; now += 100e3 { // 50 ms without an answer
		s.step(e, tx, now)
	}
	s.hold = false
	for ; now < 200e6; now += 100e3 {
		s.step(e, tx, now)
	}
	e.Stop()
	c := e.Counts
	if c.Errors() != 0 || c.Unsent != 0 || c.OK != c.Scheduled {
		t.Fatalf("want every scheduled request answered once the stall ends, got %+v", c)
	}
	// About 50 requests were due during the stall, and waited for the one
	// connection: the longest waited the whole stall, and a closed loop
	// would have recorded that for one request only.
	if c.Late < 40 {
		t.Errorf("want ~50 requests late behind the stall, got %d", c.Late)
	}
	if p99, p75 := e.Hist.Quantile(0.99), e.Hist.Quantile(0.75); p99 < 40e6 || p75 < 1e6 {
		t.Errorf("want p99 ≥ 40 ms and p75 ≥ 1 ms from the stall, got p99 %d ns, p75 %d ns", p99, p75)
	}
}

// Requests that never found a connection before the stop are counted.
func TestEngineOpenLoopCountsUnsent(t *testing.T) {
	e, tx := rateEngine(false, 1, 1000)
	s := &heldServer{fakeServer: fakeServer{iss: 5000}}
	now := int64(0)
	s.step(e, tx, now) // the SYN
	now += 100e3
	s.step(e, tx, now) // the schedule starts: request 0 is answered
	s.hold = true      // request 1 is sent and held; the rest find no connection
	start := now
	for ; now < start+50e6; now += 100e3 {
		s.step(e, tx, now)
	}
	e.Stop()
	c := e.Counts
	if c.Scheduled < 49 || c.Scheduled > 51 || c.Unsent != c.Scheduled-2 {
		t.Errorf("want ~50 scheduled and all but the first two never sent, got %+v", c)
	}
}

// With -short, connections open on the schedule; at most Conns are open.
func TestEngineOpenLoopShort(t *testing.T) {
	e, tx := rateEngine(true, 8, 2000) // one connection per 500 µs
	s := &heldServer{fakeServer: fakeServer{iss: 5000}}
	syns := 0
	for now := int64(0); now < 50e6; now += 100e3 {
		e.Poll(now)
		for _, f := range tx.out {
			var p packet.Parsed
			packet.Parse(f, &p)
			if p.TCPFlags&header.TCPFlagSyn != 0 {
				syns++
			}
		}
		batch := make([][]byte, len(tx.out))
		for i, f := range tx.out {
			batch[i] = s.copies[i][:copy(s.copies[i][:], f)]
		}
		tx.out = tx.out[:0]
		s.answer(e, batch, now)
	}
	e.Stop()
	c := e.Counts
	if syns < 99 || syns > 101 || c.Errors() != 0 || c.Late != 0 || c.OK < 98 {
		t.Errorf("want ~100 connections in 50 ms, all ok and none late; got %d SYNs, %+v", syns, c)
	}
}

// An idle connection holds the ACK of a response for the next request to
// carry, and sends it alone only when none comes within delAck.
func TestEngineOpenLoopDelaysTheAck(t *testing.T) {
	for _, rate := range []float64{100, 10} { // a request every 10 ms, 100 ms
		e, tx := rateEngine(false, 1, rate)
		s := &heldServer{fakeServer: fakeServer{iss: 5000}}
		var pureAcks, requests int
		for now := int64(0); now < 300e6; now += 100e3 {
			e.Poll(now)
			for _, f := range tx.out {
				var p packet.Parsed
				packet.Parse(f, &p)
				switch {
				case p.TCPPayloadLen() > 0:
					requests++
				case p.TCPFlags == header.TCPFlagAck:
					pureAcks++
				}
			}
			batch := make([][]byte, len(tx.out))
			for i, f := range tx.out {
				batch[i] = s.copies[i][:copy(s.copies[i][:], f)]
			}
			tx.out = tx.out[:0]
			s.answer(e, batch, now)
		}
		// The handshake's ACK leaves at once; each response's rides on
		// the next request, unless that is more than delAck away.
		want := 1
		if 1e9/rate > delAck {
			want += requests
		}
		if requests < 3 || pureAcks != want || e.Counts.Errors() != 0 {
			t.Errorf("rate %v: %d requests, %d pure ACKs, want %d; %+v", rate, requests, pureAcks, want, e.Counts)
		}
	}
}
