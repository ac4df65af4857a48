package stack_test

import (
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/xstack/xstack/stack"
)

// manualClock is a loop clock the test moves: set now, then Advance the
// LoopClock to it, as the loop does once per pass.
type manualClock struct {
	now atomic.Int64 // read by goroutines that arm timers
	c   *stack.LoopClock
}

func newManualClock(now time.Duration) *manualClock {
	m := &manualClock{}
	m.now.Store(int64(now))
	m.c = stack.NewLoopClock(func() time.Duration { return time.Duration(m.now.Load()) })
	return m
}

// Advance moves the time to now and fires what is due.
func (m *manualClock) Advance(now time.Duration) int {
	m.now.Store(int64(now))
	return m.c.Advance(now)
}

func (m *manualClock) AfterFunc(d time.Duration, f func()) tcpip.Timer { return m.c.AfterFunc(d, f) }

func (m *manualClock) NextDeadline() (time.Duration, bool) {
	return m.c.NextDeadline(time.Duration(m.now.Load()))
}

func (m *manualClock) Timers() int { return m.c.Timers() }

func TestLoopClockReadings(t *testing.T) {
	m := newManualClock(5 * time.Second)
	c := m.c
	w0 := c.Now()
	if got := c.NowMonotonic(); got != (tcpip.MonotonicTime{}).Add(5*time.Second) {
		t.Fatalf("NowMonotonic = %v, want 5s", got)
	}
	m.now.Store(int64(7 * time.Second)) // readings follow the clock between Advances
	if got := c.Now().Sub(w0); got != 2*time.Second {
		t.Errorf("wall clock moved %v, want 2s", got)
	}
	if got := c.NowMonotonic(); got != (tcpip.MonotonicTime{}).Add(7*time.Second) {
		t.Errorf("NowMonotonic = %v, want 7s", got)
	}
}

func TestLoopClockTimers(t *testing.T) {
	c := newManualClock(0)
	var fired []string
	mk := func(name string, d time.Duration) tcpip.Timer {
		return c.AfterFunc(d, func() { fired = append(fired, name) })
	}
	a := mk("a", 30*time.Millisecond)
	mk("b", 10*time.Millisecond)
	cc := mk("c", 20*time.Millisecond)
	d := mk("d", 40*time.Millisecond)
	if n, ok := c.NextDeadline(); !ok || n != 10*time.Millisecond {
		t.Fatalf("NextDeadline = %v, %v; want 10ms", n, ok)
	}
	if !cc.Stop() {
		t.Error("Stop of an armed timer = false")
	}
	if cc.Stop() {
		t.Error("second Stop = true")
	}
	a.Reset(5 * time.Millisecond) // armed: moves to the new deadline
	if n := c.Advance(9 * time.Millisecond); n != 1 || !slices.Equal(fired, []string{"a"}) {
		t.Fatalf("at 9ms: %d ran, fired %v; want a", n, fired)
	}
	if a.Stop() {
		t.Error("Stop of a fired timer = true")
	}
	c.Advance(100 * time.Millisecond)
	if want := []string{"a", "b", "d"}; !slices.Equal(fired, want) {
		t.Fatalf("fired %v, want %v", fired, want)
	}
	if _, ok := c.NextDeadline(); ok || c.Timers() != 0 {
		t.Errorf("timers left: %d", c.Timers())
	}
	d.Reset(time.Millisecond) // a fired timer re-arms from the current reading
	c.Advance(100*time.Millisecond + time.Millisecond)
	if want := []string{"a", "b", "d", "d"}; !slices.Equal(fired, want) {
		t.Fatalf("fired %v, want %v", fired, want)
	}
}

// TestLoopClockCallbackArms checks that a callback may arm timers (gVisor's
// do), and that one armed for a time already reached waits for the next
// Advance rather than running in this one forever.
func TestLoopClockCallbackArms(t *testing.T) {
	c := newManualClock(0)
	runs := 0
	var tm tcpip.Timer
	tm = c.AfterFunc(time.Millisecond, func() {
		runs++
		tm.Reset(0)
	})
	c.Advance(time.Millisecond)
	if runs != 1 {
		t.Fatalf("runs = %d after the first Advance, want 1", runs)
	}
	c.Advance(time.Millisecond)
	if runs != 2 {
		t.Fatalf("runs = %d after the second Advance, want 2", runs)
	}
}

// TestLoopClockOrder arms, moves and stops many timers at random and checks
// that they fire in deadline order, each exactly once, when due.
func TestLoopClockOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	c := newManualClock(0)
	const n = 5000
	type entry struct {
		t       tcpip.Timer
		when    time.Duration
		stopped bool
		fired   int
	}
	es := make([]*entry, n)
	var now time.Duration
	var last time.Duration
	for i := range es {
		e := &entry{when: time.Duration(r.IntN(1000)) * time.Millisecond}
		e.t = c.AfterFunc(e.when, func() {
			e.fired++
			if e.when > now {
				t.Errorf("timer due at %v fired at %v", e.when, now)
			}
			if e.when < last {
				t.Errorf("timer due at %v fired after one due at %v", e.when, last)
			}
			last = e.when
		})
		es[i] = e
	}
	for _, e := range es {
		switch r.IntN(4) {
		case 0:
			e.t.Stop()
			e.stopped = true
		case 1:
			e.when = time.Duration(r.IntN(1000)) * time.Millisecond
			e.t.Reset(e.when)
		}
	}
	for now = 0; now < time.Second+7*time.Millisecond; now += 7 * time.Millisecond {
		last = 0
		c.Advance(now)
	}
	for i, e := range es {
		if want := map[bool]int{true: 0, false: 1}[e.stopped]; e.fired != want {
			t.Fatalf("timer %d (due %v, stopped %v) fired %d times", i, e.when, e.stopped, e.fired)
		}
	}
}

// TestLoopClockAllocs checks that re-arming and firing timers allocates
// nothing: gVisor re-arms its TCP timers on every segment.
func TestLoopClockAllocs(t *testing.T) {
	c := newManualClock(0)
	ts := make([]tcpip.Timer, 64)
	for i := range ts {
		ts[i] = c.AfterFunc(time.Hour, func() {})
	}
	now := time.Duration(0)
	allocs := testing.AllocsPerRun(100, func() {
		for i, tm := range ts {
			tm.Reset(time.Duration(i) * time.Microsecond)
		}
		now += time.Millisecond
		c.Advance(now)
		_ = c.c.NowMonotonic()
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per round of Reset and Advance, want 0", allocs)
	}
}

func BenchmarkLoopClockReset(b *testing.B) {
	c := newManualClock(0)
	// Many armed timers, as with connections in TIME-WAIT.
	for i := range 50000 {
		c.AfterFunc(time.Duration(i)*time.Millisecond+time.Minute, func() {})
	}
	tm := c.AfterFunc(time.Second, func() {})
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		tm.Reset(time.Duration(i%1000) * time.Millisecond)
	}
}

// TestLoopClockConcurrent arms and stops timers from other goroutines while
// the loop's goroutine advances the clock (run it with -race).
func TestLoopClockConcurrent(t *testing.T) {
	c := newManualClock(0)
	done := make(chan struct{})
	var fired atomic.Int64
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			ts := make([]tcpip.Timer, 16)
			for i := range ts {
				ts[i] = c.AfterFunc(time.Duration(g+i)*time.Microsecond, func() { fired.Add(1) })
			}
			for i := range 2000 {
				tm := ts[i%len(ts)]
				if i%3 == 0 {
					tm.Stop()
				} else {
					tm.Reset(time.Duration(i%50) * time.Microsecond)
				}
			}
		}()
	}
	now := time.Duration(0)
	for running := 4; running > 0; {
		select {
		case <-done:
			running--
		default:
			now += time.Microsecond
			c.Advance(now)
		}
	}
	c.Advance(now + time.Second)
	if _, ok := c.NextDeadline(); ok || fired.Load() == 0 {
		t.Errorf("after the last Advance: %d timers armed, %d fired", c.Timers(), fired.Load())
	}
}
