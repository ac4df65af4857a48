package difftest

import (
	"fmt"
	"log"
	"net/netip"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/core"
	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
	"github.com/xstack/xstack/internal/xstest"
	"github.com/xstack/xstack/posix"
)

// api is the socket interface both sides implement: *posix.Sockets (with
// close(2) as Close) and the kernel's, through golang.org/x/sys/unix.
type api interface {
	Socket(domain, typ, proto int) (int, error)
	Bind(fd int, sa unix.Sockaddr) error
	Listen(fd, backlog int) error
	Accept4(fd, flags int) (int, unix.Sockaddr, error)
	Connect(fd int, sa unix.Sockaddr) error
	Read(fd int, p []byte) (int, error)
	Write(fd int, p []byte) (int, error)
	Readv(fd int, iovs [][]byte) (int, error)
	Writev(fd int, iovs [][]byte) (int, error)
	RecvFrom(fd int, p []byte, flags int) (int, unix.Sockaddr, error)
	SendTo(fd int, p []byte, flags int, to unix.Sockaddr) (int, error)
	RecvMsg(fd int, iovs [][]byte, flags int) (n, recvflags int, from unix.Sockaddr, err error)
	SendMsg(fd int, iovs [][]byte, to unix.Sockaddr, flags int) (int, error)
	Shutdown(fd, how int) error
	Close(fd int) error
	Getsockname(fd int) (unix.Sockaddr, error)
	Getpeername(fd int) (unix.Sockaddr, error)
	SetsockoptInt(fd, level, opt, v int) error
	GetsockoptInt(fd, level, opt int) (int, error)
	SetsockoptLinger(fd, level, opt int, l *unix.Linger) error
	GetsockoptLinger(fd, level, opt int) (*unix.Linger, error)
	GetsockoptTCPInfo(fd, level, opt int) (*unix.TCPInfo, error)
	Fcntl(fd, cmd, arg int) (int, error)
	IoctlGetInt(fd int, req uint) (int, error)
	IoctlSetInt(fd int, req uint, v int) error
	EpollCreate(flags int) (int, error)
	EpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error
	EpollWait(epfd int, evs []unix.EpollEvent, msec int) (int, error)
	Poll(fds []unix.PollFd, msec int) (int, error)
}

// xstackAPI is posix with close(2) under its POSIX name.
type xstackAPI struct{ *posix.Sockets }

func (x xstackAPI) Close(fd int) error { return x.CloseFD(fd) }

var _ api = xstackAPI{}

// kernelAPI makes the same calls on the kernel's sockets. Sockets are
// created on a thread inside ns; the descriptors then work from any thread.
type kernelAPI struct{ ns string }

var _ api = kernelAPI{}

func (k kernelAPI) Socket(domain, typ, proto int) (int, error) {
	fd := -1
	err := netns.Do(k.ns, func() error {
		var err error
		fd, err = unix.Socket(domain, typ, proto)
		return err
	})
	return fd, err
}
func (kernelAPI) Bind(fd int, sa unix.Sockaddr) error { return unix.Bind(fd, sa) }
func (kernelAPI) Listen(fd, n int) error              { return unix.Listen(fd, n) }
func (kernelAPI) Accept4(fd, flags int) (int, unix.Sockaddr, error) {
	for {
		nfd, sa, err := unix.Accept4(fd, flags)
		if err != unix.EINTR {
			return nfd, sa, err
		}
	}
}

// Connect retries what a signal interrupted: Go's runtime preempts with
// SIGURG, and a blocking connect restarted after one reports EALREADY.
func (kernelAPI) Connect(fd int, sa unix.Sockaddr) error {
	err := unix.Connect(fd, sa)
	if err != unix.EINTR && err != unix.EALREADY {
		return err
	}
	fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if fl&unix.O_NONBLOCK != 0 {
		return err
	}
	for {
		_, perr := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, -1)
		if perr != unix.EINTR {
			break
		}
	}
	if v, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); v != 0 {
		return unix.Errno(v)
	}
	return nil
}
func (kernelAPI) Read(fd int, p []byte) (int, error) {
	return retryN(func() (int, error) { return unix.Read(fd, p) })
}
func (kernelAPI) Write(fd int, p []byte) (int, error) {
	return retryN(func() (int, error) { return unix.Write(fd, p) })
}
func (kernelAPI) Readv(fd int, iovs [][]byte) (int, error) {
	return retryN(func() (int, error) { return unix.Readv(fd, iovs) })
}
func (kernelAPI) Writev(fd int, iovs [][]byte) (int, error) {
	return retryN(func() (int, error) { return unix.Writev(fd, iovs) })
}
func (kernelAPI) RecvFrom(fd int, p []byte, flags int) (int, unix.Sockaddr, error) {
	for {
		n, sa, err := unix.Recvfrom(fd, p, flags)
		if err != unix.EINTR {
			return n, sa, err
		}
	}
}
func (kernelAPI) SendTo(fd int, p []byte, flags int, to unix.Sockaddr) (int, error) {
	return retryN(func() (int, error) { return unix.SendmsgN(fd, p, nil, to, flags) })
}
func (kernelAPI) RecvMsg(fd int, iovs [][]byte, flags int) (int, int, unix.Sockaddr, error) {
	for {
		n, _, rf, sa, err := unix.RecvmsgBuffers(fd, iovs, nil, flags)
		if err != unix.EINTR {
			return n, rf, sa, err
		}
	}
}
func (kernelAPI) SendMsg(fd int, iovs [][]byte, to unix.Sockaddr, flags int) (int, error) {
	return retryN(func() (int, error) { return unix.SendmsgBuffers(fd, iovs, nil, to, flags) })
}
func (kernelAPI) Shutdown(fd, how int) error { return unix.Shutdown(fd, how) }
func (kernelAPI) Close(fd int) error         { return unix.Close(fd) }
func (kernelAPI) Getsockname(fd int) (unix.Sockaddr, error) {
	return unix.Getsockname(fd)
}
func (kernelAPI) Getpeername(fd int) (unix.Sockaddr, error) {
	return unix.Getpeername(fd)
}
func (kernelAPI) SetsockoptInt(fd, level, opt, v int) error {
	return unix.SetsockoptInt(fd, level, opt, v)
}
func (kernelAPI) GetsockoptInt(fd, level, opt int) (int, error) {
	return unix.GetsockoptInt(fd, level, opt)
}
func (kernelAPI) SetsockoptLinger(fd, level, opt int, l *unix.Linger) error {
	return unix.SetsockoptLinger(fd, level, opt, l)
}
func (kernelAPI) GetsockoptLinger(fd, level, opt int) (*unix.Linger, error) {
	return unix.GetsockoptLinger(fd, level, opt)
}
func (kernelAPI) GetsockoptTCPInfo(fd, level, opt int) (*unix.TCPInfo, error) {
	return unix.GetsockoptTCPInfo(fd, level, opt)
}
func (kernelAPI) Fcntl(fd, cmd, arg int) (int, error) { return unix.FcntlInt(uintptr(fd), cmd, arg) }
func (kernelAPI) IoctlGetInt(fd int, req uint) (int, error) {
	return unix.IoctlGetInt(fd, req)
}
func (kernelAPI) IoctlSetInt(fd int, req uint, v int) error {
	return unix.IoctlSetPointerInt(fd, req, v)
}
func (kernelAPI) EpollCreate(flags int) (int, error) { return unix.EpollCreate1(flags) }
func (kernelAPI) EpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	return unix.EpollCtl(epfd, op, fd, ev)
}
func (kernelAPI) EpollWait(epfd int, evs []unix.EpollEvent, msec int) (int, error) {
	return retryTimed(msec, func(ms int) (int, error) { return unix.EpollWait(epfd, evs, ms) })
}
func (kernelAPI) Poll(fds []unix.PollFd, msec int) (int, error) {
	return retryTimed(msec, func(ms int) (int, error) { return unix.Poll(fds, ms) })
}

func retryN(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if err != unix.EINTR {
			return n, err
		}
	}
}

// retryTimed restarts a call with a timeout after EINTR with what is left.
func retryTimed(msec int, f func(ms int) (int, error)) (int, error) {
	end := time.Now().Add(time.Duration(msec) * time.Millisecond)
	for {
		n, err := f(msec)
		if err != unix.EINTR {
			return n, err
		}
		if msec > 0 {
			msec = int(time.Until(end) / time.Millisecond)
			if msec < 0 {
				msec = 0
			}
		}
	}
}

// env is the rig and both sides.
type env struct {
	rig    *rig.Rig
	kernel *side
	xstack *side
	// vanish4/6 are extra peer addresses that scenarios delete to make the
	// peer go silent (keepalive and user timeouts).
	vanish4, vanish6 netip.Addr
}

// side is one implementation under test and its own addresses.
type side struct {
	name   string
	api    api
	local4 netip.Addr
	local6 netip.Addr
}

// The scenario's view of addresses.
var (
	noHost4    = netip.MustParseAddr("198.18.0.99") // on-link, nobody answers
	bcast4     = netip.MustParseAddr("198.18.255.255")
	vanishing4 = netip.MustParseAddr("198.18.0.4")
	vanishing6 = netip.MustParseAddr("2001:2::4")
)

var logger = log.New(os.Stderr, "difftest: ", 0)

// newEnv builds the rig, starts an lcore on its stack side in this process
// and returns both sides. Cleanup stops everything.
func newEnv(t *testing.T) *env {
	t.Helper()
	r := rigtest.New(t, rig.Options{})
	conf, err := core.LoadConfig(rigtest.Config(t, r, "broadcast=198.18.255.255"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := core.Start(conf, 0, logger)
	if err != nil {
		t.Fatalf("lcore: %v", err)
	}
	socks := posix.NewSockets(l.Stack)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.Loop.Run(nil)
	}()
	t.Cleanup(func() {
		l.Loop.Stop()
		wg.Wait()
		socks.Close()
		l.Drain(100 * time.Millisecond)
		l.Close()
	})
	for _, a := range []string{vanishing4.String() + "/16", vanishing6.String() + "/64"} {
		if out, err := r.Run(r.PeerNS, "ip", "addr", "add", a, "dev", r.PeerIf, "nodad"); err != nil {
			t.Fatalf("ip addr add %s: %v %s", a, err, out)
		}
	}
	return &env{
		rig:     r,
		kernel:  &side{name: "linux", api: kernelAPI{ns: r.StackNS}, local4: r.KernelAddr4, local6: r.KernelAddr6},
		xstack:  &side{name: "xstack", api: xstackAPI{socks}, local4: r.StackAddr4, local6: r.StackAddr6},
		vanish4: vanishing4,
		vanish6: vanishing6,
	}
}

// scenario is one row of the table.
type scenario struct {
	name string
	// errPath marks scenarios whose point is an error.
	errPath bool
	// differs, when set, says how and why xstack differs from Linux here
	// by design. Such a scenario passes when the transcripts differ and
	// fails when they agree (the note would be stale).
	differs string
	run     func(r *run)
}

// run is one scenario on one side: it makes the calls and keeps the
// transcript of what was observed.
type run struct {
	t    *testing.T
	env  *env
	side *side
	s    api
	base int // the scenario's ports are base..base+19

	log     []string
	fds     []int // local descriptors, by label (s0, s1, ...)
	peerFds []int
	addrs   []func() // peer addresses to restore
}

// note appends a line to the transcript.
func (r *run) note(format string, args ...any) {
	r.log = append(r.log, fmt.Sprintf(format, args...))
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	if e, ok := err.(unix.Errno); ok {
		if e == 0 {
			return "ok"
		}
		return unix.ErrnoName(e)
	}
	return err.Error()
}

// label names a local fd by creation order, so transcripts do not depend
// on fd numbers.
func (r *run) label(fd int) string {
	for i, f := range r.fds {
		if f == fd {
			return fmt.Sprintf("s%d", i)
		}
	}
	return fmt.Sprintf("fd?%d", fd)
}

func (r *run) track(fd int) int {
	if fd >= 0 {
		r.fds = append(r.fds, fd)
	}
	return fd
}

// sym prints a socket address in terms of the scenario: L4/L6 are the
// side's own addresses, P4/P6 the peer's, ports relative to base (p0...),
// "eph" for a port the stack chose.
func (r *run) sym(sa unix.Sockaddr) string {
	var a netip.Addr
	var port int
	switch v := sa.(type) {
	case *unix.SockaddrInet4:
		a, port = netip.AddrFrom4(v.Addr), v.Port
	case *unix.SockaddrInet6:
		a, port = netip.AddrFrom16(v.Addr), v.Port
	case nil:
		return "<nil>"
	default:
		return fmt.Sprintf("%T", sa)
	}
	return r.symAddr(a) + ":" + r.symPort(port)
}

func (r *run) symAddr(a netip.Addr) string {
	prefix := ""
	if a.Is4In6() {
		prefix, a = "::ffff:", a.Unmap()
	}
	name := a.String()
	switch a {
	case r.side.local4:
		name = "L4"
	case r.side.local6:
		name = "L6"
	case r.env.rig.PeerAddr4:
		name = "P4"
	case r.env.rig.PeerAddr6:
		name = "P6"
	case r.env.vanish4:
		name = "V4"
	case r.env.vanish6:
		name = "V6"
	}
	return prefix + name
}

func (r *run) symPort(p int) string {
	switch {
	case p == 0:
		return "0"
	case p >= r.base && p < r.base+20:
		return fmt.Sprintf("p%d", p-r.base)
	}
	return "eph"
}

// Addresses for the scenario. p(i) is port base+i.
func (r *run) p(i int) int { return r.base + i }

func (r *run) L4(i int) unix.Sockaddr {
	return &unix.SockaddrInet4{Addr: r.side.local4.As4(), Port: r.p(i)}
}
func (r *run) L6(i int) unix.Sockaddr {
	return &unix.SockaddrInet6{Addr: r.side.local6.As16(), Port: r.p(i)}
}
func (r *run) P4(i int) unix.Sockaddr {
	return &unix.SockaddrInet4{Addr: r.env.rig.PeerAddr4.As4(), Port: r.p(i)}
}
func (r *run) P6(i int) unix.Sockaddr {
	return &unix.SockaddrInet6{Addr: r.env.rig.PeerAddr6.As16(), Port: r.p(i)}
}

// localAddr is L4(i) or L6(i), as domain says; peerAddr is P4(i) or P6(i).
func (r *run) localAddr(domain, i int) unix.Sockaddr {
	if domain == unix.AF_INET6 {
		return r.L6(i)
	}
	return r.L4(i)
}
func (r *run) peerAddr(domain, i int) unix.Sockaddr {
	if domain == unix.AF_INET6 {
		return r.P6(i)
	}
	return r.P4(i)
}
func (r *run) Any4(i int) unix.Sockaddr { return &unix.SockaddrInet4{Port: r.p(i)} }
func (r *run) Any6(i int) unix.Sockaddr { return &unix.SockaddrInet6{Port: r.p(i)} }
func (r *run) Mapped4(a netip.Addr, i int) unix.Sockaddr {
	return &unix.SockaddrInet6{Addr: netip.AddrFrom4(a.As4()).As16(), Port: r.p(i)}
}
func addr4(a netip.Addr, port int) unix.Sockaddr {
	return &unix.SockaddrInet4{Addr: a.As4(), Port: port}
}
func addr6(a netip.Addr, port int) unix.Sockaddr {
	return &unix.SockaddrInet6{Addr: a.As16(), Port: port}
}

// ---- recorded calls on the side under test ----

func (r *run) socket(domain, typ int) int {
	fd, err := r.s.Socket(domain, typ, 0)
	r.note("socket: %s", errName(err))
	if err != nil {
		return -1
	}
	return r.track(fd)
}

func (r *run) socketP(domain, typ, proto int) int {
	fd, err := r.s.Socket(domain, typ, proto)
	r.note("socket(%d,%#x,%d): %s", domain, typ, proto, errName(err))
	if err != nil {
		return -1
	}
	return r.track(fd)
}

func (r *run) bind(fd int, sa unix.Sockaddr) {
	r.note("bind %s %s: %s", r.label(fd), r.sym(sa), errName(r.s.Bind(fd, sa)))
}

func (r *run) listen(fd, n int) {
	r.note("listen %s %d: %s", r.label(fd), n, errName(r.s.Listen(fd, n)))
}

func (r *run) connect(fd int, sa unix.Sockaddr) error {
	err := r.s.Connect(fd, sa)
	r.note("connect %s %s: %s", r.label(fd), r.sym(sa), errName(err))
	return err
}

func (r *run) accept(fd, flags int) int {
	nfd, sa, err := r.s.Accept4(fd, flags)
	if err != nil {
		r.note("accept %s: %s", r.label(fd), errName(err))
		return -1
	}
	r.track(nfd)
	r.note("accept %s: %s from %s", r.label(fd), r.label(nfd), r.sym(sa))
	return nfd
}

// listener is socket+SO_REUSEADDR+bind+listen on sa.
func (r *run) listener(domain int, sa unix.Sockaddr, backlog int) int {
	fd := r.socket(domain, unix.SOCK_STREAM)
	r.setopt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	r.bind(fd, sa)
	r.listen(fd, backlog)
	return fd
}

func (r *run) readN(fd, n int) {
	b := make([]byte, n)
	m, err := r.s.Read(fd, b)
	r.noteData("read "+r.label(fd), b, m, err)
}

// read waits (poll, up to 3 s) for fd to be readable, then reads.
func (r *run) read(fd, n int) {
	r.waitIn(fd)
	r.readN(fd, n)
}

func (r *run) noteData(op string, b []byte, n int, err error) {
	switch {
	case err != nil:
		r.note("%s: %s", op, errName(err))
	case n == 0:
		r.note("%s: EOF", op)
	default:
		r.note("%s: %q", op, b[:n])
	}
}

func (r *run) write(fd int, s string) {
	n, err := r.s.Write(fd, []byte(s))
	if err != nil {
		r.note("write %s: %s", r.label(fd), errName(err))
		return
	}
	r.note("write %s: %d", r.label(fd), n)
}

func (r *run) sendto(fd int, s string, flags int, to unix.Sockaddr) {
	n, err := r.s.SendTo(fd, []byte(s), flags, to)
	if err != nil {
		r.note("sendto %s %s: %s", r.label(fd), r.sym(to), errName(err))
		return
	}
	r.note("sendto %s %s: %d", r.label(fd), r.sym(to), n)
}

func (r *run) recvfrom(fd, n, flags int) {
	b := make([]byte, n)
	m, from, err := r.s.RecvFrom(fd, b, flags)
	if err != nil {
		r.note("recvfrom %s: %s", r.label(fd), errName(err))
		return
	}
	r.note("recvfrom %s: %d %q from %s", r.label(fd), m, b[:min(m, n)], r.sym(from))
}

func (r *run) shutdown(fd, how int) {
	r.note("shutdown %s %d: %s", r.label(fd), how, errName(r.s.Shutdown(fd, how)))
}

func (r *run) close(fd int) {
	r.note("close %s: %s", r.label(fd), errName(r.s.Close(fd)))
}

func (r *run) sockname(fd int) { r.addr("getsockname", fd, r.s.Getsockname) }

func (r *run) peername(fd int) { r.addr("getpeername", fd, r.s.Getpeername) }

// addr notes the address that get (Getsockname or Getpeername, called op)
// returns for fd, in the symbols of the run, or its error.
func (r *run) addr(op string, fd int, get func(int) (unix.Sockaddr, error)) {
	sa, err := get(fd)
	if err != nil {
		r.note("%s %s: %s", op, r.label(fd), errName(err))
		return
	}
	r.note("%s %s: %s", op, r.label(fd), r.sym(sa))
}

func (r *run) setopt(fd, level, opt, v int) {
	err := r.s.SetsockoptInt(fd, level, opt, v)
	r.note("setsockopt %s %d/%d=%d: %s", r.label(fd), level, opt, v, errName(err))
}

func (r *run) getopt(fd, level, opt int) {
	v, err := r.s.GetsockoptInt(fd, level, opt)
	if err != nil {
		r.note("getsockopt %s %d/%d: %s", r.label(fd), level, opt, errName(err))
		return
	}
	r.note("getsockopt %s %d/%d: %d", r.label(fd), level, opt, v)
}

// soError reads SO_ERROR and names it.
func (r *run) soError(fd int) {
	v, err := r.s.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		r.note("SO_ERROR %s: %s", r.label(fd), errName(err))
		return
	}
	r.note("SO_ERROR %s: %s", r.label(fd), errName(unix.Errno(v)))
}

func (r *run) nonblock(fd int) {
	fl, err := r.s.Fcntl(fd, unix.F_GETFL, 0)
	if err == nil {
		_, err = r.s.Fcntl(fd, unix.F_SETFL, fl|unix.O_NONBLOCK)
	}
	r.note("O_NONBLOCK %s: %s", r.label(fd), errName(err))
}

func (r *run) getfl(fd int) {
	fl, err := r.s.Fcntl(fd, unix.F_GETFL, 0)
	if err != nil {
		r.note("F_GETFL %s: %s", r.label(fd), errName(err))
		return
	}
	r.note("F_GETFL %s: nonblock=%v", r.label(fd), fl&unix.O_NONBLOCK != 0)
}

func (r *run) fionread(fd int) {
	v, err := r.s.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		r.note("FIONREAD %s: %s", r.label(fd), errName(err))
		return
	}
	r.note("FIONREAD %s: %d", r.label(fd), v)
}

func (r *run) epoll() int {
	fd, err := r.s.EpollCreate(0)
	r.note("epoll_create: %s", errName(err))
	if err != nil {
		return -1
	}
	return r.track(fd)
}

func (r *run) epollCtl(ep, op, fd int, events uint32) {
	var ev *unix.EpollEvent
	if op != unix.EPOLL_CTL_DEL {
		ev = &unix.EpollEvent{Events: events, Fd: int32(fd)}
	}
	err := r.s.EpollCtl(ep, op, fd, ev)
	r.note("epoll_ctl %s %d %s %s: %s", r.label(ep), op, r.label(fd), xstest.Events(events), errName(err))
}

func (r *run) epollWait(ep, msec int) {
	evs := make([]unix.EpollEvent, 16)
	n, err := r.s.EpollWait(ep, evs, msec)
	if err != nil {
		r.note("epoll_wait %s: %s", r.label(ep), errName(err))
		return
	}
	var out []string
	for _, ev := range evs[:n] {
		out = append(out, r.label(int(ev.Fd))+"="+xstest.Events(ev.Events))
	}
	sort.Strings(out)
	r.note("epoll_wait %s %d: [%s]", r.label(ep), msec, strings.Join(out, " "))
}

func (r *run) poll(fd int, events int16, msec int) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	n, err := r.s.Poll(fds, msec)
	if err != nil {
		r.note("poll %s: %s", r.label(fd), errName(err))
		return
	}
	r.note("poll %s %s %d: %d %s", r.label(fd), xstest.Events(uint32(uint16(events))), msec, n, xstest.Events(uint32(uint16(fds[0].Revents))))
}

// waitIn waits up to 3 s for fd to be readable (or hung up), unrecorded.
func (r *run) waitIn(fd int) {
	r.s.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 3000)
}

func (r *run) waitOut(fd int) {
	r.s.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, 3000)
}

// waitErr waits up to 3 s for an error or hang-up on fd, which poll
// reports without being asked for: a reset on a connection that is
// readable already (at EOF).
func (r *run) waitErr(fd int) {
	r.s.Poll([]unix.PollFd{{Fd: int32(fd)}}, 3000)
}

// settle lets packets in flight arrive, for the scenarios where nothing
// observable marks their arrival (a datagram that must be filtered, an ACK
// that releases corked data); the others wait for the event itself with
// waitIn, waitOut or waitErr.
func (r *run) settle() { time.Sleep(100 * time.Millisecond) }

// ---- the kernel peer (the same for both sides) ----

// peerSocket opens a socket in the peer namespace.
func (r *run) peerSocket(domain, typ int) int {
	fd := -1
	err := netns.Do(r.env.rig.PeerNS, func() error {
		var err error
		fd, err = unix.Socket(domain, typ|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		r.fatalf("peer socket: %v", err)
	}
	r.peerFds = append(r.peerFds, fd)
	return fd
}

// peerListen listens on the peer's address (or a vanishing one) at port i.
func (r *run) peerListen(domain, i int) int {
	sa := r.peerAddr(domain, i)
	return r.peerListenAt(domain, sa)
}

func (r *run) peerListenAt(domain int, sa unix.Sockaddr) int {
	fd := r.peerSocket(domain, unix.SOCK_STREAM)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, sa); err != nil {
		r.fatalf("peer bind %s: %v", r.sym(sa), err)
	}
	if err := unix.Listen(fd, 64); err != nil {
		r.fatalf("peer listen: %v", err)
	}
	return fd
}

// peerAccept waits up to 3 s for a connection.
func (r *run) peerAccept(lfd int) int {
	if !peerWait(lfd, unix.POLLIN, 3000) {
		r.note("peer accept: timeout")
		return -1
	}
	fd, sa, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
	if err != nil {
		r.note("peer accept: %s", errName(err))
		return -1
	}
	r.peerFds = append(r.peerFds, fd)
	r.note("peer accept: from %s", r.sym(sa))
	return fd
}

// peerConnect connects from the peer to the side's address at port i.
func (r *run) peerConnect(domain, i int) int {
	sa := r.localAddr(domain, i)
	fd := r.peerSocket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK)
	err := unix.Connect(fd, sa)
	if err == unix.EINPROGRESS {
		if peerWait(fd, unix.POLLOUT, 3000) {
			v, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
			err = unix.Errno(v)
		} else {
			err = unix.ETIMEDOUT
		}
	}
	r.note("peer connect %s: %s", r.sym(sa), errName(err))
	setBlocking(fd)
	return fd
}

// peerConnectAsync starts a connect from the peer without waiting.
func (r *run) peerConnectAsync(domain, i int) int {
	sa := r.localAddr(domain, i)
	fd := r.peerSocket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK)
	unix.Connect(fd, sa)
	return fd
}

func setBlocking(fd int) {
	fl, _ := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
}

func peerWait(fd int, ev int16, msec int) bool {
	n, _ := retryTimed(msec, func(ms int) (int, error) {
		return unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: ev}}, ms)
	})
	return n > 0
}

func (r *run) peerSend(fd int, s string) {
	_, err := unix.SendmsgN(fd, []byte(s), nil, nil, unix.MSG_NOSIGNAL)
	r.note("peer send: %s", errName(err))
}

// peerRecv waits up to 3 s and reads: the data, EOF (a FIN), ECONNRESET
// (a RST) or timeout.
func (r *run) peerRecv(fd int) {
	if r.peerWaitIn(fd, "peer recv") {
		r.peerRead(fd, "peer recv")
	}
}

// peerRecvNow reads, 50 ms after the call, what has arrived by then,
// without waiting for more: the data, EOF or EAGAIN. It sees whether data
// was held back: Linux sends corked data after 200 ms at the earliest.
func (r *run) peerRecvNow(fd int) {
	time.Sleep(50 * time.Millisecond)
	r.peerRead(fd, "peer recv now")
}

// peerWaitIn waits up to 3 s for fd of the peer to turn readable, and
// notes a timeout as op's when it does not.
func (r *run) peerWaitIn(fd int, op string) bool {
	if !peerWait(fd, unix.POLLIN, 3000) {
		r.note("%s: timeout", op)
		return false
	}
	return true
}

// peerRead notes, as op's, what a read on fd of the peer returns without
// waiting: the data, EOF or the error.
func (r *run) peerRead(fd int, op string) {
	b := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, b, unix.MSG_DONTWAIT)
	r.noteData(op, b, n, err)
}

// peerSendPieces sends the pieces from the peer on another goroutine,
// 30 ms apart and unrecorded, then, 30 ms later, calls then (if not nil).
// The scenario must call the returned wait before it ends.
func (r *run) peerSendPieces(fd int, then func(), pieces ...string) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, p := range pieces {
			time.Sleep(30 * time.Millisecond)
			unix.SendmsgN(fd, []byte(p), nil, nil, unix.MSG_NOSIGNAL)
		}
		if then != nil {
			time.Sleep(30 * time.Millisecond)
			then()
		}
	}()
	return func() { <-done }
}

func (r *run) peerShutdown(fd, how int) {
	r.note("peer shutdown: %s", errName(unix.Shutdown(fd, how)))
}

// peerReset closes fd with SO_LINGER 0: a RST.
func (r *run) peerReset(fd int) {
	unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
	r.peerClose(fd)
}

func (r *run) peerClose(fd int) {
	for i, f := range r.peerFds {
		if f == fd {
			r.peerFds = append(r.peerFds[:i], r.peerFds[i+1:]...)
			break
		}
	}
	unix.Close(fd)
}

// peerUDP binds a UDP socket on the peer's address (or any, for
// broadcast) at port i.
func (r *run) peerUDP(domain int, sa unix.Sockaddr) int {
	fd := r.peerSocket(domain, unix.SOCK_DGRAM)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, sa); err != nil {
		r.fatalf("peer bind udp %s: %v", r.sym(sa), err)
	}
	return fd
}

// udpPair makes the UDP sockets most UDP scenarios start with, in this
// order: the peer's at port 10 and the side's (of type typ) bound at port
// 0, both of family domain.
func (r *run) udpPair(domain, typ int) (peer, u int) {
	peer = r.peerUDP(domain, r.peerAddr(domain, 10))
	u = r.socket(domain, typ)
	r.bind(u, r.localAddr(domain, 0))
	return peer, u
}

// udpExchange sends out from u to peer, has the peer answer back, and
// reads the answer on u with a buffer of n bytes.
func (r *run) udpExchange(peer, u, domain int, out, back string, n int) {
	r.sendto(u, out, 0, r.peerAddr(domain, 10))
	r.peerRecvFrom(peer)
	r.peerSendTo(peer, back, r.localAddr(domain, 0))
	r.waitIn(u)
	r.recvfrom(u, n, 0)
}

func (r *run) peerSendTo(fd int, s string, to unix.Sockaddr) {
	err := unix.Sendto(fd, []byte(s), 0, to)
	r.note("peer sendto %s: %s", r.sym(to), errName(err))
}

// peerRecvFromNow is peerRecvNow for datagrams.
func (r *run) peerRecvFromNow(fd int) {
	time.Sleep(50 * time.Millisecond)
	r.peerReadFrom(fd, "peer recvfrom now")
}

func (r *run) peerRecvFrom(fd int) {
	if r.peerWaitIn(fd, "peer recvfrom") {
		r.peerReadFrom(fd, "peer recvfrom")
	}
}

// peerReadFrom notes, as op's, the datagram and its source, or the error,
// that a read on fd of the peer returns without waiting.
func (r *run) peerReadFrom(fd int, op string) {
	b := make([]byte, 65536)
	n, from, err := unix.Recvfrom(fd, b, unix.MSG_DONTWAIT)
	if err != nil {
		r.note("%s: %s", op, errName(err))
		return
	}
	r.note("%s: %d %q from %s", op, n, b[:min(n, 32)], r.sym(from))
}

// vanish removes a from the peer, which then neither answers nor resets:
// its packets to a are dropped. The address comes back after the run.
func (r *run) vanish(a netip.Addr) {
	bits := 16
	if a.Is6() {
		bits = 64
	}
	pfx := fmt.Sprintf("%s/%d", a, bits)
	if out, err := r.env.rig.Run(r.env.rig.PeerNS, "ip", "addr", "del", pfx, "dev", r.env.rig.PeerIf); err != nil {
		r.fatalf("ip addr del %s: %v %s", pfx, err, out)
	}
	r.addrs = append(r.addrs, func() {
		r.env.rig.Run(r.env.rig.PeerNS, "ip", "addr", "add", pfx, "dev", r.env.rig.PeerIf, "nodad")
	})
	r.note("peer vanished")
}

// fatalf fails the scenario from its own goroutine.
func (r *run) fatalf(format string, args ...any) {
	r.t.Errorf("%s: "+format, append([]any{r.side.name}, args...)...)
	runtime.Goexit()
}

// finish closes whatever the scenario left open.
func (r *run) finish() {
	for _, fd := range r.fds {
		r.s.Close(fd)
	}
	for _, fd := range r.peerFds {
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1})
		unix.Close(fd)
	}
	for _, f := range r.addrs {
		f()
	}
}

// runOn runs sc on one side and returns its transcript. A scenario that
// does not finish in 30 s fails; closing its descriptors wakes it.
func runOn(t *testing.T, e *env, sd *side, sc scenario, base int) []string {
	r := &run{t: t, env: e, side: sd, s: sd.api, base: base}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc.run(r)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		// Wake the blocked call: closing wakes posix's; the kernel's
		// need a shutdown. The scenario goroutine may be appending to
		// the transcript, so it is read only once it is done.
		for _, fd := range r.fds {
			if sd == e.xstack {
				sd.api.Close(fd)
			} else {
				unix.Shutdown(fd, unix.SHUT_RDWR)
			}
		}
		<-done
		r.finish()
		t.Errorf("%s: scenario stuck for 30 s; transcript:\n%s", sd.name, strings.Join(r.log, "\n"))
		return r.log
	}
	r.finish()
	return r.log
}
