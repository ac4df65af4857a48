// Package xstest holds what every test package in the tree shares: WaitFor,
// the one way a test waits for something to happen, and Main, the TestMain
// body that fails a package whose tests leak goroutines, file descriptors or
// gVisor references.
//
// A test that asserts that something did not happen first waits, with
// WaitFor, for an event that must come after it; a fixed sleep proves
// nothing on a loaded machine.
package xstest

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/refs"
)

// Until calls cond until it returns nil or timeout has passed, and returns
// nil or cond's last error. cond runs at least once. The interval between
// calls starts at a millisecond, so that a condition met at once costs
// little, and doubles up to a fiftieth of timeout, at least 10 ms, so that
// a long wait on a condition that runs a command does not load the machine,
// and at most 250 ms, so that a test that times an event by when cond
// first holds measures it to a quarter of a second.
func Until(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	ceil := min(max(timeout/50, 10*time.Millisecond), 250*time.Millisecond)
	for d := time.Millisecond; ; d = min(2*d, ceil) {
		err := cond()
		if err == nil {
			return nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return err
		}
		time.Sleep(min(d, left))
	}
}

// WaitFor fails tb unless cond returns nil within timeout. The failure says
// what was awaited and cond's last error, which should say what was seen
// instead ("3 of 8 connections accepted").
func WaitFor(tb testing.TB, timeout time.Duration, what string, cond func() error) {
	tb.Helper()
	if err := Until(timeout, cond); err != nil {
		tb.Fatalf("%s: not within %v: %v", what, timeout, err)
	}
}

// Go runs f(0) to f(n-1) at once, each on a goroutine of its own, and
// returns a function that waits for all of them and returns their errors,
// f(i)'s at index i. Tests start a crowd of clients with it and go on
// with other work before they wait.
func Go(n int, f func(i int) error) (wait func() []error) {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(i)
		}()
	}
	return func() []error {
		wg.Wait()
		return errs
	}
}

// Main runs the tests of a package and exits. When they pass, it also fails
// the package if goroutines or file descriptors are left over, once given a
// few seconds to wind down, or if a gVisor reference-counted object was
// never released. Use it as the whole body of TestMain:
//
//	func TestMain(m *testing.M) { xstest.Main(m) }
func Main(m *testing.M) {
	os.Exit(run(m))
}

// leakGrace is how long goroutines and descriptors get to go away after the
// last test: gVisor's processors, a child process's pipe copiers and
// deferred closes finish asynchronously.
const leakGrace = 5 * time.Second

// errGoroutineLeak marks the failure that the goroutines' stacks explain.
var errGoroutineLeak = errors.New("goroutine leak")

func run(m *testing.M) int {
	refs.SetLeakMode(refs.LeaksPanic)
	// The runtime opens its poller's epoll and eventfd descriptors on the
	// first timer; start one so that they are in the baseline.
	time.Sleep(time.Millisecond)
	goroutines, fds := countGoroutines(), openFDs()
	code := m.Run()
	if code != 0 {
		return code
	}
	// DoLeakCheck panics, naming the object and where it was taken, if a
	// checked gVisor object (a packet buffer, an endpoint) is still referenced.
	refs.DoLeakCheck()
	err := Until(leakGrace, func() error {
		// Some descriptors are held by caches that only a collection
		// empties: the net package keeps the pipes it splices TCP through
		// (io.Copy between connections) in a sync.Pool, and closes them
		// from a finalizer.
		runtime.GC()
		if n := countGoroutines(); n > goroutines {
			return fmt.Errorf("%w: %d before the tests, %d after (not counting %v)", errGoroutineLeak, goroutines, n, permanent)
		}
		if now := openFDs(); len(now) > len(fds) {
			return fmt.Errorf("file descriptor leak: %d open before the tests, %d after:\n%s",
				len(fds), len(now), strings.Join(added(fds, now), "\n"))
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, errGoroutineLeak) {
			buf := make([]byte, 1<<20)
			os.Stderr.Write(buf[:runtime.Stack(buf, true)])
		}
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// permanent names the functions of goroutines that, once started, live as
// long as the process by design, so a test that starts one leaks nothing:
// os/signal's receiver, which the first signal.Notify starts.
var permanent = []string{"os/signal.loop"}

// countGoroutines counts the goroutines other than permanent ones.
func countGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !slices.ContainsFunc(permanent, func(f string) bool { return strings.Contains(g, f) }) {
			count++
		}
	}
	return count
}

// openFDs maps each open descriptor of the process to what it refers to.
func openFDs() map[string]string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	fds := make(map[string]string, len(ents))
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fds[e.Name()] = target
	}
	return fds
}

// added lists the descriptors in now that were not open before, with what
// they refer to ("7 -> socket:[123]").
func added(before, now map[string]string) []string {
	var out []string
	for fd, target := range now {
		if before[fd] != target {
			out = append(out, fd+" -> "+target)
		}
	}
	return out
}
