package xstest

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { Main(m) }

func TestUntilReturnsOnceCondHolds(t *testing.T) {
	calls := 0
	err := Until(10*time.Second, func() error {
		if calls++; calls < 5 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	if err != nil || calls != 5 {
		t.Fatalf("Until = %v after %d calls, want nil after 5", err, calls)
	}
}

func TestGoRunsAllAndKeepsEachError(t *testing.T) {
	const n = 8
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(n)
	wait := Go(n, func(i int) error {
		started.Done()
		<-release // every call runs at once: none returns before all started
		if i%2 == 1 {
			return fmt.Errorf("call %d", i)
		}
		return nil
	})
	started.Wait()
	close(release)
	errs := wait()
	if len(errs) != n {
		t.Fatalf("%d errors, want %d", len(errs), n)
	}
	for i, err := range errs {
		if want := i%2 == 1; (err != nil) != want || (want && err.Error() != fmt.Sprintf("call %d", i)) {
			t.Errorf("error %d = %v", i, err)
		}
	}
}

func TestUntilReturnsLastError(t *testing.T) {
	calls := 0
	err := Until(20*time.Millisecond, func() error {
		calls++
		return fmt.Errorf("call %d", calls)
	})
	if want := fmt.Sprintf("call %d", calls); err == nil || err.Error() != want {
		t.Fatalf("Until = %v, want the last error %q", err, want)
	}
	if calls < 2 {
		t.Fatalf("cond ran %d times in 20ms, want it polled", calls)
	}
}

func TestUntilRunsCondOnceWithNoTime(t *testing.T) {
	calls := 0
	Until(0, func() error { calls++; return errors.New("no") })
	if calls != 1 {
		t.Fatalf("cond ran %d times, want 1", calls)
	}
}

// fatalTB records Fatalf instead of ending the test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
}

func TestWaitForFailureSaysWhatAndWhy(t *testing.T) {
	tb := &fatalTB{TB: t}
	WaitFor(tb, 10*time.Millisecond, "server up", func() error { return errors.New("2 of 3 listening") })
	if !strings.Contains(tb.msg, "server up") || !strings.Contains(tb.msg, "2 of 3 listening") {
		t.Fatalf("failure %q does not name what was awaited and what was seen", tb.msg)
	}
	tb.msg = ""
	WaitFor(tb, 10*time.Millisecond, "at once", func() error { return nil })
	if tb.msg != "" {
		t.Fatalf("WaitFor failed on a condition that holds: %q", tb.msg)
	}
}

func TestAddedNamesNewDescriptors(t *testing.T) {
	before := map[string]string{"0": "/dev/null", "3": "socket:[1]"}
	now := map[string]string{"0": "/dev/null", "3": "socket:[2]", "4": "pipe:[9]"}
	got := added(before, now)
	if len(got) != 2 {
		t.Fatalf("added = %q, want fd 3 (reused) and fd 4", got)
	}
}

func TestCountGoroutinesLeavesOutPermanentOnes(t *testing.T) {
	before := countGoroutines()
	stop := make(chan struct{})
	go func() { <-stop }()
	if got := countGoroutines(); got != before+1 {
		t.Errorf("with one more goroutine: %d, want %d", got, before+1)
	}
	close(stop)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR2) // starts os/signal's receiver for good
	signal.Stop(sig)
	if err := Until(5*time.Second, func() error {
		if got := countGoroutines(); got != before {
			return fmt.Errorf("%d goroutines, want %d", got, before)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

func TestEvents(t *testing.T) {
	for _, tc := range []struct {
		e    uint32
		want string
	}{
		{0, "0"},
		{unix.EPOLLIN | unix.EPOLLOUT, "IN|OUT"},
		{unix.EPOLLRDHUP | unix.EPOLLET | 1<<20, "RDHUP|ET|0x100000"},
	} {
		if got := Events(tc.e); got != tc.want {
			t.Errorf("Events(%#x) = %q, want %q", tc.e, got, tc.want)
		}
	}
}
