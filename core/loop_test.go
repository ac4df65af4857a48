package core

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xstack/xstack/nic/nictest"
	"github.com/xstack/xstack/stack"
	"github.com/xstack/xstack/stack/stacktest"
)

// fakeClock is a loop clock that moves only when the test moves it.
type fakeClock struct{ now time.Duration }

func (c *fakeClock) Now() time.Duration { return c.now }

// junkFrame is a frame the stack receives and drops (an EtherType it does
// not speak): enough to make a pass busy.
var junkFrame = append(append(make([]byte, 12), 0x88, 0xb5), make([]byte, 46)...)

func newTestLoop(t *testing.T, cfg LoopConfig) (*Loop, *nictest.Queue) {
	t.Helper()
	st, q := stacktest.NewStack(t, stack.Config{Name: "t0", Addr4: netip.MustParsePrefix("198.18.0.1/16")})
	return NewLoop(q, st, cfg), q
}

// TestLoopBusyTime drives a loop whose passes take a known time on the
// loop's clock, busy ones (a frame received) far longer than idle ones, as
// under a load that saturates the lcore: the busy figure must be the
// share of time, not the share of passes.
func TestLoopBusyTime(t *testing.T) {
	tests := []struct {
		name       string
		every      int           // one busy pass in every
		busy, idle time.Duration // what a busy and an idle pass take
		passes     int
	}{
		{name: "saturated", every: 4, busy: 79 * time.Microsecond, idle: time.Microsecond, passes: 4000},
		{name: "half", every: 2, busy: 10 * time.Microsecond, idle: 10 * time.Microsecond, passes: 4000},
		{name: "idle", every: 1000, busy: 5 * time.Microsecond, idle: 2 * time.Microsecond, passes: 4000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{now: time.Second}
			l, q := newTestLoop(t, LoopConfig{BusyPoll: true, Now: clk.Now})
			pass := 0
			app := func() error {
				// The pass received a frame iff one was injected before
				// it; it "takes" its time here, and the next pass's
				// start closes its interval.
				if pass%tt.every == 0 {
					clk.now += tt.busy
				} else {
					clk.now += tt.idle
				}
				pass++
				if pass == tt.passes {
					l.Stop()
				} else if pass%tt.every == 0 {
					q.Inject(junkFrame)
				}
				return nil
			}
			q.Inject(junkFrame)
			if err := l.Run(app); err != ErrStopped {
				t.Fatalf("Run: %v, want ErrStopped", err)
			}
			s := l.Stats()
			busyPasses := (tt.passes + tt.every - 1) / tt.every
			if got, want := s.Passes-s.IdlePasses, uint64(busyPasses); got != want {
				t.Fatalf("busy passes = %d, want %d (%+v)", got, want, s)
			}
			wantBusy := time.Duration(busyPasses) * tt.busy
			wantIdle := time.Duration(tt.passes-busyPasses) * tt.idle
			if time.Duration(s.BusyNs) != wantBusy || time.Duration(s.IdleNs) != wantIdle {
				t.Fatalf("busy %v idle %v, want %v and %v", time.Duration(s.BusyNs), time.Duration(s.IdleNs), wantBusy, wantIdle)
			}
			byTime := float64(s.BusyNs) / float64(s.BusyNs+s.IdleNs)
			byPasses := float64(s.Passes-s.IdlePasses) / float64(s.Passes)
			t.Logf("busy by time %.1f%%, by passes %.1f%%", 100*byTime, 100*byPasses)
			if tt.name == "saturated" && byTime < 0.90 {
				t.Errorf("a saturated loop reads %.1f%% busy, want at least 90%%", 100*byTime)
			}
			if tt.name == "idle" && byTime > 0.05 {
				t.Errorf("an idle loop reads %.1f%% busy, want at most 5%%", 100*byTime)
			}
		})
	}
}

// TestLoopLongPasses drives busy passes of known lengths around the
// bounds, and idle ones of any length (a sleep is not a long pass): each
// busy pass counts under every bound it reaches, and the longest is kept.
func TestLoopLongPasses(t *testing.T) {
	clk := &fakeClock{now: time.Second}
	l, q := newTestLoop(t, LoopConfig{BusyPoll: true, Now: clk.Now})
	type step struct {
		busy bool
		d    time.Duration
	}
	steps := []step{
		{true, 99 * time.Microsecond}, {true, 100 * time.Microsecond},
		{false, 50 * time.Millisecond}, {true, 999 * time.Microsecond},
		{true, time.Millisecond}, {true, 12 * time.Millisecond},
		{false, time.Second}, {true, 10 * time.Microsecond},
	}
	i := 0
	app := func() error {
		clk.now += steps[i].d
		i++
		switch {
		case i == len(steps):
			l.Stop()
		case steps[i].busy:
			q.Inject(junkFrame)
		}
		return nil
	}
	q.Inject(junkFrame)
	if err := l.Run(app); err != ErrStopped {
		t.Fatalf("Run: %v, want ErrStopped", err)
	}
	// The last pass's interval is closed by no later pass.
	s := l.Stats()
	if want := [len(LongPassBounds)]uint64{4, 2, 1}; s.LongPasses != want {
		t.Errorf("long passes %v, want %v (bounds %v)", s.LongPasses, want, LongPassBounds)
	}
	if s.MaxPassNs != uint64(12*time.Millisecond) {
		t.Errorf("longest pass %v, want 12ms", time.Duration(s.MaxPassNs))
	}
}

// TestLoopBusyTimeRealClock runs a loop on the real clock: with a frame in
// every pass all its time is busy, and spinning with nothing to do all of
// it is idle, whatever the machine's speed.
func TestLoopBusyTimeRealClock(t *testing.T) {
	for _, busy := range []bool{true, false} {
		l, q := newTestLoop(t, LoopConfig{BusyPoll: true})
		passes := 0
		if busy {
			q.Inject(junkFrame)
		}
		app := func() error {
			passes++
			if passes == 2000 {
				l.Stop()
			} else if busy {
				q.Inject(junkFrame)
			}
			return nil
		}
		if err := l.Run(app); err != ErrStopped {
			t.Fatalf("Run: %v", err)
		}
		s := l.Stats()
		if s.BusyNs+s.IdleNs == 0 {
			t.Fatalf("no time accounted: %+v", s)
		}
		if busy && s.IdleNs != 0 || !busy && s.BusyNs != 0 {
			t.Errorf("busy=%v: busy %d ns, idle %d ns; want all of it %s", busy, s.BusyNs, s.IdleNs, map[bool]string{true: "busy", false: "idle"}[busy])
		}
	}
}

// TestLoopIdleSleepIsIdle checks that an idle pass's wait on the queue is
// charged to idle time.
func TestLoopIdleSleepIsIdle(t *testing.T) {
	l, _ := newTestLoop(t, LoopConfig{BusyPoll: true, IdleSleep: time.Millisecond, TxFlush: time.Millisecond})
	passes := 0
	app := func() error {
		if passes++; passes == 20 {
			l.Stop()
		}
		return nil
	}
	if err := l.Run(app); err != ErrStopped {
		t.Fatalf("Run: %v", err)
	}
	s := l.Stats()
	if s.BusyNs != 0 || time.Duration(s.IdleNs) < 19*time.Millisecond || s.Sleeps < 19 {
		t.Errorf("after 20 idle passes with 1 ms sleeps: %+v; want busy 0, idle at least 19 ms", s)
	}
}
