package difftest

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDifferential runs every scenario on the kernel and on xstack and
// compares the transcripts.
func TestDifferential(t *testing.T) {
	e := newEnv(t)
	errPaths, byDesign := 0, 0
	for _, sc := range scenarios {
		if sc.errPath {
			errPaths++
		}
		if sc.differs != "" {
			byDesign++
		}
	}
	t.Logf("%d scenarios, %d error paths, %d differing from Linux by design", len(scenarios), errPaths, byDesign)
	if len(scenarios) < 80 || errPaths*2 < len(scenarios) {
		t.Errorf("the table must hold at least 80 scenarios, half of them error paths")
	}
	seen := map[string]bool{}
	for i, sc := range scenarios {
		if seen[sc.name] {
			t.Fatalf("duplicate scenario %q", sc.name)
		}
		seen[sc.name] = true
		base := 20000 + 20*i
		t.Run(sc.name, func(t *testing.T) {
			k := runOn(t, e, e.kernel, sc, base)
			x := runOn(t, e, e.xstack, sc, base)
			same := strings.Join(k, "\n") == strings.Join(x, "\n")
			switch {
			case sc.differs == "" && !same:
				t.Errorf("xstack differs from Linux:\n%s", sideBySide(k, x))
			case sc.differs != "" && same:
				t.Errorf("documented difference (%s) no longer shows; transcript:\n%s", sc.differs, strings.Join(k, "\n"))
			case sc.differs != "":
				t.Logf("differs by design: %s\n%s", sc.differs, sideBySide(k, x))
			case os.Getenv("DIFFTEST_SHOW") != "":
				t.Logf("transcript:\n%s", strings.Join(k, "\n"))
			}
		})
	}
}

// sideBySide prints both transcripts line by line, marking differences.
func sideBySide(k, x []string) string {
	var b strings.Builder
	b.WriteString("   linux | xstack\n")
	for i := 0; i < max(len(k), len(x)); i++ {
		var a, c string
		if i < len(k) {
			a = k[i]
		}
		if i < len(x) {
			c = x[i]
		}
		mark := "  "
		if a != c {
			mark = "!!"
		}
		b.WriteString(mark + " " + a)
		if a != c {
			b.WriteString("  |  " + c)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// Shorthands for the table.
const (
	inet    = unix.AF_INET
	inet6   = unix.AF_INET6
	stream  = unix.SOCK_STREAM
	dgram   = unix.SOCK_DGRAM
	nb      = unix.SOCK_NONBLOCK
	solSock = unix.SOL_SOCKET
	ipTCP   = unix.IPPROTO_TCP
	ipIP    = unix.IPPROTO_IP
	ipV6    = unix.IPPROTO_IPV6
	ctlAdd  = unix.EPOLL_CTL_ADD
	ctlMod  = unix.EPOLL_CTL_MOD
	ctlDel  = unix.EPOLL_CTL_DEL
	in      = unix.EPOLLIN
	out     = unix.EPOLLOUT
	rdhup   = unix.EPOLLRDHUP
	et      = unix.EPOLLET
	oneshot = unix.EPOLLONESHOT
)

// connected4 returns a TCP connection from the side to a peer listener
// (port 10): the local fd and the peer's.
func (r *run) connected(domain int) (fd, pfd int) {
	lfd := r.peerListen(domain, 10)
	fd = r.socket(domain, stream)
	r.connect(fd, r.peerAddr(domain, 10))
	pfd = r.peerAccept(lfd)
	r.peerClose(lfd)
	return fd, pfd
}

// watched is connected(inet) with the side's end added to a new epoll
// instance for events ev.
func (r *run) watched(ev uint32) (fd, pfd, ep int) {
	fd, pfd = r.connected(inet)
	ep = r.epoll()
	r.epollCtl(ep, ctlAdd, fd, ev)
	return fd, pfd, ep
}

// accepted returns a TCP connection the peer opened to a listener on the
// side (port 0): the local fd and the peer's.
func (r *run) accepted(domain int) (fd, pfd int) {
	sa := r.Any4(0)
	if domain == inet6 {
		sa = r.Any6(0)
	}
	lfd := r.listener(domain, sa, 8)
	pfd = r.peerConnect(domain, 0)
	r.waitIn(lfd)
	fd = r.accept(lfd, 0)
	r.close(lfd)
	return fd, pfd
}

var scenarios = []scenario{
	// ---- socket(2) ----
	{name: "socket/unknown-family", errPath: true, run: func(r *run) { r.socketP(1000, stream, 0) }},
	{name: "socket/stream-udp-proto", errPath: true, run: func(r *run) { r.socketP(inet, stream, unix.IPPROTO_UDP) }},
	{name: "socket/dgram-tcp-proto", errPath: true, run: func(r *run) { r.socketP(inet6, dgram, unix.IPPROTO_TCP) }},
	{name: "socket/bad-flags", errPath: true, run: func(r *run) { r.socketP(inet, stream|0x100000, 0) }},
	{name: "socket/raw", errPath: true,
		differs: "xstack has no raw sockets (ESOCKTNOSUPPORT); Linux gives root one",
		run:     func(r *run) { r.socketP(inet, unix.SOCK_RAW, unix.IPPROTO_ICMP) }},
	{name: "socket/type-options", run: func(r *run) {
		for _, d := range []int{inet, inet6} {
			for _, ty := range []int{stream, dgram} {
				fd := r.socket(d, ty)
				r.getopt(fd, solSock, unix.SO_TYPE)
				r.getopt(fd, solSock, unix.SO_DOMAIN)
				r.getopt(fd, solSock, unix.SO_PROTOCOL)
				r.getopt(fd, solSock, unix.SO_ACCEPTCONN)
				r.getopt(fd, solSock, unix.SO_ERROR)
			}
		}
	}},
	{name: "socket/nonblock-flag", run: func(r *run) {
		r.getfl(r.socket(inet, stream|nb))
		r.getfl(r.socket(inet, stream))
	}},

	// ---- bind(2) ----
	{name: "bind/addrinuse-listener", errPath: true, run: func(r *run) {
		a := r.socket(inet, stream)
		r.bind(a, r.L4(0))
		r.listen(a, 8)
		r.bind(r.socket(inet, stream), r.L4(0))
	}},
	{name: "bind/addrinuse-any-vs-specific", errPath: true, run: func(r *run) {
		a := r.socket(inet, stream)
		r.bind(a, r.Any4(0))
		r.listen(a, 8)
		r.bind(r.socket(inet, stream), r.L4(0))
	}},
	{name: "bind/addrnotavail", errPath: true, run: func(r *run) {
		r.bind(r.socket(inet, stream), addr4(noHost4, r.p(0)))
		r.bind(r.socket(inet6, dgram), addr6(r.env.rig.PeerAddr6, r.p(0)))
	}},
	{name: "bind/twice", errPath: true, run: func(r *run) {
		a := r.socket(inet, stream)
		r.bind(a, r.L4(0))
		r.bind(a, r.L4(1))
	}},
	{name: "bind/v6-addr-on-v4-socket", errPath: true, run: func(r *run) {
		r.bind(r.socket(inet, stream), r.L6(0))
	}},
	{name: "bind/v4-addr-on-v6-socket", errPath: true, run: func(r *run) {
		r.bind(r.socket(inet6, stream), r.L4(0))
	}},
	{name: "bind/udp-addrinuse", errPath: true, run: func(r *run) {
		r.bind(r.socket(inet, dgram), r.L4(0))
		r.bind(r.socket(inet, dgram), r.L4(0))
	}},
	{name: "bind/port-zero-ephemeral", run: func(r *run) {
		a := r.socket(inet, stream)
		r.bind(a, r.L4(0))
		r.sockname(a)
		b := r.socket(inet6, dgram)
		r.bind(b, &unix.SockaddrInet6{})
		r.sockname(b)
	}},
	{name: "bind/reuseport-two-listeners", run: func(r *run) {
		for range 2 {
			a := r.socket(inet, stream)
			r.setopt(a, solSock, unix.SO_REUSEPORT, 1)
			r.bind(a, r.L4(0))
			r.listen(a, 8)
		}
	}},
	{name: "bind/dualstack-conflicts-with-v4", errPath: true, run: func(r *run) {
		a := r.socket(inet6, stream)
		r.setopt(a, ipV6, unix.IPV6_V6ONLY, 0)
		r.bind(a, r.Any6(0))
		r.listen(a, 8)
		r.bind(r.socket(inet, stream), r.Any4(0))
	}},
	{name: "bind/v6only-coexists-with-v4", run: func(r *run) {
		a := r.socket(inet6, stream)
		r.setopt(a, ipV6, unix.IPV6_V6ONLY, 1)
		r.bind(a, r.Any6(0))
		r.listen(a, 8)
		b := r.socket(inet, stream)
		r.bind(b, r.Any4(0))
		r.listen(b, 8)
	}},
	{name: "bind/v6only-after-bind", errPath: true, run: func(r *run) {
		a := r.socket(inet6, stream)
		r.getopt(a, ipV6, unix.IPV6_V6ONLY)
		r.bind(a, r.Any6(0))
		r.setopt(a, ipV6, unix.IPV6_V6ONLY, 1)
	}},

	// ---- listen(2) ----
	{name: "listen/udp", errPath: true, run: func(r *run) {
		a := r.socket(inet, dgram)
		r.bind(a, r.L4(0))
		r.listen(a, 8)
	}},
	{name: "listen/autobind", run: func(r *run) {
		a := r.socket(inet, stream)
		r.listen(a, 8)
		r.sockname(a)
		r.getopt(a, solSock, unix.SO_ACCEPTCONN)
		r.listen(a, 16)
	}},
	{name: "listen/connected", errPath: true, run: func(r *run) {
		fd, _ := r.connected(inet)
		r.listen(fd, 8)
	}},

	// ---- connect(2) ----
	{name: "connect/refused-blocking", errPath: true, run: func(r *run) {
		a := r.socket(inet, stream)
		r.connect(a, r.P4(1))
		r.soError(a)
		r.getopt(a, solSock, unix.SO_TYPE)
	}},
	{name: "connect/retry-after-refused", errPath: true,
		differs: "a gVisor endpoint stays in its error state after a failed connect, so connecting the same socket again fails with ECONNABORTED; Linux returns the socket to CLOSE and tries again. Open a new socket to retry",
		run: func(r *run) {
			a := r.socket(inet, stream)
			r.connect(a, r.P4(1))
			r.connect(a, r.P4(1))
		}},
	{name: "connect/refused-nonblocking", errPath: true, run: func(r *run) {
		a := r.socket(inet6, stream|nb)
		r.connect(a, r.P6(1))
		r.poll(a, unix.POLLOUT, 3000)
		r.soError(a)
		r.soError(a)
	}},
	{name: "connect/blocking-ok", run: func(r *run) {
		fd, _ := r.connected(inet)
		r.peername(fd)
		r.sockname(fd)
	}},
	{name: "connect/nonblocking-ok", errPath: true, run: func(r *run) {
		lfd := r.peerListen(inet6, 10)
		a := r.socket(inet6, stream|nb)
		r.connect(a, r.P6(10))
		r.poll(a, unix.POLLOUT, 3000)
		r.soError(a)
		r.connect(a, r.P6(10))
		r.peerAccept(lfd)
	}},
	{name: "connect/isconn", errPath: true, run: func(r *run) {
		fd, _ := r.connected(inet)
		r.connect(fd, r.P4(10))
		r.connect(fd, r.P4(11))
	}},
	{name: "connect/already", errPath: true, run: func(r *run) {
		a := r.socket(inet, stream|nb)
		r.connect(a, addr4(noHost4, r.p(1)))
		r.connect(a, addr4(noHost4, r.p(1)))
		r.poll(a, unix.POLLOUT, 0)
	}},
	{name: "connect/v6-addr-on-v4-socket", errPath: true, run: func(r *run) {
		r.connect(r.socket(inet, stream), r.P6(1))
	}},
	{name: "connect/v4-addr-on-v6-tcp-socket", errPath: true, run: func(r *run) {
		r.connect(r.socket(inet6, stream), r.P4(1))
	}},
	{name: "connect/listening-socket", errPath: true, run: func(r *run) {
		a := r.socket(inet, stream)
		r.listen(a, 8)
		r.connect(a, r.P4(1))
	}},
	{name: "connect/dualstack-mapped", run: func(r *run) {
		lfd := r.peerListen(inet, 10)
		a := r.socket(inet6, stream)
		r.connect(a, r.Mapped4(r.env.rig.PeerAddr4, 10))
		r.peername(a)
		r.sockname(a)
		r.peerAccept(lfd)
	}},
	{name: "connect/mapped-on-v6only", errPath: true, run: func(r *run) {
		a := r.socket(inet6, stream)
		r.setopt(a, ipV6, unix.IPV6_V6ONLY, 1)
		r.connect(a, r.Mapped4(r.env.rig.PeerAddr4, 10))
	}},
	{name: "connect/bound-source", run: func(r *run) {
		lfd := r.peerListen(inet, 10)
		a := r.socket(inet, stream)
		r.bind(a, r.L4(3))
		r.connect(a, r.P4(10))
		r.sockname(a)
		r.peerAccept(lfd)
	}},

	// ---- accept(2) ----
	{name: "accept/not-listening", errPath: true, run: func(r *run) {
		a := r.socket(inet, stream)
		r.bind(a, r.L4(0))
		r.accept(a, 0)
	}},
	{name: "accept/empty-nonblocking", errPath: true, run: func(r *run) {
		a := r.listener(inet, r.L4(0), 8)
		r.nonblock(a)
		r.accept(a, 0)
	}},
	{name: "accept/udp", errPath: true, run: func(r *run) {
		a := r.socket(inet, dgram)
		r.bind(a, r.L4(0))
		r.accept(a, 0)
	}},
	{name: "accept/bad-flags", errPath: true, run: func(r *run) {
		a := r.listener(inet, r.L4(0), 8)
		r.accept(a, 0x40)
	}},
	{name: "accept/flags-inheritance", run: func(r *run) {
		l := r.listener(inet, r.Any4(0), 8)
		r.nonblock(l)
		r.peerConnect(inet, 0)
		r.peerConnect(inet, 0)
		r.waitIn(l)
		r.getfl(r.accept(l, 0))
		r.waitIn(l)
		r.getfl(r.accept(l, unix.SOCK_NONBLOCK))
	}},
	{name: "accept/v4-on-dualstack", run: func(r *run) {
		l := r.listener(inet6, r.Any6(0), 8)
		r.peerConnect(inet, 0)
		r.waitIn(l)
		fd := r.accept(l, 0)
		r.sockname(fd)
		r.peername(fd)
	}},

	// ---- data ----
	{name: "tcp/exchange", run: func(r *run) {
		fd, pfd := r.connected(inet)
		r.write(fd, "ping")
		r.peerRecv(pfd)
		r.peerSend(pfd, "pong")
		r.read(fd, 100)
	}},
	{name: "tcp/exchange-v6-accepted", run: func(r *run) {
		fd, pfd := r.accepted(inet6)
		r.peerSend(pfd, "hello")
		r.read(fd, 100)
		r.write(fd, "world")
		r.peerRecv(pfd)
	}},
	{name: "tcp/read-eagain", errPath: true, run: func(r *run) {
		fd, _ := r.connected(inet)
		r.nonblock(fd)
		r.readN(fd, 10)
	}},
	{name: "tcp/recv-dontwait", errPath: true, run: func(r *run) {
		fd, _ := r.connected(inet)
		b := make([]byte, 8)
		_, _, err := r.s.RecvFrom(fd, b, unix.MSG_DONTWAIT)
		r.note("recv MSG_DONTWAIT: %s", errName(err))
	}},
	{name: "tcp/read-unconnected", errPath: true, run: func(r *run) {
		r.readN(r.socket(inet, stream), 10)
	}},
	{name: "tcp/write-unconnected", errPath: true, run: func(r *run) {
		r.write(r.socket(inet, stream), "x")
	}},
	{name: "tcp/read-listener", errPath: true, run: func(r *run) {
		a := r.listener(inet, r.L4(0), 8)
		r.readN(a, 10)
	}},
	{name: "tcp/peer-fin-eof", run: func(r *run) {
		fd, pfd := r.connected(inet)
		r.peerSend(pfd, "last")
		r.peerClose(pfd)
		r.read(fd, 100)
		r.read(fd, 100)
		r.read(fd, 100)
	}},
	{name: "tcp/write-after-peer-reset", errPath: true, run: func(r *run) {
		fd, pfd := r.connected(inet)
		r.peerReset(pfd)
		r.waitIn(fd) // the reset arrived
		r.write(fd, "x")
		r.write(fd, "x")
	}},
	{name: "tcp/read-after-peer-reset", errPath: true, run: func(r *run) {
		fd, pfd := r.connected(inet6)
		r.peerReset(pfd)
		r.read(fd, 10)
		r.read(fd, 10)
		r.soError(fd)
	}},
	{name: "tcp/write-after-peer-close", errPath: true, run: func(r *run) {
		fd, pfd := r.connected(inet)
		r.peerClose(pfd)
		r.read(fd, 10)
		r.write(fd, "a") // the peer answers with a RST
		r.waitErr(fd)
		r.write(fd, "b")
		r.write(fd, "c")
	}},
	{name: "tcp/readv-writev", run: func(r *run) {
		fd, pfd := r.connected(inet)
		n, err := r.s.Writev(fd, [][]byte{[]byte("ab"), nil, []byte("cde")})
		r.note("writev: %d %s", n, errName(err))
		r.peerRecv(pfd)
		r.peerSend(pfd, "0123456789")
		r.waitIn(fd)
		a, b := make([]byte, 3), make([]byte, 4)
		n, err = r.s.Readv(fd, [][]byte{a, b})
		r.note("readv: %d %s %q %q", n, errName(err), a, b)
		r.read(fd, 10)
	}},
	{name: "tcp/peek", run: func(r *run) {
		fd, pfd := r.connected(inet)
		r.peerSend(pfd, "peekaboo")
		r.waitIn(fd)
		r.fionread(fd)
		r.recvfrom(fd, 4, unix.MSG_PEEK)
		r.readN(fd, 100)
		r.fionread(fd)
	}},
	{name: "tcp/recv-waitall", run: func(r *run) {
		fd, pfd := r.connected(inet)
		wait := r.peerSendPieces(pfd, nil, "ab", "cd", "ef")
		r.recvfrom(fd, 6, unix.MSG_WAITALL)
		wait()
		wait = r.peerSendPieces(pfd, nil, "gh", "ijk")
		a, b := make([]byte, 1), make([]byte, 4)
		n, _, _, err := r.s.RecvMsg(fd, [][]byte{a, b}, unix.MSG_WAITALL)
		r.note("recvmsg MSG_WAITALL: %d %s %q %q", n, errName(err), a, b)
		wait()
	}},
	{name: "tcp/recv-waitall-eof", run: func(r *run) {
		fd, pfd := r.connected(inet6)
		wait := r.peerSendPieces(pfd, func() { unix.Shutdown(pfd, unix.SHUT_WR) }, "ab", "c")
		r.recvfrom(fd, 10, unix.MSG_WAITALL)
		r.recvfrom(fd, 10, unix.MSG_WAITALL)
		wait()
	}},
	{name: "tcp/recv-waitall-reset", errPath: true, run: func(r *run) {
		fd, pfd := r.connected(inet)
		wait := r.peerSendPieces(pfd, func() { r.peerReset(pfd) }, "ab")
		r.recvfrom(fd, 10, unix.MSG_WAITALL)
		wait()
		r.recvfrom(fd, 10, unix.MSG_WAITALL)
	}},
	{name: "tcp/recv-waitall-peek", run: func(r *run) {
		fd, pfd := r.connected(inet)
		wait := r.peerSendPieces(pfd, nil, "ab", "cd")
		r.recvfrom(fd, 4, unix.MSG_WAITALL|unix.MSG_PEEK)
		wait()
		r.fionread(fd)
		r.readN(fd, 10)
		wait = r.peerSendPieces(pfd, func() { unix.Shutdown(pfd, unix.SHUT_WR) }, "ef")
		r.recvfrom(fd, 10, unix.MSG_WAITALL|unix.MSG_PEEK)
		wait()
		r.readN(fd, 10)
		r.readN(fd, 10)
	}},
	{name: "tcp/recv-waitall-nonblock", errPath: true, run: func(r *run) {
		fd, pfd := r.connected(inet)
		r.recvfrom(fd, 10, unix.MSG_WAITALL|unix.MSG_DONTWAIT)
		r.peerSend(pfd, "ab")
		r.waitIn(fd)
		r.recvfrom(fd, 10, unix.MSG_WAITALL|unix.MSG_DONTWAIT)
		r.nonblock(fd)
		r.recvfrom(fd, 10, unix.MSG_WAITALL)
		r.peerSend(pfd, "cd")
		r.waitIn(fd)
		r.recvfrom(fd, 10, unix.MSG_WAITALL)
	}},
	{name: "tcp/recv-oob", errPath: true, differs: "xstack refuses MSG_OOB with EOPNOTSUPP (gVisor has no urgent data); Linux says EINVAL when no urgent data is pending",
		run: func(r *run) {
			fd, _ := r.connected(inet)
			r.recvfrom(fd, 10, unix.MSG_OOB|unix.MSG_DONTWAIT)
		}},
	{name: "tcp/send-more", run: func(r *run) {
		fd, pfd := r.connected(inet)
		r.sendto(fd, "ab", unix.MSG_MORE, nil)
		r.sendto(fd, "cd", unix.MSG_MORE, nil)
		r.peerRecvNow(pfd)
		r.getopt(fd, ipTCP, unix.TCP_CORK)
		r.sendto(fd, "ef", 0, nil)
		r.peerRecv(pfd)
		r.write(fd, "g")
		r.peerRecv(pfd)
		// Held data that nothing releases goes out after a while. (The
		// settle lets the peer's ACK arrive first: Linux also sends held
		// data when an ACK comes.)
		r.settle()
		r.sendto(fd, "alone", unix.MSG_MORE, nil)
		r.peerRecvNow(pfd)
		r.peerRecv(pfd)
	}},
	{name: "tcp/send-more-cork", run: func(r *run) {
		fd, pfd := r.connected(inet6)
		r.sendto(fd, "a", unix.MSG_MORE, nil)
		r.setopt(fd, ipTCP, unix.TCP_CORK, 1)
		r.getopt(fd, ipTCP, unix.TCP_CORK)
		r.write(fd, "b")
		r.peerRecvNow(pfd)
		r.setopt(fd, ipTCP, unix.TCP_CORK, 0)
		r.peerRecv(pfd)
		r.getopt(fd, ipTCP, unix.TCP_CORK)
		r.sendto(fd, "c", unix.MSG_MORE, nil)
		r.setopt(fd, ipTCP, unix.TCP_CORK, 0)
		r.peerRecv(pfd)
		r.write(fd, "d")
		r.peerRecv(pfd)
	}},
	{name: "tcp/send-more-shutdown", run: func(r *run) {
		fd, pfd := r.connected(inet)
		r.sendto(fd, "held", unix.MSG_MORE, nil)
		r.peerRecvNow(pfd)
		r.shutdown(fd, unix.SHUT_WR)
		r.peerRecv(pfd)
		r.peerRecv(pfd)
	}},
	{name: "tcp/zero-length-read", run: func(r *run) {
		fd, _ := r.connected(inet)
		r.nonblock(fd)
		r.readN(fd, 0)
	}},

	// ---- shutdown(2) and half-close ----
	{name: "shutdown/wr-peer-sees-fin", run: func(r *run) {
		fd, pfd := r.connected(inet)
		r.write(fd, "bye")
		r.shutdown(fd, unix.SHUT_WR)
		r.peerRecv(pfd)
		r.peerRecv(pfd)
		r.peerSend(pfd, "still")
		r.read(fd, 100)
	}},
	{name: "shutdown/write-after-shut-wr", errPath: true, run: func(r *run) {
		fd, _ := r.connected(inet)
		r.shutdown(fd, unix.SHUT_WR)
		r.write(fd, "x")
	}},
	{name: "shutdown/rd-then-read", run: func(r *run) {
		fd, _ := r.connected(inet)
		r.shutdown(fd, unix.SHUT_RD)
		r.readN(fd, 10)
	}},
	{name: "shutdown/unconnected", errPath: true, run: func(r *run) {
		r.shutdown(r.socket(inet, stream), unix.SHUT_RDWR)
		r.shutdown(r.socket(inet, dgram), unix.SHUT_WR)
	}},
	{name: "shutdown/bad-how", errPath: true, run: func(r *run) {
		fd, _ := r.connected(inet)
		r.shutdown(fd, 7)
	}},
	{name: "shutdown/peer-half-close", run: func(r *run) {
		fd, pfd := r.accepted(inet)
		r.peerShutdown(pfd, unix.SHUT_WR)
		r.read(fd, 10)
		r.write(fd, "reply")
		r.peerRecv(pfd)
		r.close(fd)
		r.peerRecv(pfd)
	}},
	{name: "shutdown/rdwr-poll", run: func(r *run) {
		fd, pfd := r.connected(inet)
		r.shutdown(fd, unix.SHUT_RDWR)
		r.peerRecv(pfd)
		r.poll(fd, unix.POLLIN|unix.POLLOUT|unix.POLLRDHUP, 0)
	}},

	// ---- close(2) and what the peer sees ----
	{name: "close/twice", errPath: true, run: func(r *run) {
		a := r.socket(inet, stream)
		r.close(a)
		r.close(a)
	}},
	{name: "close/use-after-close", errPath: true, run: func(r *run) {
		a := r.socket(inet, dgram)
		r.close(a)
		r.readN(a, 1)
		r.write(a, "x")
		r.bind(a, r.L4(0))
		r.getopt(a, solSock, unix.SO_TYPE)
		r.getfl(a)
		r.shutdown(a, unix.SHUT_RDWR)
	}},
	{name: "close/fin", run: func(r *run) {
		fd, pfd := r.connected(inet)
		r.write(fd, "data")
		r.close(fd)
		r.peerRecv(pfd)
		r.peerRecv(pfd)
	}},
	{name: "close/unread-data-resets", errPath: true, run: func(r *run) {
		fd, pfd := r.connected(inet)
		r.peerSend(pfd, "unread")
		r.waitIn(fd)
		r.close(fd)
		r.peerRecv(pfd)
	}},
	{name: "close/linger0-resets", errPath: true, run: func(r *run) {
		fd, pfd := r.accepted(inet6)
		err := r.s.SetsockoptLinger(fd, solSock, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		r.note("SO_LINGER 0: %s", errName(err))
		r.close(fd)
		r.peerRecv(pfd)
	}},
	{name: "close/linger-roundtrip", run: func(r *run) {
		a := r.socket(inet, stream)
		l, err := r.s.GetsockoptLinger(a, solSock, unix.SO_LINGER)
		r.note("linger: %+v %s", l, errName(err))
		r.s.SetsockoptLinger(a, solSock, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 5})
		l, err = r.s.GetsockoptLinger(a, solSock, unix.SO_LINGER)
		r.note("linger: %+v %s", l, errName(err))
	}},
	{name: "close/listener-with-pending", errPath: true, run: func(r *run) {
		l := r.listener(inet, r.Any4(0), 8)
		pfd := r.peerConnect(inet, 0)
		r.waitIn(l) // the handshake's last ACK arrived
		r.close(l)
		r.peerRecv(pfd)
	}},

	// ---- options ----
	{name: "opt/socket-level", run: func(r *run) {
		a := r.socket(inet, stream)
		for _, o := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT, unix.SO_KEEPALIVE} {
			r.getopt(a, solSock, o)
			r.setopt(a, solSock, o, 1)
			r.getopt(a, solSock, o)
		}
		u := r.socket(inet, dgram)
		r.getopt(u, solSock, unix.SO_BROADCAST)
		r.setopt(u, solSock, unix.SO_BROADCAST, 1)
		r.getopt(u, solSock, unix.SO_BROADCAST)
	}},
	{name: "opt/tcp-level", run: func(r *run) {
		a := r.socket(inet6, stream)
		r.setopt(a, ipTCP, unix.TCP_NODELAY, 1)
		r.getopt(a, ipTCP, unix.TCP_NODELAY)
		r.setopt(a, ipTCP, unix.TCP_NODELAY, 0)
		r.getopt(a, ipTCP, unix.TCP_NODELAY)
		for _, o := range []int{unix.TCP_KEEPIDLE, unix.TCP_KEEPINTVL, unix.TCP_KEEPCNT} {
			r.setopt(a, ipTCP, o, 7)
			r.getopt(a, ipTCP, o)
		}
		r.setopt(a, ipTCP, unix.TCP_USER_TIMEOUT, 1500)
		r.getopt(a, ipTCP, unix.TCP_USER_TIMEOUT)
	}},
	{name: "opt/nodelay-default",
		differs: "TCP_NODELAY is on by default (gVisor's default, as Go's net package sets it on every TCP socket): gVisor sends no delayed ACKs, and Nagle against a kernel peer's delayed ACKs stalls request/response traffic; set it to 0 for Nagle",
		run: func(r *run) {
			r.getopt(r.socket(inet, stream), ipTCP, unix.TCP_NODELAY)
		}},
	{name: "opt/tcp-defaults", run: func(r *run) {
		a := r.socket(inet, stream)
		for _, o := range []int{unix.TCP_KEEPIDLE, unix.TCP_KEEPINTVL, unix.TCP_KEEPCNT, unix.TCP_USER_TIMEOUT} {
			r.getopt(a, ipTCP, o)
		}
	}},
	{name: "opt/keepalive-range", errPath: true, run: func(r *run) {
		a := r.socket(inet, stream)
		r.setopt(a, ipTCP, unix.TCP_KEEPIDLE, 0)
		r.setopt(a, ipTCP, unix.TCP_KEEPINTVL, 40000)
		r.setopt(a, ipTCP, unix.TCP_KEEPCNT, 128)
		r.setopt(a, ipTCP, unix.TCP_USER_TIMEOUT, -1)
	}},
	{name: "opt/tcp-on-udp", errPath: true, run: func(r *run) {
		u := r.socket(inet, dgram)
		r.setopt(u, ipTCP, unix.TCP_NODELAY, 1)
		r.getopt(u, ipTCP, unix.TCP_NODELAY)
	}},
	{name: "opt/ip-level", run: func(r *run) {
		a := r.socket(inet, dgram)
		r.getopt(a, ipIP, unix.IP_TTL)
		r.setopt(a, ipIP, unix.IP_TTL, 9)
		r.getopt(a, ipIP, unix.IP_TTL)
		r.getopt(a, ipIP, unix.IP_TOS)
		r.setopt(a, ipIP, unix.IP_TOS, 0x10)
		r.getopt(a, ipIP, unix.IP_TOS)
	}},
	{name: "opt/ip-ttl-range", errPath: true, run: func(r *run) {
		a := r.socket(inet, stream)
		r.setopt(a, ipIP, unix.IP_TTL, 0)
		r.setopt(a, ipIP, unix.IP_TTL, 256)
	}},
	{name: "opt/ipv6-on-v4", errPath: true, run: func(r *run) {
		a := r.socket(inet, stream)
		r.setopt(a, ipV6, unix.IPV6_V6ONLY, 1)
		r.getopt(a, ipV6, unix.IPV6_V6ONLY)
	}},
	{name: "opt/readonly-and-unknown", errPath: true, run: func(r *run) {
		a := r.socket(inet, stream)
		r.setopt(a, solSock, unix.SO_TYPE, 1)
		r.setopt(a, solSock, unix.SO_ERROR, 1)
		r.setopt(a, 999, 1, 1)
		r.getopt(a, ipTCP, 9999)
	}},
	{name: "opt/bad-fd", errPath: true, run: func(r *run) {
		r.getopt(99999, solSock, unix.SO_TYPE)
		r.setopt(99999, solSock, unix.SO_REUSEADDR, 1)
	}},
	{name: "opt/bufsizes", run: func(r *run) {
		a := r.socket(inet, stream)
		r.setopt(a, solSock, unix.SO_RCVBUF, 65536)
		r.getopt(a, solSock, unix.SO_RCVBUF)
		r.setopt(a, solSock, unix.SO_SNDBUF, 65536)
		r.getopt(a, solSock, unix.SO_SNDBUF)
	}},
	{name: "opt/tcp-info", run: func(r *run) {
		fd, pfd := r.connected(inet)
		info, err := r.s.GetsockoptTCPInfo(fd, ipTCP, unix.TCP_INFO)
		if err != nil {
			r.note("TCP_INFO: %s", errName(err))
			return
		}
		r.note("TCP_INFO: state %d mss>0 %v", info.State, info.Snd_mss > 0)
		r.peerClose(pfd)
		r.read(fd, 1)
		info, _ = r.s.GetsockoptTCPInfo(fd, ipTCP, unix.TCP_INFO)
		r.note("TCP_INFO after FIN: state %d", info.State)
	}},
	{name: "opt/tcp-maxseg", run: func(r *run) {
		fd, _ := r.connected(inet)
		v, err := r.s.GetsockoptInt(fd, ipTCP, unix.TCP_MAXSEG)
		r.note("TCP_MAXSEG in 1400..1460: %v %s", v >= 1400 && v <= 1460, errName(err))
	}},

	// ---- fcntl(2), ioctl(2) ----
	{name: "fcntl/nonblock-roundtrip", run: func(r *run) {
		a := r.socket(inet, stream)
		r.getfl(a)
		r.nonblock(a)
		r.getfl(a)
		r.note("FIONBIO 0: %s", errName(r.s.IoctlSetInt(a, 0x5421, 0)))
		r.getfl(a)
		r.note("FIONBIO 1: %s", errName(r.s.IoctlSetInt(a, 0x5421, 1)))
		r.getfl(a)
	}},
	{name: "fcntl/bad-fd", errPath: true, run: func(r *run) {
		r.getfl(99999)
		r.fionread(99999)
	}},
	{name: "ioctl/fionread-listener", errPath: true, run: func(r *run) {
		r.fionread(r.listener(inet, r.L4(0), 8))
	}},

	// ---- UDP ----
	{name: "udp/sendto-recvfrom", run: func(r *run) {
		p, u := r.udpPair(inet, dgram)
		r.udpExchange(p, u, inet, "hi", "ho", 100)
	}},
	{name: "udp/v6", run: func(r *run) {
		p, u := r.udpPair(inet6, dgram)
		r.udpExchange(p, u, inet6, "hi6", "ho6", 100)
	}},
	{name: "udp/recv-eagain", errPath: true, run: func(r *run) {
		u := r.socket(inet, dgram|nb)
		r.bind(u, r.L4(0))
		r.recvfrom(u, 10, 0)
		v := r.socket(inet, dgram)
		r.bind(v, r.L4(1))
		r.recvfrom(v, 10, unix.MSG_DONTWAIT)
	}},
	{name: "udp/trunc", errPath: true, run: func(r *run) {
		p, u := r.udpPair(inet, dgram)
		r.peerSendTo(p, "0123456789", r.L4(0))
		r.peerSendTo(p, "abcdefghij", r.L4(0))
		r.waitIn(u)
		r.recvfrom(u, 4, unix.MSG_TRUNC)
		b := make([]byte, 4)
		n, fl, from, err := r.s.RecvMsg(u, [][]byte{b[:2], b[2:]}, 0)
		r.note("recvmsg: %d flags TRUNC=%v %q from %s %s", n, fl&unix.MSG_TRUNC != 0, b, r.sym(from), errName(err))
	}},
	{name: "udp/peek", run: func(r *run) {
		p, u := r.udpPair(inet, dgram)
		r.peerSendTo(p, "one", r.L4(0))
		r.peerSendTo(p, "two", r.L4(0))
		r.waitIn(u)
		r.recvfrom(u, 100, unix.MSG_PEEK)
		r.recvfrom(u, 100, 0)
		r.waitIn(u)
		r.fionread(u)
		r.recvfrom(u, 100, 0)
	}},
	{name: "udp/connected", run: func(r *run) {
		p, u := r.udpPair(inet, dgram)
		r.connect(u, r.P4(10))
		r.peername(u)
		r.write(u, "conn")
		r.peerRecvFrom(p)
		r.peerSendTo(p, "back", r.L4(0))
		r.read(u, 100)
	}},
	{name: "udp/connected-filters-others", errPath: true, run: func(r *run) {
		p := r.peerUDP(inet, r.P4(10))
		other := r.peerUDP(inet, r.P4(11))
		u := r.socket(inet, dgram|nb)
		r.bind(u, r.L4(0))
		r.connect(u, r.P4(10))
		r.peerSendTo(other, "stranger", r.L4(0))
		r.settle()
		r.recvfrom(u, 100, 0)
		r.peerSendTo(p, "friend", r.L4(0))
		r.waitIn(u)
		r.recvfrom(u, 100, 0)
	}},
	{name: "udp/connected-refused", errPath: true, run: func(r *run) {
		u := r.socket(inet, dgram)
		r.connect(u, r.P4(12))
		r.write(u, "anyone?")
		r.waitIn(u) // the ICMP error arrived
		r.recvfrom(u, 100, unix.MSG_DONTWAIT)
	}},
	{name: "udp/send-no-destination", errPath: true, run: func(r *run) {
		u := r.socket(inet, dgram)
		r.write(u, "x")
		r.sendto(u, "x", 0, nil)
	}},
	{name: "udp/getpeername-unconnected", errPath: true, run: func(r *run) {
		r.peername(r.socket(inet, dgram))
		r.peername(r.socket(inet6, stream))
	}},
	{name: "udp/broadcast-denied", errPath: true, run: func(r *run) {
		u := r.socket(inet, dgram)
		r.sendto(u, "all", 0, addr4(bcast4, r.p(10)))
	}},
	{name: "udp/broadcast", run: func(r *run) {
		p := r.peerUDP(inet, r.Any4(10))
		u := r.socket(inet, dgram)
		r.bind(u, r.L4(0))
		r.setopt(u, solSock, unix.SO_BROADCAST, 1)
		r.sendto(u, "all", 0, addr4(bcast4, r.p(10)))
		r.peerRecvFrom(p)
	}},
	{name: "udp/emsgsize", errPath: true, run: func(r *run) {
		u := r.socket(inet, dgram)
		n, err := r.s.SendTo(u, make([]byte, 70000), 0, r.P4(10))
		r.note("sendto 70000: %d %s", n, errName(err))
		v := r.socket(inet6, dgram)
		n, err = r.s.SendTo(v, make([]byte, 65536), 0, r.P6(10))
		r.note("sendto6 65536: %d %s", n, errName(err))
	}},
	{name: "udp/dualstack-sendto-v4", run: func(r *run) {
		p := r.peerUDP(inet, r.P4(10))
		u := r.socket(inet6, dgram)
		r.bind(u, r.Any6(0))
		r.sendto(u, "mapped", 0, r.Mapped4(r.env.rig.PeerAddr4, 10))
		r.peerRecvFrom(p)
		r.peerSendTo(p, "back", r.L4(0))
		r.waitIn(u)
		r.recvfrom(u, 100, 0)
	}},
	{name: "udp/v6only-sendto-v4", errPath: true, run: func(r *run) {
		u := r.socket(inet6, dgram)
		r.setopt(u, ipV6, unix.IPV6_V6ONLY, 1)
		r.sendto(u, "x", 0, r.Mapped4(r.env.rig.PeerAddr4, 10))
	}},
	{name: "udp/v4-sockaddr-on-v6only", errPath: true, run: func(r *run) {
		u := r.socket(inet6, dgram)
		r.setopt(u, ipV6, unix.IPV6_V6ONLY, 1)
		r.connect(u, r.P4(10))
	}},
	{name: "udp/zero-length", run: func(r *run) {
		p, u := r.udpPair(inet, dgram)
		r.udpExchange(p, u, inet, "", "", 10)
	}},
	{name: "udp/writev-one-datagram", run: func(r *run) {
		p := r.peerUDP(inet, r.P4(10))
		u := r.socket(inet, dgram)
		r.connect(u, r.P4(10))
		n, err := r.s.Writev(u, [][]byte{[]byte("one"), []byte("-"), []byte("datagram")})
		r.note("writev: %d %s", n, errName(err))
		r.peerRecvFrom(p)
		n, err = r.s.SendMsg(u, [][]byte{[]byte("send"), []byte("msg")}, nil, 0)
		r.note("sendmsg: %d %s", n, errName(err))
		r.peerRecvFrom(p)
	}},
	{name: "udp/recv-waitall", errPath: true, run: func(r *run) {
		// MSG_WAITALL has no effect on a datagram socket: one datagram
		// per receive, and EAGAIN when there is none.
		p, u := r.udpPair(inet, dgram|nb)
		r.recvfrom(u, 10, unix.MSG_WAITALL)
		r.peerSendTo(p, "one", r.L4(0))
		r.peerSendTo(p, "two", r.L4(0))
		r.waitIn(u)
		r.settle()
		r.recvfrom(u, 10, unix.MSG_WAITALL)
		r.recvfrom(u, 10, unix.MSG_WAITALL)
	}},
	{name: "udp/recv-oob", errPath: true, differs: "xstack refuses MSG_OOB with EOPNOTSUPP (gVisor has no urgent data); Linux ignores it on UDP",
		run: func(r *run) {
			u := r.socket(inet, dgram|nb)
			r.bind(u, r.L4(0))
			r.recvfrom(u, 10, unix.MSG_OOB)
		}},
	{name: "udp/send-more", differs: "xstack ignores MSG_MORE on UDP and sends each datagram at once; Linux holds the data and sends it with the next send without MSG_MORE, as one datagram",
		run: func(r *run) {
			p := r.peerUDP(inet, r.P4(10))
			u := r.socket(inet, dgram)
			r.connect(u, r.P4(10))
			r.sendto(u, "more-", unix.MSG_MORE, nil)
			r.peerRecvFromNow(p)
			r.sendto(u, "last", 0, nil)
			r.peerRecvFrom(p)
		}},
	// ---- epoll ----
	{name: "epoll/level-triggered", run: func(r *run) {
		fd, pfd, ep := r.watched(in)
		r.epollWait(ep, 0)
		r.peerSend(pfd, "x")
		r.epollWait(ep, 3000)
		r.epollWait(ep, 0)
		r.readN(fd, 10)
		r.epollWait(ep, 0)
	}},
	{name: "epoll/edge-triggered", run: func(r *run) {
		fd, pfd, ep := r.watched(in | et)
		r.peerSend(pfd, "a")
		r.epollWait(ep, 3000)
		r.epollWait(ep, 100)
		r.peerSend(pfd, "b")
		r.epollWait(ep, 3000)
		r.readN(fd, 10)
		r.epollWait(ep, 0)
	}},
	{name: "epoll/oneshot-rearm", run: func(r *run) {
		fd, pfd, ep := r.watched(in | oneshot)
		r.peerSend(pfd, "a")
		r.epollWait(ep, 3000)
		r.peerSend(pfd, "b")
		r.settle()
		r.epollWait(ep, 0)
		r.epollCtl(ep, ctlMod, fd, in|oneshot)
		r.epollWait(ep, 0)
		r.epollWait(ep, 0)
	}},
	{name: "epoll/rdhup-on-peer-fin", run: func(r *run) {
		_, pfd, ep := r.watched(in | rdhup)
		r.peerShutdown(pfd, unix.SHUT_WR)
		r.epollWait(ep, 3000)
	}},
	{name: "epoll/err-hup-on-reset", errPath: true, run: func(r *run) {
		fd, pfd, ep := r.watched(in | out | rdhup)
		r.epollWait(ep, 0)
		r.peerReset(pfd)
		r.waitIn(fd) // the reset arrived
		r.epollWait(ep, 3000)
		r.soError(fd)
		r.epollWait(ep, 0)
	}},
	{name: "epoll/out-and-fresh-socket", run: func(r *run) {
		fd, _ := r.connected(inet)
		fresh := r.socket(inet, stream)
		ep := r.epoll()
		r.epollCtl(ep, ctlAdd, fd, in|out)
		r.epollCtl(ep, ctlAdd, fresh, in|out)
		r.epollWait(ep, 0)
	}},
	{name: "epoll/ctl-errors", errPath: true, run: func(r *run) {
		a := r.socket(inet, stream)
		b := r.socket(inet, stream)
		ep := r.epoll()
		r.epollCtl(ep, ctlAdd, a, in)
		r.epollCtl(ep, ctlAdd, a, in)
		r.epollCtl(ep, ctlMod, b, in)
		r.epollCtl(ep, ctlDel, b, 0)
		r.epollCtl(ep, 99, a, in)
		r.epollCtl(ep, ctlAdd, ep, in)
		r.epollCtl(a, ctlAdd, b, in)
		r.epollCtl(ep, ctlAdd, 99999, in)
		r.epollCtl(99999, ctlAdd, a, in)
	}},
	{name: "epoll/closed-fd", errPath: true, run: func(r *run) {
		fd, pfd, ep := r.watched(in)
		r.peerSend(pfd, "x")
		r.epollWait(ep, 3000)
		r.close(fd)
		r.epollWait(ep, 0)
		r.epollCtl(ep, ctlDel, fd, 0)
	}},
	{name: "epoll/wait-bad", errPath: true, run: func(r *run) {
		a := r.socket(inet, stream)
		_, err := r.s.EpollWait(a, make([]unix.EpollEvent, 1), 0)
		r.note("epoll_wait on socket: %s", errName(err))
		_, err = r.s.EpollWait(99999, make([]unix.EpollEvent, 1), 0)
		r.note("epoll_wait bad fd: %s", errName(err))
		ep := r.epoll()
		_, err = r.s.EpollWait(ep, nil, 0)
		r.note("epoll_wait no room: %s", errName(err))
	}},
	{name: "epoll/listener", run: func(r *run) {
		l := r.listener(inet, r.Any4(0), 8)
		ep := r.epoll()
		r.epollCtl(ep, ctlAdd, l, in)
		r.epollWait(ep, 0)
		r.peerConnect(inet, 0)
		r.epollWait(ep, 3000)
	}},
	{name: "epoll/connect-completion", errPath: true, run: func(r *run) {
		lfd := r.peerListen(inet, 10)
		a := r.socket(inet, stream|nb)
		ep := r.epoll()
		r.epollCtl(ep, ctlAdd, a, out)
		r.connect(a, r.P4(10))
		r.epollWait(ep, 3000)
		r.soError(a)
		r.peerAccept(lfd)
	}},
	{name: "epoll/connect-refused", errPath: true, run: func(r *run) {
		a := r.socket(inet, stream|nb)
		ep := r.epoll()
		r.epollCtl(ep, ctlAdd, a, in|out)
		r.connect(a, r.P4(1))
		r.epollWait(ep, 3000)
		r.soError(a)
		r.epollWait(ep, 0)
	}},
	{name: "epoll/udp", run: func(r *run) {
		p, u := r.udpPair(inet, dgram)
		ep := r.epoll()
		r.epollCtl(ep, ctlAdd, u, in|out)
		r.epollWait(ep, 0)
		r.peerSendTo(p, "x", r.L4(0))
		r.waitIn(u)
		r.epollWait(ep, 0)
	}},
	{name: "epoll/et-out-after-full", errPath: true, run: func(r *run) {
		fd, pfd := r.connected(inet)
		r.nonblock(fd)
		r.setopt(fd, solSock, unix.SO_SNDBUF, 4096)
		ep := r.epoll()
		r.epollCtl(ep, ctlAdd, fd, out|et)
		r.epollWait(ep, 0)
		big := make([]byte, 1<<16)
		total, eagain := 0, false
		for i := 0; i < 1000 && !eagain; i++ {
			n, err := r.s.Write(fd, big)
			total += n
			eagain = err == unix.EAGAIN
		}
		r.note("filled until EAGAIN: %v", eagain)
		r.epollWait(ep, 0)
		// The peer drains: EPOLLOUT fires again, once.
		go func() {
			b := make([]byte, 1<<16)
			for total > 0 {
				n, err := unix.Read(pfd, b)
				if err != nil && err != unix.EINTR {
					return
				}
				total -= n
			}
		}()
		r.epollWait(ep, 3000)
	}},

	// ---- poll(2) ----
	{name: "poll/events", errPath: true, run: func(r *run) {
		fd, pfd := r.connected(inet)
		r.poll(fd, unix.POLLIN, 0)
		r.poll(fd, unix.POLLIN|unix.POLLOUT, 0)
		r.peerSend(pfd, "x")
		r.poll(fd, unix.POLLIN, 3000)
		r.poll(99999, unix.POLLIN, 0)
		fds := []unix.PollFd{{Fd: -1, Events: unix.POLLIN}}
		n, err := r.s.Poll(fds, 0)
		r.note("poll -1: %d %s %d", n, errName(err), fds[0].Revents)
	}},
	{name: "poll/timeout", run: func(r *run) {
		fd, _ := r.connected(inet)
		r.poll(fd, unix.POLLIN, 50)
	}},

	// ---- timeouts, resets, backlog ----
	{name: "timeout/keepalive", errPath: true, run: func(r *run) {
		lfd := r.peerListenAt(inet, addr4(vanishing4, r.p(10)))
		fd := r.socket(inet, stream)
		r.setopt(fd, solSock, unix.SO_KEEPALIVE, 1)
		r.setopt(fd, ipTCP, unix.TCP_KEEPIDLE, 1)
		r.setopt(fd, ipTCP, unix.TCP_KEEPINTVL, 1)
		r.setopt(fd, ipTCP, unix.TCP_KEEPCNT, 2)
		r.connect(fd, addr4(vanishing4, r.p(10)))
		r.peerAccept(lfd)
		r.vanish(vanishing4)
		r.readN(fd, 10) // blocks until the keepalive gives up
		r.readN(fd, 10)
	}},
	{name: "timeout/user-timeout", errPath: true, run: func(r *run) {
		lfd := r.peerListenAt(inet6, addr6(vanishing6, r.p(10)))
		fd := r.socket(inet6, stream)
		r.setopt(fd, ipTCP, unix.TCP_USER_TIMEOUT, 1000)
		r.connect(fd, addr6(vanishing6, r.p(10)))
		r.peerAccept(lfd)
		r.vanish(vanishing6)
		r.write(fd, "lost")
		r.readN(fd, 10)
		r.write(fd, "x")
	}},
	{name: "backlog/overflow", errPath: true, run: func(r *run) {
		l := r.listener(inet, r.Any4(0), 1)
		for range 5 {
			r.peerConnectAsync(inet, 0)
		}
		r.settle()
		r.settle()
		r.nonblock(l)
		n := 0
		for r.accept(l, 0) >= 0 {
			n++
		}
		r.note("accepted %d with backlog 1", n)
	}},
}
