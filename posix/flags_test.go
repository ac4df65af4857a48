package posix_test

import (
	"errors"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/posix"
)

// holdCorked makes corked data stay held for the rest of the test: the
// flush timer waits an hour, so that nothing arriving is a fact rather than
// a matter of timing.
func holdCorked(t *testing.T) {
	t.Cleanup(posix.SetCorkDelay(time.Hour))
}

// nothingArrives checks that fd has no data queued after the stacks have
// had a moment to deliver whatever was sent.
func nothingArrives(t *testing.T, tbl *posix.Sockets, fd int) {
	t.Helper()
	time.Sleep(30 * time.Millisecond)
	if n := must1[int](t)(tbl.IoctlGetInt(fd, unix.SIOCINQ)); n != 0 {
		t.Fatalf("%d bytes arrived, want none", n)
	}
}

// queued waits until at least n bytes are queued for reading on fd.
func queued(t *testing.T, tbl *posix.Sockets, fd, n int) {
	t.Helper()
	eventually(t, "data", func() bool {
		got, _ := tbl.IoctlGetInt(fd, unix.SIOCINQ)
		return got >= n
	})
}

// arrives waits for data on fd and checks that one read returns want.
func arrives(t *testing.T, tbl *posix.Sockets, fd int, want string) {
	t.Helper()
	queued(t, tbl, fd, 1)
	b := make([]byte, 256)
	n, err := tbl.Recv(fd, b, unix.MSG_DONTWAIT)
	must(t, err)
	if string(b[:n]) != want {
		t.Fatalf("read %q, want %q in one read", b[:n], want)
	}
}

func sendMore(t *testing.T, tbl *posix.Sockets, fd int, s string, flags int) {
	t.Helper()
	n, err := tbl.Send(fd, []byte(s), flags)
	must(t, err)
	if n != len(s) {
		t.Fatalf("send %q = %d", s, n)
	}
}

func corkOpt(t *testing.T, tbl *posix.Sockets, fd int) int {
	t.Helper()
	return must1[int](t)(tbl.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_CORK))
}

func TestSendMoreCorks(t *testing.T) {
	holdCorked(t)
	eachFamily(t, func(t *testing.T, e *env, fam family) {
		cfd, sfd := connected(t, e, fam)

		// Uncorked sends go out at once.
		sendMore(t, e.A, cfd, "x", 0)
		arrives(t, e.B, sfd, "x")

		sendMore(t, e.A, cfd, "ab", unix.MSG_MORE)
		sendMore(t, e.A, cfd, "cd", unix.MSG_MORE)
		nothingArrives(t, e.B, sfd)
		if v := corkOpt(t, e.A, cfd); v != 0 {
			t.Errorf("TCP_CORK after MSG_MORE = %d, want 0 (not set by the application)", v)
		}
		sendMore(t, e.A, cfd, "ef", 0)
		arrives(t, e.B, sfd, "abcdef")

		// The cork that MSG_MORE set is over: the next send goes out.
		sendMore(t, e.A, cfd, "g", 0)
		arrives(t, e.B, sfd, "g")

		// Write and SendMsg end it too.
		sendMore(t, e.A, cfd, "h", unix.MSG_MORE)
		nothingArrives(t, e.B, sfd)
		must1[int](t)(e.A.Write(cfd, []byte("i")))
		arrives(t, e.B, sfd, "hi")
		sendMore(t, e.A, cfd, "j", unix.MSG_MORE)
		nothingArrives(t, e.B, sfd)
		must1[int](t)(e.A.SendMsg(cfd, [][]byte{[]byte("k"), []byte("l")}, nil, 0))
		arrives(t, e.B, sfd, "jkl")

		// A send without MSG_MORE that queues nothing releases
		// nothing, as on Linux.
		sendMore(t, e.A, cfd, "m", unix.MSG_MORE)
		sendMore(t, e.A, cfd, "", 0)
		nothingArrives(t, e.B, sfd)
		sendMore(t, e.A, cfd, "n", 0)
		arrives(t, e.B, sfd, "mn")
	})
}

func TestSendMoreFlushTimer(t *testing.T) {
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	// Held data nothing releases goes out by itself, every time (gVisor's
	// own cork timer fires only the first time a connection corks).
	for _, s := range []string{"one", "two", "three"} {
		sendMore(t, e.A, cfd, s, unix.MSG_MORE)
		arrives(t, e.B, sfd, s)
	}
	must(t, e.A.SetsockoptInt(cfd, unix.IPPROTO_TCP, unix.TCP_CORK, 1))
	for _, s := range []string{"four", "five"} {
		sendMore(t, e.A, cfd, s, 0)
		arrives(t, e.B, sfd, s)
	}
	if v := corkOpt(t, e.A, cfd); v != 1 {
		t.Errorf("TCP_CORK after the timer flushed = %d, want 1", v)
	}
}

func TestSendMoreFlushTimerRestarts(t *testing.T) {
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	// A cork that ends stops the timer: the next one gets its full 200 ms,
	// however soon it follows.
	sendMore(t, e.A, cfd, "a", unix.MSG_MORE)
	sendMore(t, e.A, cfd, "b", 0)
	arrives(t, e.B, sfd, "ab")
	time.Sleep(150 * time.Millisecond)
	start := time.Now()
	sendMore(t, e.A, cfd, "c", unix.MSG_MORE)
	time.Sleep(100 * time.Millisecond)
	n := must1[int](t)(e.B.IoctlGetInt(sfd, unix.SIOCINQ))
	if elapsed := time.Since(start); elapsed < 180*time.Millisecond && n != 0 {
		t.Fatalf("%d bytes arrived %v after the send with MSG_MORE, want none before 200 ms", n, elapsed)
	}
	arrives(t, e.B, sfd, "c")
}

func TestSendMoreAndTCPCork(t *testing.T) {
	holdCorked(t)
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	setCork := func(v int) { must(t, e.A.SetsockoptInt(cfd, unix.IPPROTO_TCP, unix.TCP_CORK, v)) }

	// TCP_CORK set after MSG_MORE takes the cork over: a send without
	// MSG_MORE no longer releases it.
	sendMore(t, e.A, cfd, "a", unix.MSG_MORE)
	setCork(1)
	if v := corkOpt(t, e.A, cfd); v != 1 {
		t.Errorf("TCP_CORK = %d, want 1", v)
	}
	sendMore(t, e.A, cfd, "b", 0)
	nothingArrives(t, e.B, sfd)
	setCork(0)
	arrives(t, e.B, sfd, "ab")

	// Clearing TCP_CORK ends a cork that MSG_MORE set.
	sendMore(t, e.A, cfd, "c", unix.MSG_MORE)
	setCork(0)
	arrives(t, e.B, sfd, "c")
	sendMore(t, e.A, cfd, "d", 0)
	arrives(t, e.B, sfd, "d")

	// Under TCP_CORK, MSG_MORE changes nothing: the cork stays the
	// application's after a send without MSG_MORE.
	setCork(1)
	sendMore(t, e.A, cfd, "e", unix.MSG_MORE)
	sendMore(t, e.A, cfd, "f", 0)
	nothingArrives(t, e.B, sfd)
	if v := corkOpt(t, e.A, cfd); v != 1 {
		t.Errorf("TCP_CORK = %d, want 1", v)
	}
	setCork(0)
	arrives(t, e.B, sfd, "ef")
	if v := corkOpt(t, e.A, cfd); v != 0 {
		t.Errorf("TCP_CORK = %d, want 0", v)
	}
}

func TestCorkedDataFlushedByFIN(t *testing.T) {
	holdCorked(t)
	for _, how := range []string{"shutdown", "close", "tcp-cork-close"} {
		t.Run(how, func(t *testing.T) {
			e := newEnv(t)
			cfd, sfd := connected(t, e, families[0])
			if how == "tcp-cork-close" {
				must(t, e.A.SetsockoptInt(cfd, unix.IPPROTO_TCP, unix.TCP_CORK, 1))
				sendMore(t, e.A, cfd, "held", 0)
			} else {
				sendMore(t, e.A, cfd, "held", unix.MSG_MORE)
			}
			nothingArrives(t, e.B, sfd)
			if how == "shutdown" {
				must(t, e.A.Shutdown(cfd, unix.SHUT_WR))
			} else {
				must(t, e.A.CloseFD(cfd))
			}
			b := make([]byte, 16)
			readFull(t, e.B, sfd, b[:4])
			if string(b[:4]) != "held" {
				t.Fatalf("read %q", b[:4])
			}
			if n, err := e.B.Read(sfd, b); n != 0 || err != nil {
				t.Fatalf("read after the data = %d, %v, want EOF", n, err)
			}
		})
	}
}

func TestSendMoreConcurrent(t *testing.T) {
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	const senders, sends = 4, 200
	var wg sync.WaitGroup
	for i := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range sends {
				flags := 0
				if (i+j)%2 == 0 {
					flags = unix.MSG_MORE
				}
				if _, err := e.A.Send(cfd, []byte("0123456789"), flags); err != nil {
					t.Error(err)
					return
				}
				if j%50 == 0 {
					e.A.SetsockoptInt(cfd, unix.IPPROTO_TCP, unix.TCP_CORK, j%100/50)
					e.A.GetsockoptInt(cfd, unix.IPPROTO_TCP, unix.TCP_CORK)
				}
			}
		}()
	}
	total := senders * sends * 10
	got := make(chan int)
	go func() {
		b := make([]byte, 4096)
		n := 0
		for n < total {
			m, err := e.B.Read(sfd, b)
			if err != nil || m == 0 {
				break
			}
			n += m
		}
		got <- n
	}()
	wg.Wait()
	must(t, e.A.SetsockoptInt(cfd, unix.IPPROTO_TCP, unix.TCP_CORK, 0))
	sendMore(t, e.A, cfd, "", 0)
	if n := <-got; n != total {
		t.Fatalf("received %d bytes, want %d", n, total)
	}
	if v := corkOpt(t, e.A, cfd); v != 0 {
		t.Errorf("TCP_CORK = %d, want 0", v)
	}
}

func TestUDPSendMoreIgnored(t *testing.T) {
	e := newEnv(t)
	fam := families[0]
	rfd, sfd := udpPair(t, e, fam, 9100)
	must1[int](t)(e.A.SendTo(sfd, []byte("one"), unix.MSG_MORE, fam.b(9100)))
	must1[int](t)(e.A.SendTo(sfd, []byte("two"), unix.MSG_MORE|unix.MSG_EOR, fam.b(9100)))
	b := make([]byte, 64)
	for _, want := range []string{"one", "two"} {
		n, _, err := e.B.RecvFrom(rfd, b, 0)
		must(t, err)
		if string(b[:n]) != want {
			t.Fatalf("datagram %q, want %q", b[:n], want)
		}
	}
}

// wantRecv fails t unless Recv on fd into b with flags returns want.
func wantRecv(t *testing.T, tbl *posix.Sockets, fd int, b []byte, flags int, want string) {
	t.Helper()
	n, err := tbl.Recv(fd, b, flags)
	must(t, err)
	if string(b[:n]) != want {
		t.Fatalf("recv into %d bytes, flags %#x = %q, want %q", len(b), flags, b[:n], want)
	}
}

// sendPieces sends the pieces on fd from another goroutine, a little
// apart, and then runs after (if not nil).
func sendPieces(t *testing.T, tbl *posix.Sockets, fd int, after func(), pieces ...string) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, p := range pieces {
			time.Sleep(20 * time.Millisecond)
			if _, err := tbl.Write(fd, []byte(p)); err != nil {
				t.Error(err)
				return
			}
		}
		if after != nil {
			after()
		}
	}()
	t.Cleanup(wg.Wait)
	return &wg
}

func TestRecvWaitAll(t *testing.T) {
	eachFamily(t, func(t *testing.T, e *env, fam family) {
		cfd, sfd := connected(t, e, fam)

		sendPieces(t, e.A, cfd, nil, "ab", "cd", "ef")
		b := make([]byte, 6)
		wantRecv(t, e.B, sfd, b, unix.MSG_WAITALL, "abcdef")

		// Into several buffers.
		sendPieces(t, e.A, cfd, nil, "gh", "ijk", "l").Wait()
		iovs := [][]byte{make([]byte, 1), {}, make([]byte, 4), make([]byte, 1)}
		sendPieces(t, e.A, cfd, nil, "mn")
		n, _, _, err := e.B.RecvMsg(sfd, iovs, unix.MSG_WAITALL)
		must(t, err)
		if n != 6 || string(iovs[0])+string(iovs[2])+string(iovs[3]) != "ghijkl" {
			t.Fatalf("recvmsg = %d %q", n, iovs)
		}
		readFull(t, e.B, sfd, b[:2])
		if string(b[:2]) != "mn" {
			t.Fatalf("read %q", b[:2])
		}
	})
}

func TestRecvWaitAllEOF(t *testing.T) {
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	sendPieces(t, e.A, cfd, func() { e.A.Shutdown(cfd, unix.SHUT_WR) }, "ab", "c")
	b := make([]byte, 10)
	wantRecv(t, e.B, sfd, b, unix.MSG_WAITALL, "abc")
	if n, err := e.B.Recv(sfd, b, unix.MSG_WAITALL); n != 0 || err != nil {
		t.Fatalf("recv at EOF = %d, %v", n, err)
	}
}

func TestRecvWaitAllReset(t *testing.T) {
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	reset := func() {
		time.Sleep(20 * time.Millisecond)
		must(t, e.A.SetsockoptLinger(cfd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1}))
		must(t, e.A.CloseFD(cfd))
	}
	sendPieces(t, e.A, cfd, reset, "ab")
	b := make([]byte, 10)
	wantRecv(t, e.B, sfd, b, unix.MSG_WAITALL, "ab")
	// The reset is the next call's error, as on Linux.
	_, err := e.B.Recv(sfd, b, unix.MSG_WAITALL)
	wantErrno(t, "recv after reset", err, unix.ECONNRESET)
}

func TestRecvWaitAllDeadline(t *testing.T) {
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	sendMore(t, e.A, cfd, "abc", 0)
	queued(t, e.B, sfd, 3)
	// Part of the buffer, then the deadline: the part.
	dl := make(chan struct{})
	time.AfterFunc(50*time.Millisecond, func() { close(dl) })
	b := make([]byte, 10)
	n, err := e.B.RecvDeadline(sfd, b, unix.MSG_WAITALL, dl)
	must(t, err)
	if string(b[:n]) != "abc" {
		t.Fatalf("recv = %q, want abc", b[:n])
	}
	// Nothing, then the deadline: the error.
	dl = make(chan struct{})
	time.AfterFunc(20*time.Millisecond, func() { close(dl) })
	if _, err := e.B.RecvDeadline(sfd, b, unix.MSG_WAITALL, dl); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("recv with nothing = %v, want the deadline", err)
	}
}

func TestRecvWaitAllCloseFD(t *testing.T) {
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	sendMore(t, e.A, cfd, "ab", 0)
	queued(t, e.B, sfd, 2)
	time.AfterFunc(30*time.Millisecond, func() { e.B.CloseFD(sfd) })
	b := make([]byte, 10)
	wantRecv(t, e.B, sfd, b, unix.MSG_WAITALL, "ab")
}

func TestRecvWaitAllNonblocking(t *testing.T) {
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	b := make([]byte, 10)
	_, err := e.B.Recv(sfd, b, unix.MSG_WAITALL|unix.MSG_DONTWAIT)
	wantErrno(t, "recv nothing", err, unix.EAGAIN)
	sendMore(t, e.A, cfd, "ab", 0)
	queued(t, e.B, sfd, 2)
	wantRecv(t, e.B, sfd, b, unix.MSG_WAITALL|unix.MSG_DONTWAIT, "ab")

	// O_NONBLOCK works as MSG_DONTWAIT does.
	must(t, e.B.IoctlSetInt(sfd, posix.FIONBIO, 1))
	_, err = e.B.Recv(sfd, b, unix.MSG_WAITALL)
	wantErrno(t, "recv nothing on O_NONBLOCK", err, unix.EAGAIN)
	sendMore(t, e.A, cfd, "cd", 0)
	queued(t, e.B, sfd, 2)
	n, _, err := e.B.RecvFrom(sfd, b, unix.MSG_WAITALL)
	must(t, err)
	if string(b[:n]) != "cd" {
		t.Fatalf("recv = %q, want cd", b[:n])
	}
}

func TestRecvWaitAllPeek(t *testing.T) {
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	sendPieces(t, e.A, cfd, nil, "ab", "cd")
	b := make([]byte, 4)
	wantRecv(t, e.B, sfd, b, unix.MSG_WAITALL|unix.MSG_PEEK, "abcd")
	// The data is still there.
	wantRecv(t, e.B, sfd, b, unix.MSG_WAITALL, "abcd")

	// End of file before the buffer is full: what is queued.
	sendPieces(t, e.A, cfd, func() { e.A.Shutdown(cfd, unix.SHUT_WR) }, "ef")
	b = make([]byte, 10)
	wantRecv(t, e.B, sfd, b, unix.MSG_WAITALL|unix.MSG_PEEK, "ef")
	wantRecv(t, e.B, sfd, b, unix.MSG_WAITALL, "ef")
}

func TestUDPRecvWaitAll(t *testing.T) {
	e := newEnv(t)
	fam := families[0]
	rfd, sfd := udpPair(t, e, fam, 9101)
	b := make([]byte, 64)
	_, _, err := e.B.RecvFrom(rfd, b, unix.MSG_WAITALL|unix.MSG_DONTWAIT)
	wantErrno(t, "recv nothing", err, unix.EAGAIN)
	must1[int](t)(e.A.SendTo(sfd, []byte("one"), 0, fam.b(9101)))
	must1[int](t)(e.A.SendTo(sfd, []byte("two"), 0, fam.b(9101)))
	for _, want := range []string{"one", "two"} {
		n, _, err := e.B.RecvFrom(rfd, b, unix.MSG_WAITALL)
		must(t, err)
		if string(b[:n]) != want {
			t.Fatalf("datagram %q, want %q", b[:n], want)
		}
	}
}

func TestRecvOOBNotSupported(t *testing.T) {
	e := newEnv(t)
	_, sfd := connected(t, e, families[0])
	_, err := e.B.Recv(sfd, make([]byte, 4), unix.MSG_OOB)
	wantErrno(t, "recv MSG_OOB", err, unix.EOPNOTSUPP)
}

func TestAllocsWaitAllAndMore(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts need a quiet process")
	}
	e, cfd, sfd, _ := steady(t)
	// A blocking MSG_WAITALL receive that finds its buffer's worth queued.
	must(t, e.B.IoctlSetInt(sfd, posix.FIONBIO, 0))
	const runs = 200
	buf := make([]byte, 64)
	big := make([]byte, (runs+1)*len(buf))
	if n, err := e.A.Write(cfd, big); err != nil || n != len(big) {
		t.Fatalf("write = %d, %v", n, err)
	}
	queued(t, e.B, sfd, len(big))
	if a := testing.AllocsPerRun(runs, func() {
		if n, err := e.B.Recv(sfd, buf, unix.MSG_WAITALL); err != nil || n != len(buf) {
			t.Fatalf("recv = %d, %v", n, err)
		}
	}); a != 0 {
		t.Errorf("Recv(MSG_WAITALL) with data: %v allocs/op, want 0", a)
	}

	// Sends with MSG_MORE on a connection that MSG_MORE corked: the cork
	// costs nothing, and the packets are not built. gVisor's buffer pools
	// refill now and then (after a GC empties them), which can show in
	// every round of one connection: take the best of a few rounds on each
	// of a few fresh connections, as TestAllocsNetConn does.
	t.Cleanup(posix.SetCorkDelay(time.Hour))
	more := 1e9
	for attempt := 0; attempt < 3 && more != 0; attempt++ {
		cfd, _ := connected(t, e, families[0])
		for range 10 {
			e.A.Send(cfd, buf, unix.MSG_MORE)
		}
		for range 5 {
			more = min(more, testing.AllocsPerRun(1000, func() {
				if n, err := e.A.Send(cfd, buf, unix.MSG_MORE); err != nil || n != len(buf) {
					t.Fatalf("send = %d, %v", n, err)
				}
			}))
		}
		e.A.CloseFD(cfd)
	}
	if more != 0 && !raceEnabled {
		t.Errorf("Send(MSG_MORE) on a corked connection: %v allocs/op, want 0", more)
	}
}
