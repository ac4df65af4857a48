package posix_test

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/posix"
)

func TestUDPSendToRecvFrom(t *testing.T) {
	eachFamily(t, func(t *testing.T, e *env, fam family) {
		srv, cli := udpPair(t, e, fam, 5353)
		must(t, e.A.Bind(cli, fam.a(0)))
		cliPort := sockPort(must1[unix.Sockaddr](t)(e.A.Getsockname(cli)))

		_, _, err := e.B.RecvFrom(srv, make([]byte, 4), unix.MSG_DONTWAIT)
		wantErrno(t, "recvfrom empty", err, unix.EAGAIN)

		n := must1[int](t)(e.A.SendTo(cli, []byte("query-1"), 0, fam.b(5353)))
		if n != 7 {
			t.Fatalf("sendto = %d", n)
		}
		must1[int](t)(e.A.SendTo(cli, []byte("q2"), 0, fam.b(5353)))
		ep := epollAdd(t, e.B, -1, srv, unix.EPOLLIN)
		waitEvents(t, e.B, ep, srv, unix.EPOLLIN)
		// FIONREAD on UDP is the size of the next datagram.
		if n := must1[int](t)(e.B.IoctlGetInt(srv, posix.FIONREAD)); n != 7 {
			t.Errorf("FIONREAD = %d, want 7", n)
		}
		buf := make([]byte, 64)
		n, from, err := e.B.RecvFrom(srv, buf, 0)
		must(t, err)
		if string(buf[:n]) != "query-1" || sockPort(from) != cliPort {
			t.Fatalf("recvfrom = %q from %+v, want query-1 from port %d", buf[:n], from, cliPort)
		}
		// Truncation: recv returns the part that fits, MSG_TRUNC the
		// whole length.
		n, _, err = e.B.RecvFrom(srv, buf[:1], unix.MSG_PEEK|unix.MSG_TRUNC)
		must(t, err)
		if n != 2 {
			t.Errorf("MSG_TRUNC length %d, want 2", n)
		}
		n, _, err = e.B.RecvFrom(srv, buf[:1], 0)
		must(t, err)
		if n != 1 {
			t.Errorf("truncated recv %d, want 1", n)
		}
		// Reply to the sender's address; connected client reads it.
		must1[int](t)(e.B.SendTo(srv, []byte("answer"), 0, from))
		must(t, e.A.Connect(cli, fam.b(5353)))
		n = must1[int](t)(e.A.Read(cli, buf))
		if string(buf[:n]) != "answer" {
			t.Fatalf("read %q", buf[:n])
		}
		n = must1[int](t)(e.A.Write(cli, []byte("via write")))
		if n != 9 {
			t.Fatalf("write = %d", n)
		}
		n = must1[int](t)(e.B.Read(srv, buf))
		if string(buf[:n]) != "via write" {
			t.Fatalf("read %q", buf[:n])
		}
		u := must1[int](t)(e.A.Socket(fam.domain, unix.SOCK_DGRAM, 0))
		_, err = e.A.Write(u, buf[:1])
		wantErrno(t, "write unconnected udp", err, unix.EDESTADDRREQ)
	})
}

func TestUDPOnDualStackSocket(t *testing.T) {
	e := newEnv(t)
	srv := must1[int](t)(e.B.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0))
	must(t, e.B.Bind(srv, families[0].b(7000)))
	cli := must1[int](t)(e.A.Socket(unix.AF_INET6, unix.SOCK_DGRAM, 0))
	must1[int](t)(e.A.SendTo(cli, []byte("v4 via v6"), 0, families[0].b(7000)))
	buf := make([]byte, 32)
	n, _, err := e.B.RecvFrom(srv, buf, 0)
	must(t, err)
	if string(buf[:n]) != "v4 via v6" {
		t.Fatalf("read %q", buf[:n])
	}
	// The send bound cli to a port: V6ONLY is fixed from then on.
	wantErrno(t, "V6ONLY after bind", e.A.SetsockoptInt(cli, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1), unix.EINVAL)
	v6only := must1[int](t)(e.A.Socket(unix.AF_INET6, unix.SOCK_DGRAM, 0))
	must(t, e.A.SetsockoptInt(v6only, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1))
	_, err = e.A.SendTo(v6only, []byte("x"), 0, families[0].b(7000))
	wantErrno(t, "v6only sendto v4", err, unix.ENETUNREACH)
}

func TestFIONREADTCP(t *testing.T) {
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	if n := must1[int](t)(e.B.IoctlGetInt(sfd, posix.FIONREAD)); n != 0 {
		t.Fatalf("FIONREAD idle = %d", n)
	}
	must1[int](t)(e.A.Write(cfd, make([]byte, 1000)))
	eventually(t, "1000 bytes readable", func() bool {
		n, err := e.B.IoctlGetInt(sfd, posix.FIONREAD)
		return err == nil && n == 1000
	})
	lfd, _ := listen(t, e.B, families[0], families[0].b, 0)
	_, err := e.B.IoctlGetInt(lfd, posix.FIONREAD)
	wantErrno(t, "FIONREAD listener", err, unix.EINVAL)
	_, err = e.B.IoctlGetInt(sfd, 0x1234)
	wantErrno(t, "unknown ioctl", err, unix.ENOTTY)
}
