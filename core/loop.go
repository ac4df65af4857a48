package core

import (
	"errors"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/xstack/xstack/nic"
	"github.com/xstack/xstack/stack"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// DefaultBurst is the number of frames one pass takes off the queue.
const DefaultBurst = 64

// LoopConfig tunes the loop.
type LoopConfig struct {
	Burst int // frames per RX burst (default DefaultBurst)
	// IdleSleep is how long the loop sleeps after a pass that found no
	// work; 0 spins. With BusyPoll false the loop waits on the queue.
	IdleSleep time.Duration
	BusyPoll  bool
	// TxFlush caps a sleep so that frames gVisor's timers produce while
	// the loop sleeps wait at most this long.
	TxFlush time.Duration
	// Handoff, when set, steers every received frame to the lcore that
	// owns its flow and delivers what other lcores hand over.
	Handoff *Handoff
	// Now, when set, is the loop's monotonic clock (time since any fixed
	// origin, never 0), read once per pass for the busy and idle time;
	// tests give it a clock they advance themselves. Default: the
	// stack's LoopClock when it has one, else the runtime's monotonic
	// clock.
	Now func() time.Duration
}

// LoopStats are the loop's counters.
//
// BusyNs and IdleNs split the loop's running time by what each pass did:
// the time from the start of a pass to the start of the next one is busy
// when the pass received, delivered or sent a frame or fired a timer of
// the stack, and idle otherwise
// (an idle pass's sleep or wait included). Their sum is the time the loop
// has run, up to the start of its latest pass; busy / (busy + idle) over
// an interval is the lcore's load, which the share of busy passes is not:
// a saturated loop makes few long busy passes between many short idle
// ones.
type LoopStats struct {
	Passes     uint64 // loop passes
	IdlePasses uint64 // passes that received, delivered and sent nothing
	RxFrames   uint64 // frames taken off the queue
	TxFrames   uint64 // frames written to the queue
	Sleeps     uint64 // idle sleeps or waits
	BusyNs     uint64 // nanoseconds in passes that did work
	IdleNs     uint64 // nanoseconds in idle passes and their sleeps
	Timers     uint64 // timers of the stack's LoopClock fired by the loop
	// LongPasses counts the passes that did work and took at least
	// LongPassBounds[i] from their start to the next pass's start: while
	// one runs, a frame that arrives waits in the ring, so they are what
	// a latency tail is made of. MaxPassNs is the longest such interval.
	LongPasses [len(LongPassBounds)]uint64
	MaxPassNs  uint64
}

// LongPassBounds are the thresholds of LoopStats.LongPasses.
var LongPassBounds = [...]time.Duration{100 * time.Microsecond, time.Millisecond, 10 * time.Millisecond}

// Loop drives one queue and one stack.
type Loop struct {
	q      nic.Queue
	st     *stack.Stack
	cfg    LoopConfig
	frames [][]byte

	// mq is q when it is a multi-buffer queue, whose frames may span
	// several buffers and are read with RxPackets into bufs and segs;
	// nil otherwise. joined holds, with a hand-off, the burst's frames of
	// several buffers joined into one each (steering and the hand-off
	// rings take contiguous frames), Burst slots of the largest frame.
	mq     nic.MultiBufferQueue
	bufs   [][]byte
	segs   []int
	joined []byte

	stop    atomic.Bool
	running atomic.Bool

	// control, when set, runs once per pass after the flush: the control
	// plane executes the tools' requests there, between bursts, so the
	// stack is never touched from two goroutines at once.
	control func()

	// clock is the stack's LoopClock, or nil: each pass fires its timers
	// that are due by the pass's reading, and an idle pass rests no
	// longer than the next one is away.
	clock *stack.LoopClock

	passes, idle, rx, tx, sleeps atomic.Uint64
	busyNs, idleNs, timers       atomic.Uint64
	long                         [len(LongPassBounds)]atomic.Uint64
	maxPass                      atomic.Uint64

	// mark is when the latest pass started (0 before the first) and
	// markBusy whether it did work: the interval from mark to the next
	// pass's start is charged to busyNs or idleNs then. Only the
	// goroutine running passes touches them.
	mark     time.Duration
	markBusy bool
}

// NewLoop makes a loop over q and st.
func NewLoop(q nic.Queue, st *stack.Stack, cfg LoopConfig) *Loop {
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.TxFlush <= 0 {
		cfg.TxFlush = 100 * time.Microsecond
	}
	clock := st.LoopClock()
	switch {
	case cfg.Now != nil:
	case clock != nil:
		cfg.Now = clock.Reading
	default:
		cfg.Now = monotonicClock()
	}
	l := &Loop{q: q, st: st, cfg: cfg, clock: clock, frames: make([][]byte, cfg.Burst)}
	if mq, ok := q.(nic.MultiBufferQueue); ok && mq.MultiBuffer() {
		l.mq = mq
		// Room for a burst of chains of several buffers each, and at
		// least for the longest chain a queue hands out, so that
		// RxPackets never finds bufs too short for the next frame.
		l.bufs = make([][]byte, max(4*cfg.Burst, rxChainMax))
		l.segs = make([]int, cfg.Burst)
		if cfg.Handoff != nil {
			l.joined = make([]byte, cfg.Burst*(st.MTU()+header.EthernetMinimumSize))
		}
	}
	return l
}

// rxChainMax bounds the buffers of one received frame: a 64 KiB frame
// (an skb that GRO built, in generic XDP mode) in UMEM frames of 2048
// bytes less XDP_PACKET_HEADROOM is 37 of them.
const rxChainMax = 64

// monotonicClock returns a clock of the runtime's monotonic time since
// now, never zero (the loop takes 0 for "no reading yet").
func monotonicClock() func() time.Duration {
	origin := time.Now()
	return func() time.Duration { return time.Since(origin) + 1 }
}

// ErrStopped is returned by Run when Stop ended the loop.
var ErrStopped = errors.New("lcore loop stopped")

// Run runs passes until app returns an error, the queue fails, or Stop is
// called (then it returns ErrStopped). app may be nil. Run must be called
// from one goroutine at a time.
func (l *Loop) Run(app func() error) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("lcore loop already running")
	}
	defer l.running.Store(false)
	// The last pass's interval ends when the loop does.
	defer func() { l.account(l.cfg.Now()) }()
	idleSince := 0
	for !l.stop.Load() {
		did, err := l.Pass(app)
		if err != nil {
			return err
		}
		if did {
			idleSince = 0
			continue
		}
		idleSince++
		l.idle.Add(1)
		if err := l.rest(idleSince); err != nil {
			return err
		}
	}
	return ErrStopped
}

// Pass runs one pass and reports whether it received, delivered or sent
// anything, or fired a timer of the stack.
func (l *Loop) Pass(app func() error) (did bool, err error) {
	now := l.cfg.Now()
	l.account(now)
	defer func() { l.markBusy = did }()
	l.passes.Add(1)
	fired := 0
	if c := l.clock; c != nil {
		fired = c.Advance(now)
		l.timers.Add(uint64(fired))
	}
	var n int
	if l.mq != nil {
		n, err = l.rxPackets()
	} else {
		n, err = l.q.Rx(l.frames)
		l.deliver(n)
	}
	if err != nil {
		return false, err
	}
	if h := l.cfg.Handoff; h != nil {
		n += h.drainIn(l.st.Deliver)
	}
	// Let gVisor's processor goroutines handle what was delivered, so the
	// application sees the data in this same pass.
	runtime.Gosched()
	if app != nil {
		if err := app(); err != nil {
			return false, err
		}
	}
	sent := l.st.Flush()
	l.tx.Add(uint64(sent))
	if l.control != nil {
		l.control()
	}
	return n > 0 || sent > 0 || fired > 0, nil
}

// rxPackets receives and delivers a burst from a multi-buffer queue. With
// a hand-off, each frame of several buffers is first joined in l.joined,
// since steering and the hand-off rings take contiguous frames; without
// one the stack joins it as it copies it into gVisor memory.
func (l *Loop) rxPackets() (int, error) {
	n, err := l.mq.RxPackets(l.bufs, l.segs)
	if n == 0 {
		return 0, err
	}
	if l.cfg.Handoff == nil {
		l.rx.Add(uint64(n))
		l.st.DeliverPackets(l.bufs, l.segs[:n])
		return n, err
	}
	slot := len(l.joined) / len(l.frames)
	k := 0
	for i, segs := range l.segs[:n] {
		if segs == 1 {
			l.frames[i] = l.bufs[k]
		} else {
			f := l.joined[i*slot : i*slot : (i+1)*slot]
			for _, b := range l.bufs[k : k+segs] {
				if len(b) > cap(f)-len(f) {
					// Longer than the MTU allows: handed on
					// empty, the stack counts it malformed,
					// as it counts such a chain without a
					// hand-off.
					f = f[:0]
					break
				}
				f = append(f, b...)
			}
			l.frames[i] = f
		}
		k += segs
	}
	l.deliver(n)
	return n, err
}

// deliver counts and delivers the burst of n contiguous frames in
// l.frames: through steering with a hand-off, else straight to the stack.
func (l *Loop) deliver(n int) {
	if n == 0 {
		return
	}
	l.rx.Add(uint64(n))
	if h := l.cfg.Handoff; h != nil {
		l.st.DeliverParsed(h.steerBurst(l.frames[:n]))
	} else {
		l.st.Deliver(l.frames[:n])
	}
}

// account charges the time since the previous pass started to busy or
// idle, by what that pass did, and starts a new interval at now.
func (l *Loop) account(now time.Duration) {
	if l.mark != 0 && now > l.mark {
		d := uint64(now - l.mark)
		if l.markBusy {
			l.busyNs.Add(d)
			l.countLong(d)
		} else {
			l.idleNs.Add(d)
		}
	}
	l.mark = now
}

// countLong counts a working pass of d nanoseconds among the long ones.
func (l *Loop) countLong(d uint64) {
	if d < uint64(LongPassBounds[0]) {
		return
	}
	for i, b := range LongPassBounds {
		if d >= uint64(b) {
			l.long[i].Add(1)
		}
	}
	if d > l.maxPass.Load() {
		l.maxPass.Store(d)
	}
}

// SetControl installs fn to run once per pass, after the TX flush. Call it
// before Run.
func (l *Loop) SetControl(fn func()) { l.control = fn }

// rest is what an idle pass does after it: nothing when spinning; with
// idle_sleep, a wait on the queue of at most idle_sleep, which a frame
// ends at once; without busy polling, a wait for a frame.
func (l *Loop) rest(idlePasses int) error {
	var wait time.Duration
	switch {
	case !l.cfg.BusyPoll:
		// Wait for a frame, but not longer than TxFlush (and at least a
		// millisecond, so that an idle lcore really idles): gVisor's
		// timers (retransmits, keepalives) produce frames while we wait.
		wait = max(l.cfg.TxFlush, time.Millisecond)
	case l.cfg.IdleSleep > 0:
		wait = min(l.cfg.IdleSleep, l.cfg.TxFlush)
	default:
		return nil
	}
	if c := l.clock; c != nil {
		// The stack's timers fire only in a pass: wake for the next.
		if d, ok := c.NextDeadline(l.cfg.Now()); ok {
			if d == 0 {
				return nil
			}
			wait = min(wait, d)
		}
	}
	l.sleeps.Add(1)
	return l.q.Wait(wait)
}

// Stop makes Run return after its current pass. It is safe to call from
// any goroutine, including a signal handler's.
func (l *Loop) Stop() { l.stop.Store(true) }

// Stats returns the loop's counters.
func (l *Loop) Stats() LoopStats {
	return LoopStats{
		Passes:     l.passes.Load(),
		IdlePasses: l.idle.Load(),
		RxFrames:   l.rx.Load(),
		TxFrames:   l.tx.Load(),
		Sleeps:     l.sleeps.Load(),
		BusyNs:     l.busyNs.Load(),
		IdleNs:     l.idleNs.Load(),
		Timers:     l.timers.Load(),
		LongPasses: [len(LongPassBounds)]uint64{l.long[0].Load(), l.long[1].Load(), l.long[2].Load()},
		MaxPassNs:  l.maxPass.Load(),
	}
}
