package nic

import (
	"bytes"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// newTestDescRings is newTestRings for a ring of descriptors (RX, TX).
func newTestDescRings(size uint32) (*producerRing[xdpDesc], *consumerRing[xdpDesc]) {
	var prod, cons, flags uint32
	descs := make([]xdpDesc, size)
	idx := ringIndex{producer: &prod, consumer: &cons, flags: &flags, mask: size - 1}
	return &producerRing[xdpDesc]{ringIndex: idx, descs: descs}, &consumerRing[xdpDesc]{ringIndex: idx, descs: descs}
}

// TestWholeChains checks how RX descriptors group into frames: a
// descriptor with XDP_PKT_CONTD continues into the next, a chain whose end
// is not in view is left out, and no more frames than segs holds are taken.
func TestWholeChains(t *testing.T) {
	const c = unix.XDP_PKT_CONTD
	for _, tc := range []struct {
		name     string
		options  []uint32 // one per descriptor
		segsLen  int
		wantUsed uint32
		wantSegs []int
	}{
		{"single buffers", []uint32{0, 0, 0}, 8, 3, []int{1, 1, 1}},
		{"one chain", []uint32{c, c, c, c, c, 0}, 8, 6, []int{6}},
		{"mixed", []uint32{0, c, 0, 0, c, c, 0}, 8, 7, []int{1, 2, 1, 3}},
		{"open chain at the end", []uint32{0, c, 0, c, c}, 8, 3, []int{1, 2}},
		{"only an open chain", []uint32{c, c}, 8, 0, nil},
		{"segs full", []uint32{0, c, 0, 0, 0}, 2, 3, []int{1, 2}},
		{"no segs", []uint32{0}, 0, 0, nil},
		{"nothing", nil, 8, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, start := range []uint32{0, 6} { // 6: the chains wrap the ring
				p, cr := newTestDescRings(8)
				p.cachedProd, p.cachedCons, cr.cachedProd, cr.cachedCons = start, start, start, start
				*p.producer, *p.consumer = start, start
				pos, _ := p.reserve(uint32(len(tc.options)))
				for i, o := range tc.options {
					p.set(pos+uint32(i), xdpDesc{Addr: uint64(i) * 2048, Len: 100, Options: o})
				}
				p.submit(uint32(len(tc.options)))
				rpos, n := cr.peek(8)
				segs := make([]int, tc.segsLen)
				used, pkts := wholeChains(cr, rpos, n, segs)
				if used != tc.wantUsed || !slices.Equal(segs[:pkts], tc.wantSegs) {
					t.Fatalf("start %d: used %d descriptors in frames %v, want %d in %v", start, used, segs[:pkts], tc.wantUsed, tc.wantSegs)
				}
			}
		})
	}
}

// TestPutChain checks that a frame is cut into frames of room bytes, the
// descriptors chained with XDP_PKT_CONTD on all but the last, and that the
// bytes land where the descriptors point.
func TestPutChain(t *testing.T) {
	const room, frameSize = 1000, 2048
	for _, n := range []int{1, 999, 1000, 1001, 2000, 9014} {
		p, c := newTestDescRings(16)
		umem := make([]byte, 16*frameSize)
		f := make([]byte, n)
		for i := range f {
			f[i] = byte(i * 13)
		}
		next := uint64(0)
		end := putChain(p, 0, f, room, func() uint64 { a := next*frameSize + 24; next++; return a }, umem)
		want := uint32((n + room - 1) / room)
		if end != want {
			t.Fatalf("%d bytes: %d descriptors, want %d", n, end, want)
		}
		p.submit(end)
		pos, got := c.peek(16)
		var back []byte
		for i := range got {
			d := c.get(pos + i)
			if last := i == got-1; (d.Options&unix.XDP_PKT_CONTD == 0) != last {
				t.Fatalf("%d bytes: descriptor %d of %d has options %#x", n, i, got, d.Options)
			}
			if d.Len > room || d.Addr != uint64(i)*frameSize+24 {
				t.Fatalf("%d bytes: descriptor %d is %+v", n, i, d)
			}
			back = append(back, umem[d.Addr:d.Addr+uint64(d.Len)]...)
		}
		if !bytes.Equal(back, f) {
			t.Fatalf("%d bytes: the chain does not hold the frame", n)
		}
	}
}
