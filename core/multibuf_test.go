package core

import (
	"bytes"
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/xstack/xstack/nic/nictest"
	"github.com/xstack/xstack/stack"
	"github.com/xstack/xstack/stack/stacktest"
)

// TestLoopMultiBuffer moves a TCP stream each way between two lcore loops
// over an in-memory link of MTU 9000 whose queues emulate AF_XDP
// multi-buffer (a 9014-byte frame in 6 buffers, as veth hands it over):
// the loops must read the queues with RxPackets, the streams arrive
// intact, and the frames on the link are jumbo frames. With a hand-off
// on the server's loop, as with several lcores, the loop joins each frame
// of several buffers before steering.
func TestLoopMultiBuffer(t *testing.T) {
	for _, handoff := range []bool{false, true} {
		t.Run(fmt.Sprintf("handoff=%v", handoff), func(t *testing.T) { testLoopMultiBuffer(t, handoff) })
	}
}

func testLoopMultiBuffer(t *testing.T, handoff bool) {
	const size = 4 << 20
	p := stacktest.NewPairWith(t, stacktest.Options{
		A:       stack.Config{Name: "srv", Addr4: netip.MustParsePrefix("198.18.0.1/16")},
		B:       stack.Config{Name: "cli", Addr4: netip.MustParsePrefix("198.18.0.2/16")},
		Manual:  true,
		LinkMTU: 9000, MultiBuffer: 2048 - 256,
	})
	cfg := LoopConfig{BusyPoll: true}
	if handoff {
		h := newHandoff(0, 2, newLcoreSteer(2, 0), DefaultBurst)
		t.Cleanup(h.Close)
		cfg.Handoff = h
	}
	sl := NewLoop(p.QA, p.A, cfg)
	cl := NewLoop(p.QB, p.B, LoopConfig{BusyPoll: true})
	if sl.mq == nil || cl.mq == nil {
		t.Fatal("the loops did not take the queues for multi-buffer ones")
	}
	pass := func() {
		t.Helper()
		for _, l := range []*Loop{sl, cl} {
			if _, err := l.Pass(nil); err != nil {
				t.Fatalf("pass: %v", err)
			}
		}
	}

	var lwq, cwq waiter.Queue
	ln, terr := p.A.NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, &lwq)
	if terr != nil {
		t.Fatal(terr)
	}
	t.Cleanup(ln.Close)
	if err := ln.Bind(tcpip.FullAddress{Port: 80}); err != nil {
		t.Fatal(err)
	}
	if err := ln.Listen(8); err != nil {
		t.Fatal(err)
	}
	cli, terr := p.B.NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, &cwq)
	if terr != nil {
		t.Fatal(terr)
	}
	t.Cleanup(cli.Close)
	if err := cli.Connect(tcpip.FullAddress{Addr: tcpip.AddrFrom4([4]byte{198, 18, 0, 1}), Port: 80}); err != nil {
		if _, ok := err.(*tcpip.ErrConnectStarted); !ok {
			t.Fatal(err)
		}
	}
	var srv tcpip.Endpoint
	for i := 0; i < 10000 && srv == nil; i++ {
		pass()
		srv, _, _ = ln.Accept(nil)
	}
	if srv == nil {
		t.Fatal("no connection accepted")
	}
	t.Cleanup(srv.Close)

	up, down := stream(1, size), stream(2, size)
	var gotUp, gotDown bytes.Buffer
	upR, downR := bytes.NewReader(up), bytes.NewReader(down)
	for i := 0; gotUp.Len() < size || gotDown.Len() < size; i++ {
		if i == 1_000_000 {
			t.Fatalf("after %d passes: %d of %d bytes up, %d down", i, gotUp.Len(), size, gotDown.Len())
		}
		write(t, cli, upR)
		write(t, srv, downR)
		pass()
		runtime.Gosched()
		read(t, srv, &gotUp)
		read(t, cli, &gotDown)
	}
	if !bytes.Equal(gotUp.Bytes(), up) || !bytes.Equal(gotDown.Bytes(), down) {
		t.Fatal("a stream arrived changed")
	}
	for name, s := range map[string]stack.LinkStats{"server": p.A.LinkStats(), "client": p.B.LinkStats()} {
		if s.TxDropped != 0 || s.RxMalformed != 0 || s.RxBadChecksum != 0 {
			t.Errorf("%s's link stats %+v", name, s)
		}
	}
	qs := p.QA.Stats()
	if avg := qs.TxBytes / qs.TxFrames; avg < 4000 {
		t.Errorf("the server's frames were %d bytes on average: not jumbo frames", avg)
	}
	if handoff {
		if hs := cfg.Handoff.Stats(); hs.Local == 0 || hs.Dropped != 0 {
			t.Errorf("hand-off stats %+v", hs)
		}
	}
}

// stream is n pseudo-random bytes from seed.
func stream(seed byte, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed)
	for i := range b {
		x = x*1664525 + 1013904223
		b[i] = byte(x >> 24)
	}
	return b
}

// write writes what ep takes of r, without blocking.
func write(t *testing.T, ep tcpip.Endpoint, r *bytes.Reader) {
	t.Helper()
	if r.Len() == 0 {
		return
	}
	if _, err := ep.Write(r, tcpip.WriteOptions{}); err != nil {
		if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
			t.Fatalf("write: %v", err)
		}
	}
}

// read appends to b what ep holds, without blocking.
func read(t *testing.T, ep tcpip.Endpoint, b *bytes.Buffer) {
	t.Helper()
	if _, err := ep.Read(b, tcpip.ReadOptions{}); err != nil {
		if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
			t.Fatalf("read: %v", err)
		}
	}
}

// TestLoopMultiBufferOversize hands a loop with a hand-off a frame of
// several buffers longer than its stack's MTU allows: it is counted as
// malformed and dropped, as the stack counts it without a hand-off.
func TestLoopMultiBufferOversize(t *testing.T) {
	q := nictest.New(9000)
	if err := q.SetMultiBuffer(2048-256, 18); err != nil {
		t.Fatal(err)
	}
	st, q := stacktest.NewStackOn(t, q, stack.Config{Name: "t0", MTU: 4000, Addr4: netip.MustParsePrefix("198.18.0.1/16")})
	h := newHandoff(0, 2, newLcoreSteer(2, 0), DefaultBurst)
	t.Cleanup(h.Close)
	l := NewLoop(q, st, LoopConfig{BusyPoll: true, Handoff: h})
	f := make([]byte, 9014)
	header.Ethernet(f).Encode(&header.EthernetFields{DstAddr: tcpip.LinkAddress(st.HardwareAddr()), Type: header.IPv4ProtocolNumber})
	if !q.Inject(f) {
		t.Fatal("inject")
	}
	if _, err := l.Pass(nil); err != nil {
		t.Fatal(err)
	}
	if s := st.LinkStats(); s.RxMalformed != 1 || s.RxFrames != 0 {
		t.Errorf("link stats %+v, want rx_malformed 1 and nothing delivered", s)
	}
}
