// Package stacktest joins two xstack stacks in memory, so that the packages
// above the NIC (stack, core, posix, the examples) are tested without
// privileges over the product's own link endpoint: Ethernet, ARP and NDP,
// the SYN-flood guard, the zero-window rescue, ACK elision and the pcap tap
// all run as they do on an AF_XDP queue.
//
// A Pair is two stacks (stack.New) over the two ends of a nic/nictest queue
// pair, each driven by a loop on a goroutine of its own, as an lcore drives
// its stack. A pass does what core.Loop's does: fire the stack's timers
// that are due (each stack has a stack.LoopClock, as an lcore's has),
// take a burst off the queue, Deliver it (DeliverPackets on a multi-buffer
// queue, Options.MultiBuffer), yield so that gVisor's processor goroutines handle it, and
// Flush what the pass produced. (The loop is not core's because core's own
// tests use the rig.) An idle loop waits on its queue, and a frame wakes it
// at once; frames that gVisor queues for transmit meanwhile, from a test's
// goroutine or a timer, leave at the next pass, after at most the idle wait,
// which grows from 50 µs to 1 ms while nothing happens. With
// Options.Manual there are no loops: the test runs passes with Pass.
//
// Stack A has addresses AddrA4 (in 198.18.0.0/15) and AddrA6 (in
// 2001:2::/48), stack B AddrB4 and AddrB6, unless the options say
// otherwise. NewStack is a single stack for tests that play the wire
// themselves.
package stacktest

import (
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xstack/xstack/nic/nictest"
	"github.com/xstack/xstack/stack"
)

// MTU of the in-memory link.
const MTU = 1500

// The stacks' default addresses, on the benchmark ranges.
var (
	AddrA4 = [4]byte{198, 18, 0, 1}
	AddrB4 = [4]byte{198, 18, 0, 2}
	AddrA6 = [16]byte{0x20, 0x01, 0, 2, 15: 1}
	AddrB6 = [16]byte{0x20, 0x01, 0, 2, 15: 2}
)

// The default addresses' prefix lengths.
const (
	Bits4 = 15
	Bits6 = 48
)

// Options configure a Pair. The zero value is two stacks named "a" and
// "b" with the default addresses, each run by its own loop.
type Options struct {
	// A and B are the stacks' configurations. An empty Name becomes "a"
	// or "b"; when neither Addr4 nor Addr6 is set, the stack gets the
	// default addresses.
	A, B stack.Config
	// Now, when set, is the clock (stack.Config.Now) of each stack whose
	// configuration has none.
	Now func() time.Duration
	// Manual starts no loops: the test drives both stacks with Pass,
	// from one goroutine.
	Manual bool
	// NoTxChecksumOffload turns the queues' TX checksum offload off
	// (nictest.Queue.SetTxChecksumOffload), so that the stacks compute
	// every checksum themselves.
	NoTxChecksumOffload bool
	// LinkMTU is the link's MTU; 0 means MTU.
	LinkMTU int
	// MultiBuffer, when not 0, makes both queues emulate multi-buffer
	// queues whose buffers hold that many bytes
	// (nictest.Queue.SetMultiBuffer, 18 buffers per sent frame, as
	// AF_XDP's copy mode), as jumbo frames over AF_XDP need.
	MultiBuffer int
}

// Pair is two stacks joined by an in-memory link.
type Pair struct {
	A, B   *stack.Stack
	QA, QB *nictest.Queue // A's and B's ends of the link

	la, lb    *loop
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewPair builds two stacks with the default options and starts their
// loops.
func NewPair(tb testing.TB) *Pair {
	tb.Helper()
	return NewPairWith(tb, Options{})
}

// NewPairWith builds two stacks as o says. Cleanup (registered with tb)
// calls Close; register anything that uses the stacks (a posix.Sockets)
// after calling NewPairWith, so that its cleanup runs first and the loops
// still carry the FINs and RSTs it sends.
func NewPairWith(tb testing.TB, o Options) *Pair {
	tb.Helper()
	p := &Pair{}
	mtu := o.LinkMTU
	if mtu == 0 {
		mtu = MTU
	}
	p.QA, p.QB = nictest.Pair(mtu)
	if o.MultiBuffer != 0 {
		for _, q := range []*nictest.Queue{p.QA, p.QB} {
			if err := q.SetMultiBuffer(o.MultiBuffer, 18); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if o.NoTxChecksumOffload {
		p.QA.SetTxChecksumOffload(false)
		p.QB.SetTxChecksumOffload(false)
	}
	var err error
	if p.A, err = stack.New(p.QA, loopClock(config(o.A, o.Now, "a", AddrA4, AddrA6))); err != nil {
		p.QA.Close()
		p.QB.Close()
		tb.Fatalf("stack a: %v", err)
	}
	if p.B, err = stack.New(p.QB, loopClock(config(o.B, o.Now, "b", AddrB4, AddrB6))); err != nil {
		p.A.Close()
		p.QA.Close()
		p.QB.Close()
		tb.Fatalf("stack b: %v", err)
	}
	p.la, p.lb = newLoop(p.QA, p.A), newLoop(p.QB, p.B)
	if !o.Manual {
		p.wg.Add(2)
		go p.la.routineRun(&p.wg)
		go p.lb.routineRun(&p.wg)
	}
	tb.Cleanup(p.Close)
	return p
}

func config(c stack.Config, now func() time.Duration, name string, a4 [4]byte, a6 [16]byte) stack.Config {
	if c.Name == "" {
		c.Name = name
	}
	if !c.Addr4.IsValid() && !c.Addr6.IsValid() {
		c.Addr4 = netip.PrefixFrom(netip.AddrFrom4(a4), Bits4)
		c.Addr6 = netip.PrefixFrom(netip.AddrFrom16(a6), Bits6)
	}
	if c.Now == nil {
		c.Now = now
	}
	return c
}

// loopClock gives c a LoopClock, as an lcore's stack has, unless it has a
// clock already: the pair's loops fire its timers.
func loopClock(c stack.Config) stack.Config {
	if c.Clock == nil {
		origin := time.Now()
		c.Clock = stack.NewLoopClock(func() time.Duration { return time.Since(origin) + 1 })
	}
	return c
}

// NewStack builds one stack over an unconnected nictest queue, for tests
// that play the wire themselves: they put frames on its receive side
// (Inject) and read what it transmitted (Sent, ReadSent), and drive the
// stack (Deliver, Flush, or a loop of their own). cfg is completed as
// Options.A is. Cleanup closes the stack, then the queue.
func NewStack(tb testing.TB, cfg stack.Config) (*stack.Stack, *nictest.Queue) {
	tb.Helper()
	return NewStackOn(tb, nictest.New(MTU), cfg)
}

// NewStackOn is NewStack over q, an unconnected queue of MTU the test
// made (to set its TX checksum offload, say); Cleanup closes q too.
func NewStackOn(tb testing.TB, q *nictest.Queue, cfg stack.Config) (*stack.Stack, *nictest.Queue) {
	tb.Helper()
	st, err := stack.New(q, config(cfg, nil, "a", AddrA4, AddrA6))
	if err != nil {
		q.Close()
		tb.Fatalf("stack: %v", err)
	}
	tb.Cleanup(func() {
		st.Close()
		q.Close()
	})
	return st, q
}

// Pass runs one pass of A's loop, then one of B's, and reports whether
// either did anything. Only a Manual pair may be passed, from one
// goroutine.
func (p *Pair) Pass() bool {
	a := p.la.pass()
	b := p.lb.pass()
	return a || b
}

// Close stops the loops, closes both stacks (their last FINs and RSTs are
// flushed to a link nobody reads any more), then the queues. It is
// idempotent.
func (p *Pair) Close() {
	p.closeOnce.Do(func() {
		p.la.stop.Store(true)
		p.lb.stop.Store(true)
		p.wg.Wait() // at most an idle wait
		for _, st := range []*stack.Stack{p.A, p.B} {
			st.Close()
			st.Flush()
		}
		p.QA.Close()
		p.QB.Close()
	})
}

// loop drives one stack over its queue.
type loop struct {
	q      *nictest.Queue
	st     *stack.Stack
	frames [][]byte
	segs   []int // with a multi-buffer queue: RxPackets's frames
	stop   atomic.Bool
}

// Idle waits of a loop: the first after a pass with work, and the longest.
const (
	idleWaitMin = 50 * time.Microsecond
	idleWaitMax = time.Millisecond
)

func newLoop(q *nictest.Queue, st *stack.Stack) *loop {
	return &loop{q: q, st: st, frames: make([][]byte, 256), segs: make([]int, 64)}
}

// pass takes a burst off the queue, delivers it, yields to gVisor's
// goroutines and flushes, as an lcore's pass does. It reports whether it
// received or sent a frame. A closed queue makes it do nothing.
func (l *loop) pass() bool {
	var n int
	var err error
	if l.q.MultiBuffer() {
		n, err = l.q.RxPackets(l.frames, l.segs)
	} else {
		n, err = l.q.Rx(l.frames[:len(l.segs)])
	}
	if err != nil {
		return false
	}
	fired := 0
	if c := l.st.LoopClock(); c != nil {
		fired = c.Fire()
	}
	if l.q.MultiBuffer() {
		l.st.DeliverPackets(l.frames, l.segs[:n])
	} else {
		l.st.Deliver(l.frames[:n])
	}
	runtime.Gosched()
	return l.st.Flush() > 0 || n > 0 || fired > 0
}

func (l *loop) routineRun(wg *sync.WaitGroup) {
	defer wg.Done()
	wait := idleWaitMin
	for !l.stop.Load() {
		if l.pass() {
			wait = idleWaitMin
			continue
		}
		w := wait
		if c := l.st.LoopClock(); c != nil {
			if d, ok := c.NextDeadline(c.Reading()); ok {
				w = min(w, d)
			}
		}
		if l.q.Wait(w) != nil {
			return // closed
		}
		wait = min(2*wait, idleWaitMax)
	}
}
