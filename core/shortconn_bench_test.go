package core_test

import (
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// shortConn runs one short connection the way helloworld serves wrk's
// "Connection: close": the client connects and sends a request; the
// server, in its loop callback as helloworld does, accepts, reads, answers
// and closes in the pass the request arrives; the client reads to EOF and
// closes. The server holds the TIME-WAIT, as a server that closes first
// does. With ep the server finds its work through epoll as helloworld
// does (see epollServer); without, it tries accept and read every pass.
func (r *rrRig) shortConn(tb testing.TB, ep *epollServer) {
	cfd, err := r.cli.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.cli.Connect(cfd, &unix.SockaddrInet4{Addr: [4]byte{198, 18, 0, 1}, Port: 80}); !errors.Is(err, unix.EINPROGRESS) {
		tb.Fatal(err)
	}
	sfd := -1
	answered := false
	server := func() error {
		if ep != nil {
			did, err := ep.poll(r)
			answered = answered || did
			return err
		}
		if sfd < 0 {
			if fd, _, err := r.srv.Accept4(r.lfd, unix.SOCK_NONBLOCK); err == nil {
				sfd = fd
			}
		}
		if sfd >= 0 && !answered {
			if n, err := r.srv.Read(sfd, r.buf); err == nil && n > 0 {
				if _, err := r.srv.Write(sfd, r.resp); err != nil {
					return err
				}
				answered = true
				return r.srv.CloseFD(sfd)
			}
		}
		return nil
	}
	pass := func() {
		if _, err := r.srvLoop.Pass(server); err != nil {
			tb.Fatal(err)
		}
		if _, err := r.cliLoop.Pass(nil); err != nil {
			tb.Fatal(err)
		}
	}
	sent := false
	// Stuck is a matter of time, not of passes: with GOMAXPROCS > 1
	// gVisor's goroutines may run on a thread of their own, which a busy
	// machine can keep off the CPU for longer than thousands of fast
	// passes take.
	start := time.Now()
	for got, i := 0, 0; ; i++ {
		if i%1024 == 1023 && time.Since(start) > 10*time.Second {
			tb.Fatalf("short connection stuck: sent %v, accepted %v, answered %v, %d bytes back", sent, sfd >= 0 || ep != nil, answered, got)
		}
		pass()
		if !sent {
			if _, err := r.cli.Write(cfd, r.req); err == nil {
				sent = true
			}
			continue
		}
		n, err := r.cli.Read(cfd, r.buf)
		if err == nil && n == 0 {
			if got != len(r.resp) {
				tb.Fatalf("EOF after %d bytes, want %d", got, len(r.resp))
			}
			break
		}
		if err == nil {
			got += n
		} else if !errors.Is(err, unix.EAGAIN) {
			tb.Fatal(err)
		}
	}
	r.cli.CloseFD(cfd)
	pass()
	pass()
}

// epollServer is helloworld's way of serving short connections: one
// EpollWait per loop callback; the listener's EPOLLIN accepts every queued
// connection and registers each for EPOLLIN; a connection's EPOLLIN reads
// the request, answers and closes it (the close takes it out of the set).
type epollServer struct {
	epfd   int
	events []unix.EpollEvent
}

func newEpollServer(tb testing.TB, r *rrRig) *epollServer {
	epfd, err := r.srv.EpollCreate(0)
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.srv.EpollCtl(epfd, unix.EPOLL_CTL_ADD, r.lfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(r.lfd)}); err != nil {
		tb.Fatal(err)
	}
	return &epollServer{epfd: epfd, events: make([]unix.EpollEvent, 64)}
}

// poll is one loop callback's work; it reports whether it answered a
// request.
func (e *epollServer) poll(r *rrRig) (answered bool, err error) {
	n, err := r.srv.EpollWait(e.epfd, e.events, 0)
	if err != nil {
		return false, err
	}
	for _, ev := range e.events[:n] {
		fd := int(ev.Fd)
		if fd == r.lfd {
			for {
				nfd, _, err := r.srv.Accept4(r.lfd, unix.SOCK_NONBLOCK)
				if err != nil {
					break
				}
				if err := r.srv.EpollCtl(e.epfd, unix.EPOLL_CTL_ADD, nfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(nfd)}); err != nil {
					return false, err
				}
			}
			continue
		}
		if n, err := r.srv.Read(fd, r.buf); err == nil && n > 0 {
			if _, err := r.srv.Write(fd, r.resp); err != nil {
				return false, err
			}
			answered = true
			if err := r.srv.CloseFD(fd); err != nil {
				return false, err
			}
		}
	}
	return answered, nil
}

// processCPU returns the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkShortConnection measures one short connection (handshake,
// request, response, FIN each way) between two in-memory lcores, both
// sides' stacks and sockets included, and reports the frames it took each
// way. Run it with -cpu 1, as an lcore runs.
func BenchmarkShortConnection(b *testing.B) {
	b.Run("poll", func(b *testing.B) { benchShortConnection(b, false) })
	b.Run("epoll", func(b *testing.B) { benchShortConnection(b, true) })
}

func benchShortConnection(b *testing.B, useEpoll bool) {
	r := newRRRig(b)
	var ep *epollServer
	if useEpoll {
		ep = newEpollServer(b, r)
	}
	for i := 0; i < 100; i++ {
		r.shortConn(b, ep)
	}
	srv0, cli0 := r.srvLoop.Stats(), r.cliLoop.Stats()
	cpu0 := processCPU()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r.shortConn(b, ep)
	}
	b.StopTimer()
	// CPU time, unlike the wall time of ns/op, does not count the time
	// the process waited for a CPU on a busy machine.
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	srv, cli := r.srvLoop.Stats(), r.cliLoop.Stats()
	b.ReportMetric(float64(srv.TxFrames-srv0.TxFrames)/float64(b.N), "srv-tx-frames/op")
	b.ReportMetric(float64(cli.TxFrames-cli0.TxFrames)/float64(b.N), "cli-tx-frames/op")
}
