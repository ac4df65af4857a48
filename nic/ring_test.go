package nic

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
)

// newTestRings returns a producer and a consumer view of one ring in Go
// memory, standing for user space and the kernel.
func newTestRings(size uint32, start uint32) (*producerRing[uint64], *consumerRing[uint64]) {
	var prod, cons, flags uint32 = start, start, 0
	descs := make([]uint64, size)
	idx := ringIndex{producer: &prod, consumer: &cons, flags: &flags, mask: size - 1, cachedProd: start, cachedCons: start}
	return &producerRing[uint64]{ringIndex: idx, descs: descs}, &consumerRing[uint64]{ringIndex: idx, descs: descs}
}

func TestRingProduceConsume(t *testing.T) {
	for _, start := range []uint32{0, 5, math.MaxUint32 - 3} {
		t.Run(fmt.Sprint("start=", start), func(t *testing.T) {
			p, c := newTestRings(8, start)
			next, want := uint64(0), uint64(0)
			for round := 0; round < 20; round++ {
				pos, n := p.reserve(5)
				for i := range n {
					p.set(pos+i, next)
					next++
				}
				p.submit(n)
				if round == 0 && n != 5 {
					t.Fatalf("first reserve got %d slots, want 5", n)
				}
				pos, got := c.peek(3)
				for i := range got {
					if d := c.get(pos + i); d != want {
						t.Fatalf("round %d: got desc %d, want %d", round, d, want)
					}
					want++
				}
				c.release(got)
			}
			// Drain and check nothing was lost or duplicated.
			pos, got := c.peek(100)
			for i := range got {
				if d := c.get(pos + i); d != want {
					t.Fatalf("drain: got desc %d, want %d", d, want)
				}
				want++
			}
			c.release(got)
			if want != next {
				t.Fatalf("consumed %d descs, produced %d", want, next)
			}
		})
	}
}

func TestRingFullAndEmpty(t *testing.T) {
	p, c := newTestRings(4, 0)
	if _, n := c.peek(1); n != 0 {
		t.Fatalf("peek on empty ring got %d", n)
	}
	pos, n := p.reserve(10)
	if n != 4 {
		t.Fatalf("reserve(10) on empty ring of 4 got %d", n)
	}
	for i := range n {
		p.set(pos+i, uint64(i))
	}
	p.submit(n)
	if _, n := p.reserve(1); n != 0 {
		t.Fatalf("reserve on full ring got %d", n)
	}
	if got := p.pending(); got != 4 {
		t.Fatalf("pending = %d, want 4", got)
	}
	_, got := c.peek(2)
	c.release(got)
	if _, n := p.reserve(4); n != 2 {
		t.Fatalf("reserve after consumer freed 2 got %d", n)
	}
}

func TestRingCachesOtherIndex(t *testing.T) {
	p, c := newTestRings(8, 0)
	pos, n := p.reserve(4)
	for i := range n {
		p.set(pos+i, 1)
	}
	p.submit(4)
	c.peek(4)
	// The producer publishes more, but a peek that the cached view
	// satisfies does not reload the producer index.
	atomic.StoreUint32(p.producer, 6)
	if _, got := c.peek(2); got != 2 || c.cachedProd != 4 {
		t.Fatalf("peek(2) = %d with cachedProd %d, want 2 from cache 4", got, c.cachedProd)
	}
	if _, got := c.peek(6); got != 6 || c.cachedProd != 6 {
		t.Fatalf("peek(6) = %d with cachedProd %d, want 6 after reload", got, c.cachedProd)
	}
}

func TestRingNeedWakeup(t *testing.T) {
	p, _ := newTestRings(2, 0)
	if p.needWakeup() {
		t.Fatal("needWakeup with flags 0")
	}
	atomic.StoreUint32(p.flags, ringNeedWakeup)
	if !p.needWakeup() {
		t.Fatal("no needWakeup with XDP_RING_NEED_WAKEUP set")
	}
}

func TestFrameStackLIFO(t *testing.T) {
	s := newFrameStack(3)
	for _, a := range []uint64{0, 2048, 4096} {
		s.push(a)
	}
	for _, want := range []uint64{4096, 2048, 0} {
		if got := s.pop(); got != want {
			t.Fatalf("pop = %d, want %d", got, want)
		}
	}
	if s.len() != 0 {
		t.Fatalf("len = %d after popping all", s.len())
	}
}

func TestCheckRingSize(t *testing.T) {
	for _, tc := range []struct {
		n  int
		ok bool
	}{{1, true}, {2048, true}, {0, false}, {-4, false}, {1000, false}, {1 << 31, false}} {
		if err := checkRingSize("rx_ring", tc.n); (err == nil) != tc.ok {
			t.Errorf("checkRingSize(%d) = %v, want ok=%v", tc.n, err, tc.ok)
		}
	}
}

func TestNotSupportedError(t *testing.T) {
	err := fmt.Errorf("xsk on eth0 queue 0: %w", &NotSupportedError{Feature: "AF_XDP zero-copy in driver veth", Hint: "use copy mode"})
	if !errors.Is(err, ErrNotSupported) {
		t.Fatalf("%v does not match ErrNotSupported", err)
	}
	want := "xsk on eth0 queue 0: AF_XDP zero-copy in driver veth not supported: use copy mode"
	if err.Error() != want {
		t.Fatalf("message\n got %q\nwant %q", err.Error(), want)
	}
}

func BenchmarkRingBatch(b *testing.B) {
	p, c := newTestRings(2048, 0)
	b.ReportAllocs()
	for b.Loop() {
		pos, n := p.reserve(64)
		for i := range n {
			p.set(pos+i, uint64(i))
		}
		p.submit(n)
		pos, n = c.peek(64)
		var sum uint64
		for i := range n {
			sum += c.get(pos + i)
		}
		c.release(n)
	}
}
