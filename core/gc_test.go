package core

import (
	"errors"
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/xstest"
)

func TestGCPolicyPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name string
		p    GCPolicy
		live uint64
		want int
	}{
		{"small heap grows by the headroom", GCPolicy{Percent: 100, Headroom: 256 * mib}, 64 * mib, 400},
		{"headroom rounds up", GCPolicy{Percent: 100, Headroom: 256 * mib}, 3 * mib, 8534},
		{"large heap grows by the percentage", GCPolicy{Percent: 100, Headroom: 256 * mib}, 1024 * mib, 100},
		{"no headroom", GCPolicy{Percent: 150}, 1 * mib, 150},
		{"nothing live yet", GCPolicy{Percent: 100, Headroom: 256 * mib}, 0, 100},
		{"capped", GCPolicy{Percent: 100, Headroom: 1 << 50}, 1, math.MaxInt32},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.percentFor(tc.live); got != tc.want {
				t.Errorf("percentFor(%d) = %d, want %d", tc.live, got, tc.want)
			}
		})
	}
}

// currentGCPercent reads GOGC without changing it.
func currentGCPercent() int {
	old := debug.SetGCPercent(100)
	debug.SetGCPercent(old)
	return old
}

func TestApplyGCPolicy(t *testing.T) {
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	t.Cleanup(func() {
		applyGCPolicy(GCPolicy{Percent: 100})
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
	})
	if notes := applyGCPolicy(GCPolicy{Percent: 100, Headroom: 1 << 40, MemoryLimit: 3 << 30}); len(notes) != 0 {
		t.Fatalf("notes with no GOGC or GOMEMLIMIT in the environment: %q", notes)
	}
	if got := debug.SetMemoryLimit(-1); got != 3<<30 {
		t.Errorf("memory limit %d, want %d", got, int64(3<<30))
	}
	// The pacer follows every collection: after one, GOGC is what the
	// headroom gives for the live heap it left.
	xstest.WaitFor(t, 10*time.Second, "GOGC set after a collection", func() error {
		if currentGCPercent() <= 100 {
			runtime.GC()
			return errors.New("no adjustment yet")
		}
		return nil
	})
	if got := currentGCPercent(); got <= 1000 {
		t.Errorf("GOGC %d after a collection with 1 TiB of headroom, want far above 1000", got)
	}
	// A smaller policy takes over at once.
	applyGCPolicy(GCPolicy{Percent: 150})
	if got := currentGCPercent(); got != 150 {
		t.Errorf("GOGC %d after gc_percent=150 with no headroom, want 150", got)
	}
}

func TestApplyGCPolicyEnvironment(t *testing.T) {
	t.Setenv("GOGC", "300")
	t.Setenv("GOMEMLIMIT", "1GiB")
	before := currentGCPercent()
	notes := applyGCPolicy(GCPolicy{Percent: 999, Headroom: 1 << 30, MemoryLimit: 5 << 30})
	if len(notes) != 2 {
		t.Errorf("notes %q, want one for GOGC and one for GOMEMLIMIT", notes)
	}
	if got := currentGCPercent(); got != before {
		t.Errorf("GOGC changed from %d to %d although GOGC is set in the environment", before, got)
	}
	if got := debug.SetMemoryLimit(-1); got == 5<<30 {
		t.Errorf("memory limit applied although GOMEMLIMIT is set in the environment")
	}
}
