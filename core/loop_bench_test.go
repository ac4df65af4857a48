package core_test

import (
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/core"
	"github.com/xstack/xstack/posix"
	"github.com/xstack/xstack/stack"
	"github.com/xstack/xstack/stack/stacktest"
)

// rrRig is two lcores (server and client) over an in-memory NIC, both
// driven from the calling goroutine: a deterministic measure of what one
// request/response costs in the loop, the stack and posix, without the
// kernel and the rig in the way.
type rrRig struct {
	srvLoop, cliLoop *core.Loop
	srv, cli         *posix.Sockets
	lfd, sfd, cfd    int
	buf              []byte
	req, resp        []byte
}

func newRRRig(tb testing.TB) *rrRig {
	p := stacktest.NewPairWith(tb, stacktest.Options{
		A:      stack.Config{Name: "bench", Addr4: netip.MustParsePrefix("198.18.0.1/16")},
		B:      stack.Config{Name: "bench", Addr4: netip.MustParsePrefix("198.18.0.2/16")},
		Manual: true, // the lcore loops below drive the stacks
	})
	// stacktest gives each stack a LoopClock, as an lcore's has: the
	// loops fire its timers.
	sl := core.NewLoop(p.QA, p.A, core.LoopConfig{BusyPoll: true})
	cl := core.NewLoop(p.QB, p.B, core.LoopConfig{BusyPoll: true})
	ss, cs := posix.NewSockets(p.A), posix.NewSockets(p.B)
	tb.Cleanup(func() {
		ss.Close()
		cs.Close()
	})
	r := &rrRig{srvLoop: sl, cliLoop: cl, srv: ss, cli: cs, buf: make([]byte, 4096),
		req: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), resp: make([]byte, 200)}
	var err error
	if r.lfd, err = ss.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0); err != nil {
		tb.Fatal(err)
	}
	if err := ss.Bind(r.lfd, &unix.SockaddrInet4{Port: 80}); err != nil {
		tb.Fatal(err)
	}
	if err := ss.Listen(r.lfd, 16); err != nil {
		tb.Fatal(err)
	}
	if r.cfd, err = cs.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0); err != nil {
		tb.Fatal(err)
	}
	if err := cs.Connect(r.cfd, &unix.SockaddrInet4{Addr: [4]byte{198, 18, 0, 1}, Port: 80}); !errors.Is(err, unix.EINPROGRESS) {
		tb.Fatal(err)
	}
	r.sfd = -1
	for i := 0; i < 10000 && r.sfd < 0; i++ {
		r.pass(tb)
		if fd, _, err := ss.Accept4(r.lfd, unix.SOCK_NONBLOCK); err == nil {
			r.sfd = fd
		}
	}
	if r.sfd < 0 {
		tb.Fatal("no connection accepted")
	}
	return r
}

func (r *rrRig) pass(tb testing.TB) {
	if _, err := r.srvLoop.Pass(nil); err != nil {
		tb.Fatal(err)
	}
	if _, err := r.cliLoop.Pass(nil); err != nil {
		tb.Fatal(err)
	}
}

// roundTrip sends one request and waits for one 200-byte response.
func (r *rrRig) roundTrip(tb testing.TB) {
	if _, err := r.cli.Write(r.cfd, r.req); err != nil {
		tb.Fatal(err)
	}
	for got := 0; got == 0; {
		r.pass(tb)
		if n, err := r.srv.Read(r.sfd, r.buf); err == nil && n > 0 {
			if _, err := r.srv.Write(r.sfd, r.resp); err != nil {
				tb.Fatal(err)
			}
			got = n
		}
	}
	for got := 0; got < len(r.resp); {
		r.pass(tb)
		if n, err := r.cli.Read(r.cfd, r.buf); err == nil {
			got += n
		}
	}
}

// BenchmarkRequestResponse measures one HTTP-sized request and response
// over a kept-alive connection between two in-memory lcores. Run it with
// -cpu 1, as an lcore runs.
func BenchmarkRequestResponse(b *testing.B) {
	r := newRRRig(b)
	for i := 0; i < 100; i++ {
		r.roundTrip(b)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r.roundTrip(b)
	}
}
