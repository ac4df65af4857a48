package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/netns"
)

// The Go clients (cps, latency, udp) are thread-per-worker programs: each
// worker runs on its own OS thread inside the peer namespace (netns.Do) and
// makes plain blocking syscalls, as a C client with pthreads would. That
// keeps the Go scheduler and its timers (whose netpoll wait has millisecond
// granularity) out of the measurement: the kernel wakes the worker's thread
// directly, and latency schedules sleep with clock_nanosleep.

// runWorkers runs n workers on locked threads in namespace ns and waits for
// them. GOMAXPROCS is raised so that a thread returning from a syscall
// never waits for a P. The bench process is pinned to the client CPU, so
// all of them share it.
func runWorkers(ctx context.Context, ns string, n int, work func(i int, stop *atomic.Bool) error) error {
	old := runtime.GOMAXPROCS(n + 2)
	defer runtime.GOMAXPROCS(old)
	var stop atomic.Bool
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			stop.Store(true)
		case <-done:
		}
	}()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = netns.Do(ns, func() error {
				// Sleeps are part of what latency measures: ask for
				// nanosecond timer slack instead of the default 50µs.
				unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
				return work(i, &stop)
			})
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// monotonic returns CLOCK_MONOTONIC in nanoseconds, the clock
// clock_nanosleep(TIMER_ABSTIME) sleeps on.
func monotonic() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// sleepUntil sleeps until the monotonic time t (ns).
func sleepUntil(t int64) {
	ts := unix.NsecToTimespec(t)
	for {
		err := unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// sockaddr converts ap to a unix.Sockaddr.
func sockaddr(ap netip.AddrPort) (int, unix.Sockaddr) {
	if ap.Addr().Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}

// dialBlocking opens a blocking socket of type typ to ap, with send and
// receive timeouts so that a worker never hangs on a dead server.
func dialBlocking(typ int, ap netip.AddrPort, timeout time.Duration) (int, error) {
	domain, sa := sockaddr(ap)
	fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	if typ == unix.SOCK_STREAM {
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	}
	if err := unix.Connect(fd, sa); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %v: %w", ap, err)
	}
	return fd, nil
}
