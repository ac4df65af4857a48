package main

import "math/bits"

// Hist is a log-linear latency histogram: 32 buckets per power of two of
// nanoseconds, so each is within 3% of its values, in a fixed array.
type Hist struct {
	b [64 * 32]uint64
	n uint64
}

func bucket(v int64) int {
	if v < 32 {
		if v < 0 {
			v = 0
		}
		return int(v)
	}
	e := bits.Len64(uint64(v)) - 6 // v>>e has 6 bits: 32..63
	return (e+1)*32 + int(uint64(v)>>e) - 32
}

func bucketValue(i int) int64 {
	if i < 32 {
		return int64(i)
	}
	e := i/32 - 1
	return int64(i%32+32) << e
}

// Record adds one latency of v ns.
func (h *Hist) Record(v int64) {
	h.b[bucket(v)]++
	h.n++
}

// Quantile returns the latency below which q of the values lie, in ns.
func (h *Hist) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1
	var seen uint64
	for i, c := range h.b {
		seen += c
		if seen >= rank {
			return bucketValue(i)
		}
	}
	return bucketValue(len(h.b) - 1)
}
