// Package sockapi is the socket API the example servers are written
// against, with its two implementations: xstack's posix socket table
// (Table) and the Linux kernel's sockets (Kernel). Because both satisfy
// Sockets, each example runs the very same server logic on either stack,
// and benchmarks (tools/bench) compare stacks, not servers. Poller is the
// epoll loop both servers run on, so that they also wait, accept and
// close the same way, and differ only in what they do with a ready socket.
//
// In kernel mode the server polls on the main goroutine, one OS thread,
// as on an xstack lcore: PinKernel sets that up and RunKernel is the loop,
// posix.Run's counterpart.
package sockapi

import (
	"errors"
	"flag"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/core"
	"github.com/xstack/xstack/posix"
)

// Sockets is the socket API the servers need, in golang.org/x/sys/unix's
// terms.
type Sockets interface {
	Socket(domain, typ, proto int) (int, error)
	SetsockoptInt(fd, level, opt, value int) error
	Bind(fd int, sa unix.Sockaddr) error
	Listen(fd, backlog int) error
	Accept4(fd, flags int) (int, unix.Sockaddr, error)
	Read(fd int, p []byte) (int, error)
	Write(fd int, p []byte) (int, error)
	RecvFrom(fd int, p []byte, flags int) (int, unix.Sockaddr, error)
	SendTo(fd int, p []byte, flags int, to unix.Sockaddr) error
	Close(fd int) error
	EpollCreate1(flags int) (int, error)
	EpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error
	EpollWait(epfd int, events []unix.EpollEvent, msec int) (int, error)
}

var (
	_ Sockets = Table{}
	_ Sockets = Kernel{}
)

// Table is xstack's socket API: one posix socket table (an lcore's, or a
// test's).
type Table struct{ *posix.Sockets }

func (s Table) Close(fd int) error              { return s.Sockets.CloseFD(fd) }
func (s Table) EpollCreate1(f int) (int, error) { return s.Sockets.EpollCreate(f) }
func (s Table) SendTo(fd int, p []byte, f int, to unix.Sockaddr) error {
	_, err := s.Sockets.SendTo(fd, p, f, to)
	return err
}

// Kernel is the Linux kernel's socket API. Its descriptors are close-on-exec,
// as Go's net package makes them.
type Kernel struct{}

func (Kernel) Socket(d, t, p int) (int, error)     { return unix.Socket(d, t|unix.SOCK_CLOEXEC, p) }
func (Kernel) SetsockoptInt(fd, l, o, v int) error { return unix.SetsockoptInt(fd, l, o, v) }
func (Kernel) Bind(fd int, sa unix.Sockaddr) error { return unix.Bind(fd, sa) }
func (Kernel) Listen(fd, n int) error              { return unix.Listen(fd, n) }
func (Kernel) Accept4(fd, f int) (int, unix.Sockaddr, error) {
	return unix.Accept4(fd, f|unix.SOCK_CLOEXEC)
}
func (Kernel) Read(fd int, p []byte) (int, error)  { return unix.Read(fd, p) }
func (Kernel) Write(fd int, p []byte) (int, error) { return unix.Write(fd, p) }
func (Kernel) Close(fd int) error                  { return unix.Close(fd) }
func (Kernel) EpollCreate1(f int) (int, error)     { return unix.EpollCreate1(f | unix.EPOLL_CLOEXEC) }
func (Kernel) RecvFrom(fd int, p []byte, f int) (int, unix.Sockaddr, error) {
	return unix.Recvfrom(fd, p, f)
}
func (Kernel) SendTo(fd int, p []byte, f int, to unix.Sockaddr) error {
	return unix.Sendto(fd, p, f, to)
}
func (Kernel) EpollCtl(ep, op, fd int, ev *unix.EpollEvent) error {
	return unix.EpollCtl(ep, op, fd, ev)
}
func (Kernel) EpollWait(ep int, evs []unix.EpollEvent, ms int) (int, error) {
	return unix.EpollWait(ep, evs, ms)
}

// EpollWait waits on epfd as api.EpollWait does and returns the events that
// are ready, a prefix of events. A wait that a signal interrupts (EINTR)
// returns none, so that the loop simply polls again.
func EpollWait(api Sockets, epfd int, events []unix.EpollEvent, msec int) ([]unix.EpollEvent, error) {
	n, err := api.EpollWait(epfd, events, msec)
	if errors.Is(err, unix.EINTR) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return events[:n], nil
}

// Flags are the command-line flags every example server takes: posix's
// options (-c config.ini and the rest), the kernel mode and the listen
// backlog.
type Flags struct {
	Posix   posix.Options
	Kernel  bool // -kernel: serve on the kernel's sockets
	CPU     int  // -cpu: with -kernel, the CPU to pin to (-1: none)
	Backlog int  // -backlog
}

// Register defines the flags in fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	f.Posix.RegisterFlags(fs)
	fs.BoolVar(&f.Kernel, "kernel", false, "serve on the kernel's sockets instead of xstack (for comparisons)")
	fs.IntVar(&f.CPU, "cpu", -1, "with -kernel: pin the server to this CPU")
	fs.IntVar(&f.Backlog, "backlog", 4096, "listen backlog")
}

// PinKernel prepares a kernel-mode server to run as an xstack lcore does:
// on one OS thread (GOMAXPROCS 1), pinned to cpu unless cpu is negative,
// so that a comparison gives both stacks the same CPU.
func PinKernel(cpu int) error {
	runtime.GOMAXPROCS(1)
	if cpu < 0 {
		return nil
	}
	return core.PinProcess(cpu)
}

// RunKernel calls poll on the calling goroutine until SIGINT or SIGTERM
// (then it returns nil) or until poll fails (then it returns poll's error).
// poll should return within a fraction of a second (its epoll wait bounded),
// so that a signal is seen.
func RunKernel(poll func() error) error {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(stop)
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		if err := poll(); err != nil {
			return err
		}
	}
}
