package posix_test

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/xstest"
)

func TestTCPConnectAcceptReadWriteClose(t *testing.T) {
	eachFamily(t, func(t *testing.T, e *env, fam family) {
		lfd, port := listen(t, e.B, fam, fam.b, 0)
		cfd := must1[int](t)(e.A.Socket(fam.domain, unix.SOCK_STREAM, 0))
		must(t, e.A.Connect(cfd, fam.b(port)))
		sfd, peer, err := e.B.Accept(lfd)
		must(t, err)

		local := must1[unix.Sockaddr](t)(e.A.Getsockname(cfd))
		if got, want := sockPort(peer), sockPort(local); got != want {
			t.Errorf("accept peer port %d, client local port %d", got, want)
		}
		remote := must1[unix.Sockaddr](t)(e.A.Getpeername(cfd))
		if sockPort(remote) != port {
			t.Errorf("getpeername port %d, want %d", sockPort(remote), port)
		}
		switch r := remote.(type) {
		case *unix.SockaddrInet4:
			if fam.domain != unix.AF_INET || r.Addr != fam.b(0).(*unix.SockaddrInet4).Addr {
				t.Errorf("getpeername %+v", r)
			}
		case *unix.SockaddrInet6:
			if fam.domain != unix.AF_INET6 || r.Addr != fam.b(0).(*unix.SockaddrInet6).Addr {
				t.Errorf("getpeername %+v", r)
			}
		}

		msg := []byte("hello, xstack")
		if n, err := e.A.Write(cfd, msg); err != nil || n != len(msg) {
			t.Fatalf("write = %d, %v", n, err)
		}
		got := make([]byte, len(msg))
		readFull(t, e.B, sfd, got)
		if !bytes.Equal(got, msg) {
			t.Fatalf("read %q, want %q", got, msg)
		}
		if n, err := e.B.Write(sfd, []byte("pong")); err != nil || n != 4 {
			t.Fatalf("write back = %d, %v", n, err)
		}
		readFull(t, e.A, cfd, got[:4])

		must(t, e.A.CloseFD(cfd))
		// The server sees EOF after the client's FIN.
		n, err := e.B.Read(sfd, got)
		if n != 0 || err != nil {
			t.Fatalf("read after peer close = %d, %v; want 0, nil", n, err)
		}
		must(t, e.B.CloseFD(sfd))
		must(t, e.B.CloseFD(lfd))
		wantErrno(t, "close twice", e.B.CloseFD(lfd), unix.EBADF)
	})
}

func TestNonblockingConnect(t *testing.T) {
	eachFamily(t, func(t *testing.T, e *env, fam family) {
		lfd, port := listen(t, e.B, fam, fam.b, 0)
		cfd := must1[int](t)(e.A.Socket(fam.domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0))
		wantErrno(t, "connect", e.A.Connect(cfd, fam.b(port)), unix.EINPROGRESS)
		ep := epollAdd(t, e.A, -1, cfd, unix.EPOLLOUT)
		ev := waitEvents(t, e.A, ep, cfd, unix.EPOLLOUT)
		if ev&(unix.EPOLLERR|unix.EPOLLHUP) != 0 {
			t.Errorf("events %s on a good connect", xstest.Events(ev))
		}
		soErr := must1[int](t)(e.A.GetsockoptInt(cfd, unix.SOL_SOCKET, unix.SO_ERROR))
		if soErr != 0 {
			t.Fatalf("SO_ERROR = %v, want 0", unix.Errno(soErr))
		}
		// Linux: the next connect reports success once, then EISCONN.
		wantErrno(t, "second connect", e.A.Connect(cfd, fam.b(port)), 0)
		wantErrno(t, "third connect", e.A.Connect(cfd, fam.b(port)), unix.EISCONN)
		sfd, _, err := e.B.Accept(lfd)
		must(t, err)
		_, err = e.A.Write(cfd, []byte("x"))
		must(t, err)
		readFull(t, e.B, sfd, make([]byte, 1))
	})
}

func TestConnectWhileConnecting(t *testing.T) {
	fam := families[0]
	e := newEnv(t)
	_, port := listen(t, e.B, fam, fam.b, 0)
	cfd := must1[int](t)(e.A.Socket(fam.domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0))
	// Stop the handshake from completing: no pump runs the peer... instead
	// connect twice in a row, which races the SYN-ACK; accept either
	// EALREADY (still connecting) or success.
	wantErrno(t, "connect", e.A.Connect(cfd, fam.b(port)), unix.EINPROGRESS)
	err := e.A.Connect(cfd, fam.b(port))
	if err != nil && err != unix.EALREADY {
		t.Fatalf("second connect: %v, want EALREADY or success", err)
	}
}

func TestConnectRefused(t *testing.T) {
	for _, fam := range families {
		t.Run(fam.name+"/blocking", func(t *testing.T) {
			e := newEnv(t)
			fd := must1[int](t)(e.A.Socket(fam.domain, unix.SOCK_STREAM, 0))
			wantErrno(t, "connect", e.A.Connect(fd, fam.b(9)), unix.ECONNREFUSED)
			wantErrno(t, "SO_ERROR after", func() error {
				v, err := e.A.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
				must(t, err)
				return unix.Errno(v)
			}(), 0)
		})
		t.Run(fam.name+"/nonblocking", func(t *testing.T) {
			e := newEnv(t)
			fd := must1[int](t)(e.A.Socket(fam.domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0))
			wantErrno(t, "connect", e.A.Connect(fd, fam.b(9)), unix.EINPROGRESS)
			ep := epollAdd(t, e.A, -1, fd, unix.EPOLLOUT|unix.EPOLLIN)
			ev := waitEvents(t, e.A, ep, fd, unix.EPOLLERR|unix.EPOLLHUP)
			if ev&unix.EPOLLOUT == 0 {
				t.Errorf("events %s, want OUT too (Linux reports a failed connect as writable)", xstest.Events(ev))
			}
			v := must1[int](t)(e.A.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR))
			wantErrno(t, "SO_ERROR", unix.Errno(v), unix.ECONNREFUSED)
			v = must1[int](t)(e.A.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR))
			wantErrno(t, "SO_ERROR again", unix.Errno(v), 0)
			// The error was reported: EPOLLERR is gone, HUP stays.
			evs := make([]unix.EpollEvent, 4)
			n := must1[int](t)(e.A.EpollWait(ep, evs, 0))
			if n != 1 || evs[0].Events&unix.EPOLLERR != 0 || evs[0].Events&unix.EPOLLHUP == 0 {
				t.Errorf("after SO_ERROR: %d events %s, want HUP without ERR", n, xstest.Events(evs[0].Events))
			}
		})
	}
}

func TestBindErrors(t *testing.T) {
	eachFamily(t, func(t *testing.T, e *env, fam family) {
		fd1 := must1[int](t)(e.B.Socket(fam.domain, unix.SOCK_STREAM, 0))
		must(t, e.B.Bind(fd1, fam.b(8080)))
		wantErrno(t, "bind same socket twice", e.B.Bind(fd1, fam.b(8081)), unix.EINVAL)
		must(t, e.B.Listen(fd1, 8))
		fd2 := must1[int](t)(e.B.Socket(fam.domain, unix.SOCK_STREAM, 0))
		wantErrno(t, "bind in use", e.B.Bind(fd2, fam.b(8080)), unix.EADDRINUSE)
		// Stack B does not own A's address.
		wantErrno(t, "bind foreign", e.B.Bind(fd2, fam.a(8082)), unix.EADDRNOTAVAIL)

		u := must1[int](t)(e.B.Socket(fam.domain, unix.SOCK_DGRAM, 0))
		must(t, e.B.Bind(u, fam.b(5353)))
		u2 := must1[int](t)(e.B.Socket(fam.domain, unix.SOCK_DGRAM, 0))
		wantErrno(t, "udp bind in use", e.B.Bind(u2, fam.b(5353)), unix.EADDRINUSE)
		wantErrno(t, "udp listen", e.B.Listen(u2, 1), unix.EOPNOTSUPP)
	})
}

func TestAddressFamilyErrors(t *testing.T) {
	e := newEnv(t)
	v4 := must1[int](t)(e.A.Socket(unix.AF_INET, unix.SOCK_STREAM, 0))
	v6 := must1[int](t)(e.A.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0))
	tests := []struct {
		name string
		err  error
		want unix.Errno
	}{
		{"v4 bind v6 addr", e.A.Bind(v4, families[1].a(1)), unix.EAFNOSUPPORT},
		{"v6 bind v4 addr", e.A.Bind(v6, families[0].a(1)), unix.EINVAL},
		{"v4 connect v6 addr", e.A.Connect(v4, families[1].b(1)), unix.EAFNOSUPPORT},
		{"v6 connect v4 addr", e.A.Connect(v6, families[0].b(1)), unix.EINVAL},
		{"nil addr", e.A.Bind(v4, nil), unix.EINVAL},
		{"unix addr", e.A.Bind(v4, &unix.SockaddrUnix{Name: "x"}), unix.EAFNOSUPPORT},
	}
	for _, tc := range tests {
		wantErrno(t, tc.name, tc.err, tc.want)
	}
	_, err := e.A.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	wantErrno(t, "AF_UNIX", err, unix.EAFNOSUPPORT)
	_, err = e.A.Socket(unix.AF_INET, unix.SOCK_STREAM, unix.IPPROTO_UDP)
	wantErrno(t, "stream/udp", err, unix.EPROTONOSUPPORT)
	_, err = e.A.Socket(unix.AF_INET, unix.SOCK_RAW, 0)
	wantErrno(t, "raw", err, unix.ESOCKTNOSUPPORT)
	_, err = e.A.Socket(unix.AF_INET, unix.SOCK_STREAM|0x40000000, 0)
	wantErrno(t, "bad flag", err, unix.EINVAL)
}

func TestUnconnectedErrors(t *testing.T) {
	eachFamily(t, func(t *testing.T, e *env, fam family) {
		fd := must1[int](t)(e.A.Socket(fam.domain, unix.SOCK_STREAM, 0))
		buf := make([]byte, 8)
		_, err := e.A.Read(fd, buf)
		wantErrno(t, "read unconnected", err, unix.ENOTCONN)
		_, err = e.A.Write(fd, buf)
		wantErrno(t, "write unconnected", err, unix.EPIPE)
		_, err = e.A.Getpeername(fd)
		wantErrno(t, "getpeername", err, unix.ENOTCONN)
		lfd, _ := listen(t, e.A, fam, fam.a, 0)
		_, err = e.A.Read(lfd, buf)
		wantErrno(t, "read listener", err, unix.ENOTCONN)
		_, _, err = e.A.Accept(fd)
		wantErrno(t, "accept on non-listener", err, unix.EINVAL)
		must(t, e.A.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1))
		must(t, e.A.IoctlSetInt(lfd, 0x5421 /* FIONBIO */, 1))
		_, _, err = e.A.Accept(lfd)
		wantErrno(t, "accept empty non-blocking", err, unix.EAGAIN)
		wantErrno(t, "shutdown bad how", e.A.Shutdown(fd, 7), unix.EINVAL)
	})
}

func TestBadDescriptors(t *testing.T) {
	e := newEnv(t)
	ep := must1[int](t)(e.A.EpollCreate(0))
	buf := make([]byte, 4)
	_, err := e.A.Read(1000, buf)
	wantErrno(t, "read 1000", err, unix.EBADF)
	_, err = e.A.Write(-1, buf)
	wantErrno(t, "write -1", err, unix.EBADF)
	wantErrno(t, "close 1000", e.A.CloseFD(1000), unix.EBADF)
	_, err = e.A.Read(ep, buf)
	wantErrno(t, "read epoll", err, unix.EINVAL)
	wantErrno(t, "bind epoll", e.A.Bind(ep, families[0].a(0)), unix.ENOTSOCK)
	wantErrno(t, "connect epoll", e.A.Connect(ep, families[0].b(1)), unix.ENOTSOCK)
	wantErrno(t, "listen epoll", e.A.Listen(ep, 1), unix.ENOTSOCK)
	wantErrno(t, "setsockopt epoll", e.A.SetsockoptInt(ep, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1), unix.ENOTSOCK)
	_, err = e.A.IoctlGetInt(ep, 0x541b)
	wantErrno(t, "FIONREAD epoll", err, unix.ENOTTY)
	_, _, err = e.A.Accept(ep)
	wantErrno(t, "accept epoll", err, unix.ENOTSOCK)
	_, err = e.A.EpollWait(3000, make([]unix.EpollEvent, 1), 0)
	wantErrno(t, "epoll_wait bad fd", err, unix.EBADF)
}

func TestDescriptorNumbering(t *testing.T) {
	e := newEnv(t)
	var fds []int
	for range 5 {
		fds = append(fds, must1[int](t)(e.A.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)))
	}
	for i, fd := range fds {
		if fd != 3+i {
			t.Fatalf("fds %v, want 3..7", fds)
		}
	}
	must(t, e.A.CloseFD(5))
	must(t, e.A.CloseFD(4))
	if fd := must1[int](t)(e.A.EpollCreate(unix.EPOLL_CLOEXEC)); fd != 4 {
		t.Fatalf("after closing 4 and 5 got fd %d, want 4 (lowest first)", fd)
	}
	if fd := must1[int](t)(e.A.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)); fd != 5 {
		t.Fatalf("got fd %d, want 5", fd)
	}
	if fd := must1[int](t)(e.A.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)); fd != 8 {
		t.Fatalf("got fd %d, want 8", fd)
	}
}

func TestResetErrors(t *testing.T) {
	eachFamily(t, func(t *testing.T, e *env, fam family) {
		cfd, sfd := connected(t, e, fam)
		ep := epollAdd(t, e.A, -1, cfd, unix.EPOLLIN|unix.EPOLLRDHUP)
		// Linger 0: close sends RST instead of FIN.
		must(t, e.B.SetsockoptLinger(sfd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}))
		l := must1[*unix.Linger](t)(e.B.GetsockoptLinger(sfd, unix.SOL_SOCKET, unix.SO_LINGER))
		if l.Onoff != 1 || l.Linger != 0 {
			t.Fatalf("linger %+v", l)
		}
		must(t, e.B.CloseFD(sfd))
		ev := waitEvents(t, e.A, ep, cfd, unix.EPOLLHUP|unix.EPOLLERR)
		if want := uint32(unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLERR | unix.EPOLLHUP); ev != want {
			t.Errorf("events after RST %s, want %s", xstest.Events(ev), xstest.Events(want))
		}
		// The first call reports the reset, later writes EPIPE and
		// reads EOF, as on Linux.
		_, err := e.A.Write(cfd, []byte("x"))
		wantErrno(t, "write after RST", err, unix.ECONNRESET)
		_, err = e.A.Write(cfd, []byte("x"))
		wantErrno(t, "write again", err, unix.EPIPE)
		n, err := e.A.Read(cfd, make([]byte, 4))
		if n != 0 || err != nil {
			t.Fatalf("read after reported reset = %d, %v; want EOF", n, err)
		}
	})
}

func TestLingerZeroPeerReadsReset(t *testing.T) {
	eachFamily(t, func(t *testing.T, e *env, fam family) {
		cfd, sfd := connected(t, e, fam)
		must(t, e.A.SetsockoptLinger(cfd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}))
		must(t, e.A.CloseFD(cfd))
		_, err := e.B.Read(sfd, make([]byte, 4)) // blocks until the RST
		wantErrno(t, "read", err, unix.ECONNRESET)
	})
}

func TestShutdownWrite(t *testing.T) {
	eachFamily(t, func(t *testing.T, e *env, fam family) {
		cfd, sfd := connected(t, e, fam)
		ep := epollAdd(t, e.B, -1, sfd, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLET)
		_, err := e.A.Write(cfd, []byte("req"))
		must(t, err)
		must(t, e.A.Shutdown(cfd, unix.SHUT_WR))
		_, err = e.A.Write(cfd, []byte("more"))
		wantErrno(t, "write after SHUT_WR", err, unix.EPIPE)

		ev := waitEvents(t, e.B, ep, sfd, unix.EPOLLRDHUP)
		if ev&unix.EPOLLHUP != 0 {
			t.Errorf("half-close reported %s; HUP needs both directions shut", xstest.Events(ev))
		}
		buf := make([]byte, 16)
		readFull(t, e.B, sfd, buf[:3])
		if n, err := e.B.Read(sfd, buf); n != 0 || err != nil {
			t.Fatalf("read at EOF = %d, %v", n, err)
		}
		// The half-closed peer can still answer.
		_, err = e.B.Write(sfd, []byte("resp"))
		must(t, err)
		readFull(t, e.A, cfd, buf[:4])
		if string(buf[:4]) != "resp" {
			t.Fatalf("read %q", buf[:4])
		}
		must(t, e.B.Shutdown(sfd, unix.SHUT_WR))
		if n, err := e.A.Read(cfd, buf); n != 0 || err != nil {
			t.Fatalf("client read at EOF = %d, %v", n, err)
		}
	})
}

func TestBlockingAcceptWokenByConnect(t *testing.T) {
	eachFamily(t, func(t *testing.T, e *env, fam family) {
		lfd, port := listen(t, e.B, fam, fam.b, 0)
		type result struct {
			fd  int
			err error
		}
		done := make(chan result)
		go func() {
			fd, _, err := e.B.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			done <- result{fd, err}
		}()
		waitParked(t, "posix.(*Sockets).Accept4")
		cfd := must1[int](t)(e.A.Socket(fam.domain, unix.SOCK_STREAM, 0))
		must(t, e.A.Connect(cfd, fam.b(port)))
		r := <-done
		must(t, r.err)
		if fl := must1[int](t)(e.B.Fcntl(r.fd, unix.F_GETFL, 0)); fl&unix.O_NONBLOCK == 0 {
			t.Errorf("accept4 SOCK_NONBLOCK: F_GETFL %#x", fl)
		}
		if fl := must1[int](t)(e.B.Fcntl(r.fd, unix.F_GETFD, 0)); fl != unix.FD_CLOEXEC {
			t.Errorf("accept4 SOCK_CLOEXEC: F_GETFD %#x", fl)
		}
	})
}

func TestCloseWakesBlockedRead(t *testing.T) {
	e := newEnv(t)
	cfd, _ := connected(t, e, families[0])
	err := wokenBy(t, "posix.(*Sockets).Read", func() error {
		_, err := e.A.Read(cfd, make([]byte, 4))
		return err
	}, func() { must(t, e.A.CloseFD(cfd)) })
	wantErrno(t, "blocked read after close", err, unix.EBADF)
}

func TestTransfer10MiB(t *testing.T) {
	eachFamily(t, func(t *testing.T, e *env, fam family) {
		cfd, sfd := connected(t, e, fam)
		const size = 10 << 20
		data := make([]byte, size)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		want := sha256.Sum256(data)
		errc := make(chan error, 1)
		go func() {
			// Blocking writes of uneven sizes.
			for off := 0; off < size; {
				n := min(size-off, 1+rng.IntN(200000))
				w, err := e.A.Write(cfd, data[off:off+n])
				if err != nil {
					errc <- err
					return
				}
				off += w
			}
			errc <- e.A.CloseFD(cfd)
		}()
		h := sha256.New()
		buf := make([]byte, 64<<10)
		total := 0
		for {
			n, err := e.B.Read(sfd, buf)
			must(t, err)
			if n == 0 {
				break
			}
			h.Write(buf[:n])
			total += n
		}
		must(t, <-errc)
		if total != size {
			t.Fatalf("received %d bytes, want %d", total, size)
		}
		if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
			t.Fatalf("sha256 %x, want %x", got, want)
		}
	})
}
