package core

import (
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// GCPolicy is how the Go garbage collector of an lcore process is paced
// (config.ini's gc_percent, gc_headroom_mb and memory_limit_mb).
//
// The GC's cost per byte allocated falls as the heap may grow further
// between collections: a collection marks the live heap, and the next one
// comes after Go's GOGC percentage of it has been allocated again. A server
// of short connections allocates per connection inside gVisor and holds
// little (the link endpoint holds its TIME-WAIT connections, timewait.go in
// package stack), so Go's default of
// 100% collects often for a small heap. A floor in bytes (the headroom) lets
// a small heap grow by a fixed amount instead, while a large heap (many
// idle connections) still grows by gc_percent only, so its memory overhead
// stays what gc_percent says.
type GCPolicy struct {
	Percent     int    // least growth between collections, in % of the live heap
	Headroom    uint64 // least growth between collections, in bytes; 0: none
	MemoryLimit uint64 // soft memory limit in bytes (debug.SetMemoryLimit); 0: none
}

// percentFor is the GOGC value that lets a heap of live bytes grow by
// max(live*Percent/100, Headroom) before the next collection.
func (p GCPolicy) percentFor(live uint64) int {
	pct := p.Percent
	if live == 0 || p.Headroom == 0 {
		return pct
	}
	h := (p.Headroom*100 + live - 1) / live
	if h > math.MaxInt32 {
		h = math.MaxInt32
	}
	return max(pct, int(h))
}

// gcPacer applies the process's GCPolicy after every collection. A process
// has one GC, so there is one pacer; the last policy applied wins.
var gcPacer struct {
	once   sync.Once
	mu     sync.Mutex // serialises adjustGC and guards gcLiveSample
	policy atomic.Pointer[GCPolicy]
	// last is the GOGC value last set, so that an unchanged value is not
	// set again. +checklocks:mu
	last int
}

// gcSentinel is the object whose finalizer runs after each collection. It
// holds a pointer, so the tiny allocator does not pack it with others (a
// finalizer needs an object of its own).
type gcSentinel struct {
	_ *byte
	_ [8]byte
}

// applyGCPolicy sets the process's GC pacing from p. GOGC and GOMEMLIMIT
// in the environment take precedence over the config: each one set there
// leaves its half of p unapplied, and the returned notes say so.
func applyGCPolicy(p GCPolicy) (notes []string) {
	if os.Getenv("GOMEMLIMIT") != "" {
		notes = append(notes, "GOMEMLIMIT is set in the environment: memory_limit_mb is not applied")
	} else if p.MemoryLimit > 0 {
		debug.SetMemoryLimit(int64(min(p.MemoryLimit, math.MaxInt64)))
	}
	if os.Getenv("GOGC") != "" {
		return append(notes, "GOGC is set in the environment: gc_percent and gc_headroom_mb are not applied")
	}
	gcPacer.policy.Store(&p)
	gcPacer.once.Do(func() {
		armGCSentinel()
	})
	adjustGC()
	return notes
}

func armGCSentinel() {
	runtime.SetFinalizer(new(gcSentinel), func(*gcSentinel) {
		adjustGC()
		armGCSentinel()
	})
}

// gcLiveSample is adjustGC's reading of the live heap. +checklocks:gcPacer.mu
var gcLiveSample = []metrics.Sample{{Name: "/gc/heap/live:bytes"}}

// adjustGC sets GOGC for the live heap the last collection left. It runs
// on the finalizer goroutine, once per collection.
func adjustGC() {
	gcPacer.mu.Lock()
	defer gcPacer.mu.Unlock()
	p := gcPacer.policy.Load()
	if p == nil {
		return
	}
	metrics.Read(gcLiveSample)
	var live uint64
	if gcLiveSample[0].Value.Kind() == metrics.KindUint64 {
		live = gcLiveSample[0].Value.Uint64()
	}
	if pct := p.percentFor(live); pct != gcPacer.last {
		gcPacer.last = pct
		debug.SetGCPercent(pct)
	}
}
