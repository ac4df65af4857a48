package posix_test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestReadvWritev(t *testing.T) {
	e := newEnv(t)
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			cfd, sfd := connected(t, e, fam)
			n := must1[int](t)(e.A.Writev(cfd, [][]byte{[]byte("hel"), nil, []byte("lo, "), []byte("world")}))
			if n != 12 {
				t.Fatalf("writev = %d, want 12", n)
			}
			eventually(t, "data", func() bool { n, _ := e.B.IoctlGetInt(sfd, unix.SIOCINQ); return n == 12 })
			a, b := make([]byte, 5), make([]byte, 20)
			n = must1[int](t)(e.B.Readv(sfd, [][]byte{a, b}))
			if n != 12 || string(a) != "hello" || string(b[:7]) != ", world" {
				t.Fatalf("readv = %d %q %q", n, a, b[:7])
			}
		})
	}
}

func TestSendRecvMsgUDP(t *testing.T) {
	e := newEnv(t)
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) {
			s := must1[int](t)(e.B.Socket(fam.domain, unix.SOCK_DGRAM, 0))
			must(t, e.B.Bind(s, fam.b(0)))
			port := sockPort(must1[unix.Sockaddr](t)(e.B.Getsockname(s)))
			c := must1[int](t)(e.A.Socket(fam.domain, unix.SOCK_DGRAM, 0))
			must(t, e.A.Connect(c, fam.b(port))) // connected UDP
			must1[int](t)(e.A.SendMsg(c, [][]byte{[]byte("0123"), []byte("456789")}, nil, 0))
			must1[int](t)(e.A.Send(c, []byte("abc"), 0))
			small := make([]byte, 4)
			n, fl, from, err := e.B.RecvMsg(s, [][]byte{small}, 0)
			must(t, err)
			if n != 4 || fl&unix.MSG_TRUNC == 0 || string(small) != "0123" || from == nil {
				t.Fatalf("recvmsg = %d flags %#x %q from %v", n, fl, small, from)
			}
			n = must1[int](t)(e.B.Recv(s, small, unix.MSG_TRUNC|unix.MSG_PEEK))
			if n != 3 {
				t.Fatalf("recv MSG_TRUNC|MSG_PEEK = %d, want 3", n)
			}
			n = must1[int](t)(e.B.Recv(s, small, 0))
			if n != 3 || string(small[:3]) != "abc" {
				t.Fatalf("recv = %d %q", n, small[:n])
			}
			_, err = e.B.Recv(s, small, unix.MSG_DONTWAIT)
			wantErrno(t, "recv empty", err, unix.EAGAIN)
		})
	}
}

func TestTCPInfo(t *testing.T) {
	e := newEnv(t)
	cfd, _ := connected(t, e, families[0])
	info := must1[*unix.TCPInfo](t)(e.A.GetsockoptTCPInfo(cfd, unix.IPPROTO_TCP, unix.TCP_INFO))
	if info.State != 1 /* TCP_ESTABLISHED */ || info.Snd_mss == 0 || info.Snd_cwnd == 0 {
		t.Fatalf("tcp_info: state %d mss %d cwnd %d", info.State, info.Snd_mss, info.Snd_cwnd)
	}
	udp := must1[int](t)(e.A.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0))
	_, err := e.A.GetsockoptTCPInfo(udp, unix.IPPROTO_TCP, unix.TCP_INFO)
	wantErrno(t, "TCP_INFO on UDP", err, unix.EOPNOTSUPP)
}

func TestPoll(t *testing.T) {
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	fds := []unix.PollFd{{Fd: int32(sfd), Events: unix.POLLIN}, {Fd: int32(cfd), Events: unix.POLLOUT}, {Fd: 999, Events: unix.POLLIN}, {Fd: -1}}
	n := must1[int](t)(e.B.Poll(fds[:1], 0))
	if n != 0 {
		t.Fatalf("poll idle = %d", n)
	}
	go func() {
		if err := untilParked("posix.(*Sockets).Poll"); err != nil {
			t.Error(err)
		}
		e.A.Write(cfd, []byte("x"))
	}()
	start := time.Now()
	n = must1[int](t)(e.B.Poll(fds[:1], 5000))
	if n != 1 || fds[0].Revents != unix.POLLIN || time.Since(start) > 4*time.Second {
		t.Fatalf("poll = %d revents %#x", n, fds[0].Revents)
	}
	n = must1[int](t)(e.A.Poll(fds[1:], 0))
	if n != 2 || fds[1].Revents != unix.POLLOUT || fds[2].Revents != unix.POLLNVAL || fds[3].Revents != 0 {
		t.Fatalf("poll = %d revents %#x %#x %#x", n, fds[1].Revents, fds[2].Revents, fds[3].Revents)
	}
}

func TestRoutes(t *testing.T) {
	e := newEnv(t)
	dst := netip.MustParsePrefix("10.1.0.0/16")
	gw := netip.MustParseAddr("198.18.0.2")
	must(t, e.A.RouteAdd(dst, gw))
	wantErrno(t, "add twice", e.A.RouteAdd(dst, gw), unix.EEXIST)
	wantErrno(t, "host bits", e.A.RouteAdd(netip.MustParsePrefix("10.1.0.1/16"), gw), unix.EINVAL)
	wantErrno(t, "family", e.A.RouteAdd(dst, netip.MustParseAddr("2001:2::2")), unix.EINVAL)
	wantErrno(t, "gateway off-link", e.A.RouteAdd(netip.MustParsePrefix("10.2.0.0/16"), netip.MustParseAddr("10.1.0.1")), unix.ENETUNREACH)
	found := false
	for _, r := range e.A.Routes() {
		found = found || (r.Dst == dst && r.Gateway == gw)
	}
	if !found {
		t.Fatalf("route missing from %v", e.A.Routes())
	}
	must(t, e.A.RouteDel(dst, netip.Addr{}))
	wantErrno(t, "del twice", e.A.RouteDel(dst, netip.Addr{}), unix.ESRCH)

	// A route decides reachability: remove the v4 subnet route and
	// connecting fails with ENETUNREACH; put it back and it works.
	sub := netip.MustParsePrefix("198.18.0.0/15")
	must(t, e.A.RouteDel(sub, netip.Addr{}))
	udp := must1[int](t)(e.A.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0))
	wantErrno(t, "connect without route", e.A.Connect(udp, families[0].b(9)), unix.ENETUNREACH)
	must(t, e.A.RouteAdd(sub, netip.Addr{}))
	must(t, e.A.Connect(udp, families[0].b(9)))
}

func TestWritevPartialSkip(t *testing.T) {
	// A blocking writev larger than the send buffer continues across the
	// buffers correctly after partial writes.
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	var iovs [][]byte
	var want []byte
	for i := 0; i < 64; i++ {
		b := bytes.Repeat([]byte{byte(i)}, 16<<10+i)
		iovs = append(iovs, b)
		want = append(want, b...)
	}
	done := make(chan error, 1)
	go func() {
		n, err := e.A.Writev(cfd, iovs)
		if err == nil && n != len(want) {
			err = unix.EIO
		}
		done <- err
	}()
	got := make([]byte, len(want))
	readFull(t, e.B, sfd, got)
	must(t, <-done)
	if !bytes.Equal(got, want) {
		t.Fatal("writev stream corrupted")
	}
}
