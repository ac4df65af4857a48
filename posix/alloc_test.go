package posix_test

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/posix"
)

// steady sets up a connected non-blocking pair with the client in an epoll
// set, warmed up so that gVisor's pools and the sockets' scratch state exist.
func steady(tb testing.TB) (e *env, cfd, sfd, ep int) {
	e = newEnv(tb)
	cfd, sfd = connected(tb, e, families[0])
	must(tb, e.A.IoctlSetInt(cfd, posix.FIONBIO, 1))
	must(tb, e.B.IoctlSetInt(sfd, posix.FIONBIO, 1))
	ep = epollAdd(tb, e.B, -1, sfd, unix.EPOLLIN)
	msg := make([]byte, 64)
	for range 100 {
		roundTrip(tb, e, cfd, sfd, ep, msg)
	}
	return e, cfd, sfd, ep
}

// roundTrip writes msg on cfd, waits for it on sfd through epoll (msec 0,
// spinning like the lcore loop does) and reads it.
func roundTrip(tb testing.TB, e *env, cfd, sfd, ep int, msg []byte) {
	var evs [8]unix.EpollEvent
	if n, err := e.A.Write(cfd, msg); err != nil || n != len(msg) {
		tb.Fatalf("write = %d, %v", n, err)
	}
	for got := 0; got < len(msg); {
		if n, err := e.B.EpollWait(ep, evs[:], 0); err != nil || n == 0 {
			// Yield as the lcore loop does once per pass, so gVisor's
			// goroutines run even with GOMAXPROCS=1.
			runtime.Gosched()
			continue
		}
		n, err := e.B.Read(sfd, msg[got:])
		if err == unix.EAGAIN {
			continue
		}
		if err != nil || n == 0 {
			tb.Fatalf("read = %d, %v", n, err)
		}
		got += n
	}
}

func TestAllocsHotPath(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts need a quiet process")
	}
	e, cfd, sfd, ep := steady(t)
	buf := make([]byte, 64)
	var evs [8]unix.EpollEvent

	// Would-block paths: nothing to read, nothing ready.
	if a := testing.AllocsPerRun(1000, func() { e.B.Read(sfd, buf) }); a != 0 {
		t.Errorf("Read (EAGAIN): %v allocs/op, want 0", a)
	}
	if a := testing.AllocsPerRun(1000, func() { e.B.EpollWait(ep, evs[:], 0) }); a != 0 {
		t.Errorf("EpollWait(0) idle: %v allocs/op, want 0", a)
	}
	// Level-triggered ready item: reported on every call.
	epA := epollAdd(t, e.A, -1, cfd, unix.EPOLLOUT)
	if a := testing.AllocsPerRun(1000, func() {
		if n, _ := e.A.EpollWait(epA, evs[:], 0); n != 1 {
			t.Fatalf("EpollWait = %d", n)
		}
	}); a != 0 {
		t.Errorf("EpollWait(0) ready: %v allocs/op, want 0", a)
	}
	// Read with data queued.
	readAllocs := readAllocsWithData(t, e, cfd, sfd, buf)
	if readAllocs != 0 {
		t.Errorf("Read with data: %v allocs/op, want 0", readAllocs)
	}
}

// TestAllocsAccept checks posix's share of a served connection's set-up:
// Accept4 and the EPOLL_CTL_ADD that follows it allocate one object, the
// socket, which holds its table entry, its first epoll registration and
// the peer address returned. gVisor takes an established connection off
// its accept queue without allocating.
func TestAllocsAccept(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts need a quiet process")
	}
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	e := newEnv(t)
	fam := families[0]
	lfd, port := listen(t, e.B, fam, fam.b, 0)
	must(t, e.B.IoctlSetInt(lfd, posix.FIONBIO, 1))
	ep := must1[int](t)(e.B.EpollCreate(0))
	established := e.B.Stack().Stats().TCP.CurrentEstablished
	const runs = 50
	// queue connects runs+1 clients (AllocsPerRun makes one warm-up run)
	// and waits until the server has them all established.
	queue := func() {
		want := established.Value() + runs + 1
		for range runs + 1 {
			cfd := must1[int](t)(e.A.Socket(fam.domain, unix.SOCK_STREAM, 0))
			must(t, e.A.Connect(cfd, fam.b(port)))
		}
		eventually(t, "connections established", func() bool { return established.Value() >= want })
	}
	var fds []int
	acceptAdd := func() {
		for {
			fd, _, err := e.B.Accept4(lfd, unix.SOCK_NONBLOCK)
			if err == unix.EAGAIN {
				runtime.Gosched() // the last ACK may still be on its way
				continue
			}
			if err != nil {
				t.Fatalf("accept: %v", err)
			}
			if err := e.B.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
				t.Fatalf("EPOLL_CTL_ADD: %v", err)
			}
			fds = append(fds, fd)
			return
		}
	}
	// A first round grows the descriptor table, the epoll set and fds.
	queue()
	for range runs + 1 {
		acceptAdd()
	}
	for _, fd := range fds {
		must(t, e.B.CloseFD(fd))
	}
	fds = fds[:0]
	queue()
	if a := testing.AllocsPerRun(runs, acceptAdd); a != 1 {
		t.Errorf("Accept4 + EPOLL_CTL_ADD: %v allocs/op, want 1 (the socket)", a)
	}
}

// readAllocsWithData measures Read alone: data is queued first (a large
// write the peer buffers), then consumed in small reads under AllocsPerRun.
func readAllocsWithData(t *testing.T, e *env, cfd, sfd int, buf []byte) float64 {
	const runs = 200
	big := make([]byte, (runs+1)*len(buf))
	if n, err := e.A.Write(cfd, big); err != nil || n != len(big) {
		t.Fatalf("write = %d, %v", n, err)
	}
	eventually(t, "data queued", func() bool {
		n, _ := e.B.IoctlGetInt(sfd, 0x541b)
		return n == len(big)
	})
	a := testing.AllocsPerRun(runs, func() {
		if n, err := e.B.Read(sfd, buf); err != nil || n != len(buf) {
			t.Fatalf("read = %d, %v", n, err)
		}
	})
	for {
		if n, err := e.B.Read(sfd, buf); err != nil || n == 0 {
			break
		}
	}
	return a
}

func TestAllocsWrite(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts need a quiet process")
	}
	e, cfd, sfd, _ := steady(t)
	// Fill the peer's receive window and our send buffer, then wait for
	// the connection to go quiet: Write returns EAGAIN without reaching
	// gVisor's segment path.
	must(t, e.A.SetsockoptInt(cfd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096))
	must(t, e.B.SetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096))
	big := make([]byte, 64<<10)
	for quiet := 0; quiet < 50; {
		if _, err := e.A.Write(cfd, big); err == unix.EAGAIN {
			quiet++
			time.Sleep(time.Millisecond)
		} else {
			quiet = 0
		}
	}
	if a := testing.AllocsPerRun(1000, func() {
		if _, err := e.A.Write(cfd, big[:64]); err != unix.EAGAIN {
			t.Fatalf("write: %v, want EAGAIN", err)
		}
	}); a != 0 {
		t.Errorf("Write (EAGAIN): %v allocs/op, want 0", a)
	}
}

// TestAllocsPingPong reports the allocations of a steady request/response
// exchange (Write, EpollWait, Read on both sides). posix adds none; what
// remains is gVisor's network layer, which allocates one PacketBufferList
// slot per packet sent (ipv4/ipv6 writePacketPostRouting).
func TestAllocsPingPong(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts need a quiet process")
	}
	e, cfd, sfd, ep := steady(t)
	buf := make([]byte, 64)
	a := testing.AllocsPerRun(500, func() { roundTrip(t, e, cfd, sfd, ep, buf) })
	t.Logf("write+epoll_wait+read of 64 bytes: %v allocs/op (gVisor: one per packet; the data segment and its ACK)", a)
}

func BenchmarkRoundTrip64(b *testing.B) {
	e, cfd, sfd, ep := steady(b)
	msg := make([]byte, 64)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		roundTrip(b, e, cfd, sfd, ep, msg)
	}
}

// benchEpollWait measures a non-blocking EpollWait on ep of tbl.
func benchEpollWait(b *testing.B, tbl *posix.Sockets, ep int) {
	var evs [8]unix.EpollEvent
	b.ReportAllocs()
	for b.Loop() {
		tbl.EpollWait(ep, evs[:], 0)
	}
}

func BenchmarkEpollWaitIdle(b *testing.B) {
	e, _, _, ep := steady(b)
	benchEpollWait(b, e.B, ep)
}

func BenchmarkEpollWaitReadyLT(b *testing.B) {
	e, cfd, _, _ := steady(b)
	benchEpollWait(b, e.A, epollAdd(b, e.A, -1, cfd, unix.EPOLLOUT))
}

func BenchmarkReadEAGAIN(b *testing.B) {
	e, _, sfd, _ := steady(b)
	buf := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		e.B.Read(sfd, buf)
	}
}

func BenchmarkRead64(b *testing.B) {
	e, cfd, sfd, _ := steady(b)
	buf := make([]byte, 64)
	chunk := make([]byte, 64<<10)
	b.ReportAllocs()
	b.SetBytes(64)
	for b.Loop() {
		n, err := e.B.Read(sfd, buf)
		if err == unix.EAGAIN {
			b.StopTimer()
			e.A.Write(cfd, chunk)
			eventually(b, "data", func() bool { n, _ := e.B.IoctlGetInt(sfd, 0x541b); return n > 0 })
			b.StartTimer()
			continue
		}
		if err != nil || n == 0 {
			b.Fatalf("read = %d, %v", n, err)
		}
	}
}

func BenchmarkWrite64(b *testing.B) {
	e, cfd, sfd, _ := steady(b)
	msg := make([]byte, 64)
	sink := make([]byte, 64<<10)
	b.ReportAllocs()
	b.SetBytes(64)
	for b.Loop() {
		if _, err := e.A.Write(cfd, msg); err == unix.EAGAIN {
			b.StopTimer()
			for {
				if _, err := e.B.Read(sfd, sink); err != nil {
					break
				}
			}
			b.StartTimer()
		}
	}
}
