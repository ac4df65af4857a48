package posix_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/posix"
	"github.com/xstack/xstack/posix/posixtest"
	xstack "github.com/xstack/xstack/stack"
	"github.com/xstack/xstack/stack/stacktest"
)

// tcpBuffers returns s's default TCP send and receive buffer sizes and the
// receive range's maximum.
func tcpBuffers(s *xstack.Stack) (snd, rcv, rcvMax int64) {
	b := s.TCPBuffers()
	return int64(b.SendDefault), int64(b.ReceiveDefault), int64(b.ReceiveMax)
}

// perSocket is what a new TCP socket of s reserves with gVisor's default
// receive auto-tuning on: its send buffer and the largest receive buffer.
func perSocket(s *xstack.Stack) int64 {
	snd, _, rcvMax := tcpBuffers(s)
	return snd + rcvMax
}

func wantReserved(tb testing.TB, what string, t *posix.Sockets, want int64) {
	tb.Helper()
	if got := t.MemReserved(); got != want {
		tb.Fatalf("%s: MemReserved() = %d, want %d", what, got, want)
	}
}

// TestMemReservation checks what a TCP socket reserves: its send buffer
// plus its receive buffer, or plus the receive range's maximum while gVisor
// may auto-tune the receive buffer; SO_SNDBUF and SO_RCVBUF move the
// reservation, Listen and close give it back, UDP sockets reserve nothing.
func TestMemReservation(t *testing.T) {
	for _, moderate := range []bool{true, false} {
		value := "1"
		if !moderate {
			value = "0"
		}
		t.Run("moderate_rcvbuf="+value, func(t *testing.T) {
			e := newEnv(t)
			// No limit, but every reservation is counted.
			must(t, e.B.Stack().SetSysctl("net.inet.tcp.moderate_rcvbuf", value))
			snd, rcv, rcvMax := tcpBuffers(e.B.Stack())
			want := snd + rcv
			if moderate {
				want = snd + rcvMax
			}

			fd := must1[int](t)(e.B.Socket(unix.AF_INET, unix.SOCK_STREAM, 0))
			wantReserved(t, "new TCP socket", e.B, want)
			ufd := must1[int](t)(e.B.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0))
			must(t, e.B.SetsockoptInt(ufd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20))
			wantReserved(t, "with a UDP socket", e.B, want)

			// SO_RCVBUF ends auto-tuning: the receive part is the
			// buffer itself from then on (doubled, as Linux does).
			must(t, e.B.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 64<<10))
			wantReserved(t, "after SO_RCVBUF", e.B, snd+128<<10)
			must(t, e.B.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 32<<10))
			wantReserved(t, "after SO_SNDBUF", e.B, 64<<10+128<<10)

			fd2 := must1[int](t)(e.B.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0))
			wantReserved(t, "second TCP socket", e.B, 64<<10+128<<10+want)
			must(t, e.B.Bind(fd2, &unix.SockaddrInet6{Addr: stacktest.AddrB6, Port: 7}))
			must(t, e.B.Listen(fd2, 8))
			wantReserved(t, "after Listen", e.B, 64<<10+128<<10)
			// A listener's buffers are not reserved.
			must(t, e.B.SetsockoptInt(fd2, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20))
			wantReserved(t, "after SO_SNDBUF on the listener", e.B, 64<<10+128<<10)

			must(t, e.B.CloseFD(fd))
			must(t, e.B.CloseFD(fd2))
			must(t, e.B.CloseFD(ufd))
			wantReserved(t, "after closing everything", e.B, 0)
			if n := e.B.MemRefused(); n != 0 {
				t.Errorf("MemRefused() = %d with no limit", n)
			}
		})
	}
}

// TestMemLimitSocket fills net.inet.tcp.mem_limit with TCP sockets: the
// next Socket fails with ENOBUFS and creates nothing, UDP sockets and epoll
// instances still work, and a close makes room again.
func TestMemLimitSocket(t *testing.T) {
	e := newEnv(t)
	per := perSocket(e.B.Stack())
	posixtest.SetMemLimit(t, e.B, 2*per)

	fd1 := must1[int](t)(e.B.Socket(unix.AF_INET, unix.SOCK_STREAM, 0))
	fd2 := must1[int](t)(e.B.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0))
	wantReserved(t, "at the limit", e.B, 2*per)
	fd, err := e.B.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	wantErrno(t, "Socket at the limit", err, unix.ENOBUFS)
	if fd != -1 {
		t.Errorf("Socket at the limit returned fd %d", fd)
	}
	if n := e.B.MemRefused(); n != 1 {
		t.Errorf("MemRefused() = %d, want 1", n)
	}
	wantReserved(t, "after the refusal", e.B, 2*per)

	// Nothing else is refused.
	ufd := must1[int](t)(e.B.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0))
	epfd := must1[int](t)(e.B.EpollCreate(0))

	must(t, e.B.CloseFD(fd1))
	wantReserved(t, "after a close", e.B, per)
	fd3 := must1[int](t)(e.B.Socket(unix.AF_INET, unix.SOCK_STREAM, 0))
	if fd3 != fd1 {
		t.Errorf("Socket after the close returned fd %d, want the freed %d", fd3, fd1)
	}

	// Lowering the limit below what is reserved refuses new sockets and
	// takes nothing away from the existing ones.
	posixtest.SetMemLimit(t, e.B, per)
	_, err = e.B.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	wantErrno(t, "Socket over a lowered limit", err, unix.ENOBUFS)
	wantReserved(t, "over a lowered limit", e.B, 2*per)

	for _, fd := range []int{fd2, fd3, ufd, epfd} {
		must(t, e.B.CloseFD(fd))
	}
	wantReserved(t, "after closing everything", e.B, 0)
	must(t, e.B.CloseFD(must1[int](t)(e.B.Socket(unix.AF_INET, unix.SOCK_STREAM, 0))))
	wantReserved(t, "at the end", e.B, 0)
}

// TestMemLimitAccept holds the server's memory at the limit: Accept fails
// with ENOBUFS (at once, also on a blocking listener) and leaves the
// connection queued; the connection carries data meanwhile, and is accepted
// and works once an accepted socket is closed.
func TestMemLimitAccept(t *testing.T) {
	eachFamily(t, func(t *testing.T, e *env, fam family) {
		per := perSocket(e.B.Stack())
		posixtest.SetMemLimit(t, e.B, per) // one connection

		lfd, port := listen(t, e.B, fam, fam.b, 0)
		wantReserved(t, "with a listener", e.B, 0)
		c1 := must1[int](t)(e.A.Socket(fam.domain, unix.SOCK_STREAM, 0))
		must(t, e.A.Connect(c1, fam.b(port)))
		s1, _, err := e.B.Accept(lfd)
		must(t, err)
		wantReserved(t, "with one connection", e.B, per)

		c2 := must1[int](t)(e.A.Socket(fam.domain, unix.SOCK_STREAM, 0))
		must(t, e.A.Connect(c2, fam.b(port)))
		_, _, err = e.B.Accept(lfd)
		wantErrno(t, "Accept at the limit", err, unix.ENOBUFS)
		_, _, err = e.B.Accept4(lfd, unix.SOCK_NONBLOCK)
		wantErrno(t, "Accept4 at the limit", err, unix.ENOBUFS)
		if n := e.B.MemRefused(); n != 2 {
			t.Errorf("MemRefused() = %d, want 2", n)
		}
		wantReserved(t, "after the refusals", e.B, per)

		// The queued connection is established: its client can
		// send, and the first connection keeps working.
		must1[int](t)(e.A.Write(c2, []byte("queued")))
		must1[int](t)(e.A.Write(c1, []byte("first")))
		buf := make([]byte, 5)
		readFull(t, e.B, s1, buf)
		if string(buf) != "first" {
			t.Fatalf("first connection read %q", buf)
		}

		must(t, e.B.CloseFD(s1))
		wantReserved(t, "after closing the first connection", e.B, 0)
		s2, _, err := e.B.Accept(lfd)
		if err != nil {
			t.Fatalf("Accept after a close: %v; the connection that waited for memory is lost", err)
		}
		wantReserved(t, "with the second connection", e.B, per)
		buf = make([]byte, 6)
		readFull(t, e.B, s2, buf)
		if string(buf) != "queued" {
			t.Fatalf("queued connection read %q", buf)
		}
		must1[int](t)(e.B.Write(s2, []byte("reply")))
		readFull(t, e.A, c2, buf[:5])
		if string(buf[:5]) != "reply" {
			t.Fatalf("client read %q", buf[:5])
		}

		for _, fd := range []int{s2, lfd} {
			must(t, e.B.CloseFD(fd))
		}
		wantReserved(t, "after closing everything", e.B, 0)
	})
}

// TestMemLimitSockopt raises and cuts buffers under the limit: a raise
// that does not fit fails with ENOBUFS and leaves the buffer as it was, a
// raise that fits takes the memory, a cut gives it back.
func TestMemLimitSockopt(t *testing.T) {
	e := newEnv(t)
	snd, _, rcvMax := tcpBuffers(e.B.Stack())
	per := snd + rcvMax
	posixtest.SetMemLimit(t, e.B, per+snd) // room for the send buffer to double

	fd := must1[int](t)(e.B.Socket(unix.AF_INET, unix.SOCK_STREAM, 0))
	sndbuf := func() int { return must1[int](t)(e.B.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)) }
	rcvbuf := func() int { return must1[int](t)(e.B.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)) }
	snd0, rcv0 := sndbuf(), rcvbuf()

	// SO_SNDBUF of the range's maximum becomes twice that: too much.
	wantErrno(t, "SO_SNDBUF over the limit", e.B.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, int(rcvMax)), unix.ENOBUFS)
	if got := sndbuf(); got != snd0 {
		t.Errorf("SO_SNDBUF = %d after a refused raise, want %d", got, snd0)
	}
	wantErrno(t, "SO_RCVBUF over the limit", e.B.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, int(rcvMax)), unix.ENOBUFS)
	if got := rcvbuf(); got != rcv0 {
		t.Errorf("SO_RCVBUF = %d after a refused raise, want %d", got, rcv0)
	}
	if n := e.B.MemRefused(); n != 2 {
		t.Errorf("MemRefused() = %d, want 2", n)
	}
	wantReserved(t, "after the refusals", e.B, per)

	// Doubling the send buffer fits exactly.
	must(t, e.B.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, int(snd)))
	if got := sndbuf(); got != 2*int(snd) {
		t.Errorf("SO_SNDBUF = %d, want %d", got, 2*snd)
	}
	wantReserved(t, "after the raise", e.B, 2*snd+rcvMax)
	_, err := e.B.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	wantErrno(t, "Socket with the memory taken by SO_SNDBUF", err, unix.ENOBUFS)

	// Cuts give memory back, whatever the limit.
	posixtest.SetMemLimit(t, e.B, 64<<10)
	must(t, e.B.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 8<<10))
	must(t, e.B.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 8<<10))
	wantReserved(t, "after the cuts", e.B, 32<<10)

	// UDP buffers are not counted.
	ufd := must1[int](t)(e.B.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0))
	must(t, e.B.SetsockoptInt(ufd, unix.SOL_SOCKET, unix.SO_RCVBUF, 1<<20))
	wantReserved(t, "after a UDP SO_RCVBUF", e.B, 32<<10)

	must(t, e.B.CloseFD(fd))
	must(t, e.B.CloseFD(ufd))
	wantReserved(t, "after closing everything", e.B, 0)
}

// TestMemLimitSendBufferStays moves data through a connection whose socket
// was reserved under a limit: the transfer is whole and the send buffer
// keeps the size it was reserved at (gVisor's send-buffer auto-tuning is
// off for it), so the reservation still bounds it.
func TestMemLimitSendBufferStays(t *testing.T) {
	e := newEnv(t)
	posixtest.SetMemLimit(t, e.B, 1<<30)
	cfd, sfd := connected(t, e, families[0])
	before := must1[int](t)(e.B.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_SNDBUF))
	reserved := e.B.MemReserved()

	want := bytes.Repeat([]byte("0123456789abcdef"), 512<<10) // 8 MiB
	done := make(chan error, 1)
	go func() {
		_, err := e.B.Write(sfd, want)
		if err == nil {
			err = e.B.Shutdown(sfd, unix.SHUT_WR)
		}
		done <- err
	}()
	got := make([]byte, 0, len(want))
	buf := make([]byte, 64<<10)
	for {
		n, err := e.A.Read(cfd, buf)
		must(t, err)
		if n == 0 {
			break
		}
		got = append(got, buf[:n]...)
	}
	must(t, <-done)
	if !bytes.Equal(got, want) {
		t.Fatalf("received %d of %d bytes (equal %v)", len(got), len(want), bytes.Equal(got, want))
	}
	if after := must1[int](t)(e.B.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_SNDBUF)); after != before {
		t.Errorf("SO_SNDBUF grew from %d to %d under a memory limit", before, after)
	}
	wantReserved(t, "after the transfer", e.B, reserved)
	must(t, e.B.CloseFD(sfd))
	must(t, e.A.CloseFD(cfd))
	wantReserved(t, "after the close", e.B, 0)
}

// TestMemCounters checks the counters an lcore reports for the table.
func TestMemCounters(t *testing.T) {
	e := newEnv(t)
	per := perSocket(e.B.Stack())
	posixtest.SetMemLimit(t, e.B, per)
	fd := must1[int](t)(e.B.Socket(unix.AF_INET, unix.SOCK_STREAM, 0))
	_, err := e.B.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	wantErrno(t, "second Socket", err, unix.ENOBUFS)
	got := map[string]uint64{}
	for _, c := range e.B.Counters() {
		got[c.Name] = c.Value
	}
	if got["tcp.mem_reserved"] != uint64(per) || got["tcp.mem_refused"] != 1 || len(got) != 2 {
		t.Errorf("Counters() = %v, want tcp.mem_reserved %d and tcp.mem_refused 1", got, per)
	}
	must(t, e.B.CloseFD(fd))
}

// TestMemLimitNetListener checks the net.Listener adapter at the limit:
// Accept fails with an ENOBUFS error that says it is temporary (so that
// net/http's Serve backs off instead of giving up), the connection stays
// queued, and the next Accept after a close returns it.
func TestMemLimitNetListener(t *testing.T) {
	e := newEnv(t)
	posixtest.SetMemLimit(t, e.B, perSocket(e.B.Stack()))
	ln, err := e.B.NetListen("tcp4", "198.18.0.2:0")
	must(t, err)
	defer ln.Close()
	addr := ln.Addr().String()
	c1, err := e.A.NetDial(context.Background(), "tcp", addr)
	must(t, err)
	defer c1.Close()
	s1, err := ln.Accept()
	must(t, err)
	c2, err := e.A.NetDial(context.Background(), "tcp", addr)
	must(t, err)
	defer c2.Close()
	_, err = ln.Accept()
	var ne net.Error
	if !errors.Is(err, unix.ENOBUFS) || !errors.As(err, &ne) || !ne.Temporary() {
		t.Fatalf("Accept at the limit: %v, want a temporary ENOBUFS", err)
	}
	must1[int](t)(c2.Write([]byte("queued")))
	must(t, s1.Close())
	s2, err := ln.Accept()
	must(t, err)
	defer s2.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(s2, buf); err != nil || string(buf) != "queued" {
		t.Fatalf("queued connection read %q, %v", buf, err)
	}
}
