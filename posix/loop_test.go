package posix_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/posix"
)

// TestLoopNeverBlocks: between EnterLoop and LeaveLoop, calls on the loop
// goroutine that would block return at once, while other goroutines keep
// blocking semantics.
func TestLoopNeverBlocks(t *testing.T) {
	e := newEnv(t)
	fam := families[0]
	cfd, sfd := connected(t, e, fam)
	lfd, port := listen(t, e.A, fam, fam.a, 0)
	ep := must1[int](t)(e.A.EpollCreate(0))

	// Another goroutine blocks in Read throughout.
	got := make(chan error, 1)
	go func() {
		_, err := e.A.Read(cfd, make([]byte, 1))
		got <- err
	}()

	ncfd, _ := connected(t, e, fam) // a second connection for the loop to read
	e.A.EnterLoop()
	buf := make([]byte, 8)
	start := time.Now()
	_, err := e.A.Read(ncfd, buf)
	wantErrno(t, "read in loop", err, unix.EAGAIN)
	_, _, err = e.A.Accept(lfd)
	wantErrno(t, "accept in loop", err, unix.EAGAIN)
	fd := must1[int](t)(e.A.Socket(fam.domain, unix.SOCK_STREAM, 0))
	wantErrno(t, "connect in loop", e.A.Connect(fd, fam.b(port+1)), unix.EINPROGRESS)
	n := must1[int](t)(e.A.EpollWait(ep, make([]unix.EpollEvent, 1), -1))
	if n != 0 {
		t.Fatalf("epoll_wait in loop = %d", n)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("loop calls took %v", d)
	}
	select {
	case err := <-got:
		t.Fatalf("other goroutine's read returned %v inside the loop", err)
	default:
	}
	e.A.LeaveLoop()

	_, err = e.B.Write(sfd, []byte("x"))
	must(t, err)
	select {
	case err := <-got:
		must(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("blocked reader never woke")
	}
}

func TestSocketsCloseIdempotent(t *testing.T) {
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	e.A.Close()
	e.A.Close()
	_, err := e.A.Write(cfd, []byte("x"))
	wantErrno(t, "write after Close", err, unix.EBADF)
	_, err = e.A.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	wantErrno(t, "socket after Close", err, unix.ENETDOWN)
	_, err = e.A.EpollCreate(0)
	wantErrno(t, "epoll_create after Close", err, unix.ENETDOWN)
	// The peer sees the FIN sent by Close.
	n, err := e.B.Read(sfd, make([]byte, 1))
	if n != 0 || err != nil {
		t.Fatalf("peer read after Close = %d, %v", n, err)
	}
}

func TestDefault(t *testing.T) {
	posix.SetDefault(nil)
	_, err := posix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	wantErrno(t, "no default", err, unix.ENETDOWN)
	wantErrno(t, "no default close", posix.Close(3), unix.EBADF)

	e := newEnv(t)
	posix.SetDefault(e.A)
	t.Cleanup(func() { posix.SetDefault(nil) })
	if posix.Default() != e.A {
		t.Fatal("Default is not the table set")
	}
	fd := must1[int](t)(posix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK, 0))
	must(t, posix.Bind(fd, families[0].a(0)))
	_, _, err = posix.RecvFrom(fd, make([]byte, 1), 0)
	wantErrno(t, "recvfrom", err, unix.EAGAIN)
	must(t, posix.Close(fd))
}

func TestSockopts(t *testing.T) {
	e := newEnv(t)
	tcp := must1[int](t)(e.A.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0))
	udp := must1[int](t)(e.A.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0))
	type opt struct {
		fd, level, name, set, want int
	}
	for _, o := range []opt{
		{tcp, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1, 1},
		{tcp, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1, 1},
		{tcp, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, 1},
		{tcp, unix.SOL_SOCKET, unix.SO_RCVBUF, 65536, 131072},
		{tcp, unix.SOL_SOCKET, unix.SO_SNDBUF, 65536, 131072},
		{tcp, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1, 1},
		{tcp, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 30, 30},
		{tcp, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 5, 5},
		{tcp, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 4, 4},
		{tcp, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1, 1},
		{udp, unix.SOL_SOCKET, unix.SO_BROADCAST, 1, 1},
		{udp, unix.IPPROTO_IP, unix.IP_TTL, 17, 17},
	} {
		must(t, e.A.SetsockoptInt(o.fd, o.level, o.name, o.set))
		if got := must1[int](t)(e.A.GetsockoptInt(o.fd, o.level, o.name)); got != o.want {
			t.Errorf("option %d/%d: set %d, got %d, want %d", o.level, o.name, o.set, got, o.want)
		}
	}
	for _, o := range []opt{
		{tcp, unix.SOL_SOCKET, unix.SO_TYPE, 0, unix.SOCK_STREAM},
		{udp, unix.SOL_SOCKET, unix.SO_TYPE, 0, unix.SOCK_DGRAM},
		{tcp, unix.SOL_SOCKET, unix.SO_DOMAIN, 0, unix.AF_INET6},
		{udp, unix.SOL_SOCKET, unix.SO_PROTOCOL, 0, unix.IPPROTO_UDP},
		{tcp, unix.SOL_SOCKET, unix.SO_ERROR, 0, 0},
		{tcp, unix.SOL_SOCKET, unix.SO_ACCEPTCONN, 0, 0},
	} {
		if got := must1[int](t)(e.A.GetsockoptInt(o.fd, o.level, o.name)); got != o.want {
			t.Errorf("option %d/%d = %d, want %d", o.level, o.name, got, o.want)
		}
	}
	wantErrno(t, "set SO_TYPE", e.A.SetsockoptInt(tcp, unix.SOL_SOCKET, unix.SO_TYPE, 1), unix.ENOPROTOOPT)
	wantErrno(t, "TCP opt on UDP", e.A.SetsockoptInt(udp, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1), unix.ENOPROTOOPT)
	wantErrno(t, "IPv6 opt on v4", e.A.SetsockoptInt(udp, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1), unix.ENOPROTOOPT)
	wantErrno(t, "keepidle 0", e.A.SetsockoptInt(tcp, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 0), unix.EINVAL)
	wantErrno(t, "unknown level", e.A.SetsockoptInt(tcp, 999, 1, 1), unix.ENOPROTOOPT)

	fl := must1[int](t)(e.A.Fcntl(tcp, unix.F_GETFL, 0))
	if fl&unix.O_NONBLOCK != 0 {
		t.Fatalf("new socket is non-blocking: %#x", fl)
	}
	must1[int](t)(e.A.Fcntl(tcp, unix.F_SETFL, fl|unix.O_NONBLOCK))
	if fl := must1[int](t)(e.A.Fcntl(tcp, unix.F_GETFL, 0)); fl&unix.O_NONBLOCK == 0 {
		t.Fatalf("F_SETFL O_NONBLOCK did not stick: %#x", fl)
	}
	must(t, e.A.IoctlSetInt(tcp, posix.FIONBIO, 0))
	if fl := must1[int](t)(e.A.Fcntl(tcp, unix.F_GETFL, 0)); fl&unix.O_NONBLOCK != 0 {
		t.Fatalf("FIONBIO 0 did not clear O_NONBLOCK: %#x", fl)
	}
	_, err := e.A.Fcntl(tcp, unix.F_DUPFD, 0)
	wantErrno(t, "F_DUPFD", err, unix.EINVAL)
}

// TestRunCallbackAgainForReadySocket: a callback that accepts a connection
// whose request is in already, and registers it, runs again in the same
// pass and sees the connection readable there; a callback that registers
// nothing ready runs once; one that registers a ready socket on every run
// is cut off after a few runs.
func TestRunCallbackAgainForReadySocket(t *testing.T) {
	e := newEnv(t)
	fam := families[0]
	lfd, port := listen(t, e.B, fam, fam.b, 0)
	epfd := epollAdd(t, e.B, -1, lfd, unix.EPOLLIN)
	cfd := must1[int](t)(e.A.Socket(fam.domain, unix.SOCK_STREAM, 0))
	must(t, e.A.Connect(cfd, fam.b(port)))
	must1[int](t)(e.A.Write(cfd, []byte("GET")))
	// Outside any callback, wait until the connection is queued on the
	// listener with its request in.
	eventually(t, "connection queued with its request", func() bool {
		for _, so := range e.B.Stack().Sockets() {
			if so.State == "ESTABLISHED" && so.Local.Port() == uint16(port) && so.RecvQ == 3 {
				return true
			}
		}
		return false
	})

	evs := make([]unix.EpollEvent, 8)
	runs, readIn := 0, -1
	callback := func() error {
		runs++
		n, err := e.B.EpollWait(epfd, evs, 0)
		if err != nil {
			return err
		}
		for _, ev := range evs[:n] {
			if int(ev.Fd) == lfd {
				sfd, _, err := e.B.Accept4(lfd, unix.SOCK_NONBLOCK)
				if err != nil {
					return err
				}
				epollAdd(t, e.B, epfd, sfd, unix.EPOLLIN)
				continue
			}
			if ev.Events&unix.EPOLLIN != 0 && readIn < 0 {
				readIn = runs
			}
		}
		return nil
	}
	must(t, e.B.RunCallback(callback))
	if runs != 2 || readIn != 2 {
		t.Fatalf("callback ran %d times, saw the request in run %d; want 2 and 2", runs, readIn)
	}

	runs = 0
	must(t, e.B.RunCallback(func() error { runs++; return nil }))
	if runs != 1 {
		t.Fatalf("callback that registers nothing ran %d times, want 1", runs)
	}

	// A callback that registers a ready socket every time: each run
	// makes a UDP socket with a datagram waiting and adds it.
	ufd, afd := udpPair(t, e, fam, port+1)
	must1[int](t)(e.A.SendTo(afd, []byte("x"), 0, fam.b(port+1)))
	eventually(t, "datagram in", func() bool {
		fds := []unix.PollFd{{Fd: int32(ufd), Events: unix.POLLIN}}
		n, err := e.B.Poll(fds, 0)
		return err == nil && n == 1
	})
	runs = 0
	must(t, e.B.RunCallback(func() error {
		runs++
		ep := must1[int](t)(e.B.EpollCreate(0))
		epollAdd(t, e.B, ep, ufd, unix.EPOLLIN)
		return nil
	}))
	if runs != 4 {
		t.Fatalf("callback that always registers a ready socket ran %d times, want 4", runs)
	}
}
