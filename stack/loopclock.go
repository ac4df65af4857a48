package stack

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// LoopClock is a tcpip.Clock whose timers the lcore loop drives, in the
// way F-Stack's loop drives its stack's ticks: timers are kept in a heap of
// the clock's own and fired by Advance, which the loop calls once per pass,
// on the loop's goroutine.
//
// gVisor arms its timers (TCP retransmission, RACK, keepalive, TIME-WAIT,
// the neighbour cache) with AfterFunc. With the standard clock each timer
// is a Go runtime timer and each expiry a goroutine, and with thousands of
// connections in TIME-WAIT the runtime's timer heap is checked and
// adjusted on every scheduling decision. Here an expiry is a function call
// in the loop, and the loop looks at the earliest deadline once per pass
// (and rests no longer than it is away, see NextDeadline).
//
// Readings are the real monotonic time (the clock the loop reads), not
// the pass's one reading: TCP stamps every segment it sends and receives
// with the clock, and its loss detection (RACK, the retransmission timer)
// misjudged segments stamped with a time up to a pass or an idle wait
// old: an echo at 1% loss took 357 retransmission timeouts instead of 5.
//
// AfterFunc, Stop and Reset are safe from any goroutine (gVisor's
// processor and application goroutines arm timers); Advance is called by
// the one goroutine that drives the stack. Callbacks run on that
// goroutine, without the clock's lock, so they may arm timers themselves.
type LoopClock struct {
	now  func() time.Duration // the loop's monotonic clock
	wall time.Time            // the wall-clock time at reading 0

	// next is the earliest deadline (math.MaxInt64 with no timer armed),
	// kept with the heap under mu and read without it: the loop's passes
	// and rests look at it without taking the lock.
	next atomic.Int64

	mu    sync.Mutex
	timer []*loopTimer // a 4-ary min-heap by deadline. +checklocks:mu
	// due collects the timers one Advance fires; only Advance uses it.
	due []*loopTimer
}

var _ tcpip.Clock = (*LoopClock)(nil)

// NewLoopClock returns a clock that reads now, a monotonic time since any
// fixed origin (the loop's, see core.LoopConfig.Now), which must never go
// back.
func NewLoopClock(now func() time.Duration) *LoopClock {
	c := &LoopClock{now: now, wall: time.Now().Add(-now())}
	c.next.Store(math.MaxInt64)
	return c
}

// Now implements tcpip.Clock: the wall-clock time of the current reading.
func (c *LoopClock) Now() time.Time { return c.wall.Add(c.now()) }

// NowMonotonic implements tcpip.Clock.
func (c *LoopClock) NowMonotonic() tcpip.MonotonicTime {
	return tcpip.MonotonicTime{}.Add(c.now())
}

// AfterFunc implements tcpip.Clock: f runs in the first Advance to a time
// at least d after the current reading.
func (c *LoopClock) AfterFunc(d time.Duration, f func()) tcpip.Timer {
	t := &loopTimer{c: c, f: f, idx: -1}
	t.Reset(d)
	return t
}

// Advance runs the callbacks of every timer due by now (a reading of the
// clock), earliest first, on the calling goroutine, and returns how many
// ran.
func (c *LoopClock) Advance(now time.Duration) int {
	cur := int64(now)
	if cur < c.next.Load() {
		return 0
	}
	c.mu.Lock()
	for len(c.timer) > 0 && c.timer[0].when <= cur {
		c.due = append(c.due, c.timer[0])
		c.removeLocked(0)
	}
	c.setNextLocked()
	c.mu.Unlock()
	n := len(c.due)
	for i, t := range c.due {
		c.due[i] = nil
		t.f()
	}
	c.due = c.due[:0]
	return n
}

// Reading returns the clock's reading now, as a time since its origin.
func (c *LoopClock) Reading() time.Duration { return c.now() }

// Fire runs the callbacks of the timers due by now, as Advance does.
func (c *LoopClock) Fire() int { return c.Advance(c.now()) }

// NextDeadline returns how long after now the earliest timer is due (0 if
// it is due already), and false when no timer is armed.
func (c *LoopClock) NextDeadline(now time.Duration) (time.Duration, bool) {
	next := c.next.Load()
	if next == math.MaxInt64 {
		return 0, false
	}
	return max(0, time.Duration(next-int64(now))), true
}

// setNextLocked publishes the earliest deadline after the heap changed.
func (c *LoopClock) setNextLocked() {
	if len(c.timer) == 0 {
		c.next.Store(math.MaxInt64)
		return
	}
	c.next.Store(c.timer[0].when)
}

// Timers returns how many timers are armed.
func (c *LoopClock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timer)
}

// loopTimer is one AfterFunc timer. idx is its place in the heap, -1
// when it is not armed; idx and when are guarded by the clock's mu.
type loopTimer struct {
	c    *LoopClock
	f    func()
	when int64
	idx  int
}

// Stop implements tcpip.Timer.
func (t *loopTimer) Stop() bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.idx < 0 {
		return false
	}
	c.removeLocked(t.idx)
	c.setNextLocked()
	return true
}

// Reset implements tcpip.Timer. Unlike a time.Timer it may also be called
// on an armed timer, which then moves to the new deadline.
func (t *loopTimer) Reset(d time.Duration) {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	t.when = int64(c.now() + max(d, 0))
	if t.idx >= 0 {
		c.fixLocked(t.idx)
	} else {
		t.idx = len(c.timer)
		c.timer = append(c.timer, t)
		c.upLocked(t.idx)
	}
	c.setNextLocked()
}

// The heap is 4-ary: shallower than a binary one, so a push or a pop
// touches fewer cache lines among many timers (the Go runtime's timer heap
// is shaped the same way).
const loopHeapArity = 4

func (c *LoopClock) removeLocked(i int) {
	h := c.timer
	last := len(h) - 1
	h[i].idx = -1
	if i != last {
		h[i] = h[last]
		h[i].idx = i
	}
	h[last] = nil
	c.timer = h[:last]
	if i != last {
		c.fixLocked(i)
	}
}

func (c *LoopClock) fixLocked(i int) {
	if !c.upLocked(i) {
		c.downLocked(i)
	}
}

// upLocked moves the timer at i towards the root while it is due before
// its parent, and reports whether it moved.
func (c *LoopClock) upLocked(i int) bool {
	h := c.timer
	t := h[i]
	moved := false
	for i > 0 {
		p := (i - 1) / loopHeapArity
		if h[p].when <= t.when {
			break
		}
		h[i] = h[p]
		h[i].idx = i
		i = p
		moved = true
	}
	h[i] = t
	t.idx = i
	return moved
}

func (c *LoopClock) downLocked(i int) {
	h := c.timer
	t := h[i]
	for {
		first := i*loopHeapArity + 1
		if first >= len(h) {
			break
		}
		m := first
		for j := first + 1; j < first+loopHeapArity && j < len(h); j++ {
			if h[j].when < h[m].when {
				m = j
			}
		}
		if h[m].when >= t.when {
			break
		}
		h[i] = h[m]
		h[i].idx = i
		i = m
	}
	h[i] = t
	t.idx = i
}
