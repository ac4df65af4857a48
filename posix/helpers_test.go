package posix_test

import (
	"errors"
	"fmt"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/xstest"
	"github.com/xstack/xstack/posix"
	"github.com/xstack/xstack/posix/posixtest"
	"github.com/xstack/xstack/stack/stacktest"
)

func TestMain(m *testing.M) { xstest.Main(m) }

// env is two Sockets tables on two stacks joined in memory (stacktest): A
// is the client side, B the server side by convention.
type env struct {
	A, B *posix.Sockets
}

func newEnv(t testing.TB) *env {
	t.Helper()
	p := posixtest.NewPair(t)
	return &env{A: p.A, B: p.B}
}

// family describes one address family under test.
type family struct {
	name   string
	domain int
	a, b   func(port int) unix.Sockaddr // addresses of stack A and B
}

var families = []family{
	{
		name: "ipv4", domain: unix.AF_INET,
		a: func(port int) unix.Sockaddr { return &unix.SockaddrInet4{Addr: stacktest.AddrA4, Port: port} },
		b: func(port int) unix.Sockaddr { return &unix.SockaddrInet4{Addr: stacktest.AddrB4, Port: port} },
	},
	{
		name: "ipv6", domain: unix.AF_INET6,
		a: func(port int) unix.Sockaddr { return &unix.SockaddrInet6{Addr: stacktest.AddrA6, Port: port} },
		b: func(port int) unix.Sockaddr { return &unix.SockaddrInet6{Addr: stacktest.AddrB6, Port: port} },
	},
}

// udpPair opens a UDP socket on B bound to port and an unbound one on A.
func udpPair(t *testing.T, e *env, fam family, port int) (b, a int) {
	t.Helper()
	b = must1[int](t)(e.B.Socket(fam.domain, unix.SOCK_DGRAM, 0))
	must(t, e.B.Bind(b, fam.b(port)))
	a = must1[int](t)(e.A.Socket(fam.domain, unix.SOCK_DGRAM, 0))
	return b, a
}

// eachFamily runs f as a subtest per address family, each on a fresh env.
func eachFamily(t *testing.T, f func(t *testing.T, e *env, fam family)) {
	t.Helper()
	for _, fam := range families {
		t.Run(fam.name, func(t *testing.T) { f(t, newEnv(t), fam) })
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func must1[T any](t testing.TB) func(v T, err error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func wantErrno(t testing.TB, what string, err error, want unix.Errno) {
	t.Helper()
	var got unix.Errno
	if err != nil && !errors.As(err, &got) {
		t.Fatalf("%s: error %v (%T) is not an errno", what, err, err)
	}
	if got != want {
		t.Fatalf("%s: errno (-want +got):\n-%v (%d)\n+%v (%d)", what, errnoName(want), want, errnoName(got), got)
	}
}

func errnoName(e unix.Errno) string {
	if e == 0 {
		return "<nil>"
	}
	return unix.ErrnoName(e)
}

// listen opens a listening TCP socket of fam on t's stack at port (0 picks
// one) and returns its fd and port.
func listen(tb testing.TB, t *posix.Sockets, fam family, addr func(int) unix.Sockaddr, port int) (int, int) {
	tb.Helper()
	fd := must1[int](tb)(t.Socket(fam.domain, unix.SOCK_STREAM, 0))
	must(tb, t.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1))
	must(tb, t.Bind(fd, addr(port)))
	must(tb, t.Listen(fd, 128))
	sa := must1[unix.Sockaddr](tb)(t.Getsockname(fd))
	return fd, sockPort(sa)
}

func sockPort(sa unix.Sockaddr) int {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return a.Port
	case *unix.SockaddrInet6:
		return a.Port
	}
	return -1
}

// connected returns a connected TCP pair: cfd on A, sfd on B. Both are
// blocking unless made otherwise.
func connected(tb testing.TB, e *env, fam family) (cfd, sfd int) {
	tb.Helper()
	lfd, port := listen(tb, e.B, fam, fam.b, 0)
	defer e.B.CloseFD(lfd)
	cfd = must1[int](tb)(e.A.Socket(fam.domain, unix.SOCK_STREAM, 0))
	must(tb, e.A.Connect(cfd, fam.b(port)))
	sfd, _, err := e.B.Accept(lfd)
	must(tb, err)
	return cfd, sfd
}

// readFull reads exactly len(p) bytes.
func readFull(tb testing.TB, t *posix.Sockets, fd int, p []byte) {
	tb.Helper()
	for off := 0; off < len(p); {
		n, err := t.Read(fd, p[off:])
		if err != nil {
			tb.Fatalf("read fd %d after %d bytes: %v", fd, off, err)
		}
		if n == 0 {
			tb.Fatalf("read fd %d: EOF after %d of %d bytes", fd, off, len(p))
		}
		off += n
	}
}

// waitEvents polls epfd until it reports fd with all of want, or fails
// after a few seconds. It returns the events reported for fd.
func waitEvents(tb testing.TB, t *posix.Sockets, epfd, fd int, want uint32) uint32 {
	tb.Helper()
	evs := make([]unix.EpollEvent, 16)
	deadline := time.Now().Add(5 * time.Second)
	var last uint32
	for time.Now().Before(deadline) {
		n, err := t.EpollWait(epfd, evs, 100)
		must(tb, err)
		for _, ev := range evs[:n] {
			if int(ev.Fd) == fd {
				last = ev.Events
				if ev.Events&want == want {
					return ev.Events
				}
			}
		}
	}
	tb.Fatalf("fd %d: events %s, want %s", fd, xstest.Events(last), xstest.Events(want))
	return 0
}

// epollAdd creates an epoll instance (if epfd < 0) and registers fd.
func epollAdd(tb testing.TB, t *posix.Sockets, epfd, fd int, events uint32) int {
	tb.Helper()
	if epfd < 0 {
		epfd = must1[int](tb)(t.EpollCreate(0))
	}
	must(tb, t.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: events, Fd: int32(fd)}))
	return epfd
}

// eventually waits until f returns true or a few seconds pass.
func eventually(tb testing.TB, what string, f func() bool) {
	tb.Helper()
	xstest.WaitFor(tb, 5*time.Second, what, func() error {
		if f() {
			return nil
		}
		return errors.New("not yet")
	})
}

// parked returns nil once a goroutine is parked in a select inside fn (a
// function as a goroutine dump names it, "posix.(*Sockets).Accept4"): the
// positive event a test waits for before it wakes or answers a blocked
// call, so that the call is known to have blocked rather than to have
// found its answer at once.
func parked(fn string) error {
	var dump strings.Builder
	if err := pprof.Lookup("goroutine").WriteTo(&dump, 2); err != nil {
		return fmt.Errorf("goroutine dump: %w", err)
	}
	for _, g := range strings.Split(dump.String(), "\n\n") {
		if strings.Contains(g, " [select") && strings.Contains(g, fn+"(") {
			return nil
		}
	}
	return fmt.Errorf("no goroutine blocked in %s", fn)
}

// untilParked waits a few seconds at most for a goroutine to park in fn
// (see parked). A goroutine that answers a blocked call uses it.
func untilParked(fn string) error {
	return xstest.Until(5*time.Second, func() error { return parked(fn) })
}

// waitParked fails tb unless a goroutine parks in fn (see parked) within a
// few seconds.
func waitParked(tb testing.TB, fn string) {
	tb.Helper()
	if err := untilParked(fn); err != nil {
		tb.Fatal(err)
	}
}

// wokenBy runs call on another goroutine, waits for it to park in fn (see
// parked), runs wake and returns call's error: the test of a call that
// blocks until wake (a close, say) ends it.
func wokenBy(t *testing.T, fn string, call func() error, wake func()) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- call() }()
	waitParked(t, fn)
	wake()
	select {
	case err := <-errc:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("%s still blocked after the wake-up", fn)
		return nil
	}
}
