package core

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// ringSeqFrame fills buf[:n] with the frame for sequence number seq: the number
// in its first 8 bytes, then a pattern that depends on seq and the offset.
// n must be at least 8.
func ringSeqFrame(buf []byte, seq uint64, n int) []byte {
	f := buf[:n]
	binary.BigEndian.PutUint64(f, seq)
	for i := 8; i < n; i++ {
		f[i] = byte(seq*131 + uint64(i)*7)
	}
	return f
}

// ringSeqLen is the length of frame seq in the tests that derive it: from 8 to
// max bytes, spread so that short and full slots both occur.
func ringSeqLen(seq uint64, max int) int {
	h := seq * 0x9e3779b97f4a7c15
	return 8 + int((h>>40)%uint64(max-7))
}

// ringCheckFrame reports what is wrong with f as frame seq of length n.
func ringCheckFrame(f []byte, seq uint64, n int) error {
	if len(f) != n {
		return fmt.Errorf("frame %d: %d bytes, want %d", seq, len(f), n)
	}
	if got := binary.BigEndian.Uint64(f); got != seq {
		return fmt.Errorf("frame %d: carries sequence number %d", seq, got)
	}
	for i := 8; i < n; i++ {
		if f[i] != byte(seq*131+uint64(i)*7) {
			return fmt.Errorf("frame %d: byte %d is %#x, want %#x", seq, i, f[i], byte(seq*131+uint64(i)*7))
		}
	}
	return nil
}

func newTestHandoffRing(tb testing.TB, slots, slotSize int) *HandoffRing {
	tb.Helper()
	r, err := NewHandoffRing(slots, slotSize)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

func ringTestFrames(sizes ...int) [][]byte {
	out := make([][]byte, len(sizes))
	for i, n := range sizes {
		out[i] = bytes.Repeat([]byte{byte(i + 1)}, n)
	}
	return out
}

func TestHandoffRingGeometry(t *testing.T) {
	for _, tc := range []struct {
		slots, slotSize int
		ok              bool
	}{
		{1, 1, true},
		{2, 2048, true},
		{1024, 9216, true},
		{0, 2048, false},
		{-4, 2048, false},
		{3, 2048, false},
		{1000, 2048, false},
		{MaxHandoffRingSlots * 2, 64, false},
		{4, 0, false},
		{4, -1, false},
		{4, MaxHandoffSlotSize + 1, false},
	} {
		t.Run(fmt.Sprintf("%dx%d", tc.slots, tc.slotSize), func(t *testing.T) {
			r, err := NewHandoffRing(tc.slots, tc.slotSize)
			if (err == nil) != tc.ok {
				t.Fatalf("NewHandoffRing(%d, %d) error %v, want ok=%v", tc.slots, tc.slotSize, err, tc.ok)
			}
			if err != nil {
				return
			}
			defer r.Close()
			if r.Slots() != tc.slots || r.SlotSize() != tc.slotSize {
				t.Errorf("Slots, SlotSize = %d, %d, want %d, %d", r.Slots(), r.SlotSize(), tc.slots, tc.slotSize)
			}
			if len(r.data) != tc.slots*int(r.stride) || r.stride%64 != 0 || int(r.stride) < tc.slotSize+ringSlotHeader {
				t.Errorf("stride %d, data %d bytes", r.stride, len(r.data))
			}
		})
	}
}

func TestHandoffRingEmpty(t *testing.T) {
	r := newTestHandoffRing(t, 4, 64)
	out := make([][]byte, 4)
	if n := r.Dequeue(out); n != 0 {
		t.Fatalf("Dequeue on an empty ring = %d", n)
	}
	if n := r.Enqueue(nil); n != 0 {
		t.Fatalf("Enqueue(nil) = %d", n)
	}
	if n := r.Dequeue(nil); n != 0 {
		t.Fatalf("Dequeue(nil) = %d", n)
	}
	r.Release() // nothing outstanding: no-op
	if got := r.Stats(); got != (HandoffRingStats{}) {
		t.Fatalf("Stats = %+v, want zero", got)
	}
}

func TestHandoffRingFullAndRelease(t *testing.T) {
	r := newTestHandoffRing(t, 4, 64)
	in := ringTestFrames(1, 2, 3, 4, 5, 6)
	if n := r.Enqueue(in); n != 4 {
		t.Fatalf("Enqueue 6 into 4 slots = %d, want 4", n)
	}
	if n := r.Enqueue(in[4:]); n != 0 {
		t.Fatalf("Enqueue into a full ring = %d", n)
	}
	if got, want := r.Stats(), (HandoffRingStats{Enqueued: 4, Full: 4}); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
	out := make([][]byte, 3)
	if n := r.Dequeue(out); n != 3 {
		t.Fatalf("Dequeue = %d, want 3", n)
	}
	for i, f := range out {
		if !bytes.Equal(f, in[i]) {
			t.Fatalf("frame %d = %v, want %v", i, f, in[i])
		}
	}
	// The views are lent, not released: the producer still sees a full ring.
	if n := r.Enqueue(in[4:5]); n != 0 {
		t.Fatalf("Enqueue while the consumer holds the slots = %d", n)
	}
	if r.Len() != 4 {
		t.Fatalf("Len = %d, want 4", r.Len())
	}
	r.Release()
	if r.Len() != 1 {
		t.Fatalf("Len after Release = %d, want 1", r.Len())
	}
	if n := r.Enqueue(in[4:]); n != 2 {
		t.Fatalf("Enqueue after Release = %d, want 2", n)
	}
	out = make([][]byte, 8)
	n := r.Dequeue(out)
	if n != 3 {
		t.Fatalf("Dequeue = %d, want 3", n)
	}
	for i, want := range [][]byte{in[3], in[4], in[5]} {
		if !bytes.Equal(out[i], want) {
			t.Fatalf("frame %d = %v, want %v", i, out[i], want)
		}
	}
	r.Release()
	if got, want := r.Stats(), (HandoffRingStats{Enqueued: 6, Dequeued: 6, Full: 5}); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
}

// TestHandoffRingDequeueReleases checks that Dequeue releases the previous
// batch itself, so a consumer that never calls Release still drains.
func TestHandoffRingDequeueReleases(t *testing.T) {
	r := newTestHandoffRing(t, 2, 16)
	out := make([][]byte, 1)
	for seq := range uint64(10) {
		var buf [16]byte
		if n := r.Enqueue([][]byte{ringSeqFrame(buf[:], seq, 8)}); n != 1 {
			t.Fatalf("Enqueue %d = %d", seq, n)
		}
		if n := r.Dequeue(out); n != 1 {
			t.Fatalf("Dequeue %d = %d", seq, n)
		}
		if err := ringCheckFrame(out[0], seq, 8); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.Stats().Dequeued; got != 9 {
		t.Fatalf("Dequeued = %d, want 9 (the last batch is still lent)", got)
	}
}

func TestHandoffRingOversize(t *testing.T) {
	r := newTestHandoffRing(t, 4, 100)
	in := ringTestFrames(0, 101, 100, 5000, 1, 99, 7, 200)
	// Goes in: 0, 100, 1, 99 (four slots). Oversize: 101, 5000, 200.
	// Refused as full: 7.
	if n := r.Enqueue(in); n != 4 {
		t.Fatalf("Enqueue = %d, want 4", n)
	}
	if got, want := r.Stats(), (HandoffRingStats{Enqueued: 4, Full: 1, Oversize: 3}); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
	out := make([][]byte, 8)
	n := r.Dequeue(out)
	if n != 4 {
		t.Fatalf("Dequeue = %d, want 4", n)
	}
	for i, want := range [][]byte{in[0], in[2], in[4], in[5]} {
		if !bytes.Equal(out[i], want) {
			t.Fatalf("frame %d: %d bytes, want %d", i, len(out[i]), len(want))
		}
	}
}

// TestHandoffRingViewsCapped checks that a consumer appending to a view
// cannot write into the next slot.
func TestHandoffRingViewsCapped(t *testing.T) {
	r := newTestHandoffRing(t, 4, 64)
	r.Enqueue(ringTestFrames(3, 3))
	out := make([][]byte, 2)
	r.Dequeue(out)
	if cap(out[0]) != 3 {
		t.Fatalf("cap of a 3-byte view = %d", cap(out[0]))
	}
	_ = append(out[0], make([]byte, 200)...)
	if !bytes.Equal(out[1], []byte{2, 2, 2}) {
		t.Fatalf("appending to a view changed the next frame: %v", out[1])
	}
}

// TestHandoffRingWrap runs the free-running uint32 indexes across 2^32 and
// the slot index across the end of the ring, with every batch size that
// fits and a consumer that lags by a varying amount.
func TestHandoffRingWrap(t *testing.T) {
	const slots, slotSize = 8, 128
	for _, start := range []uint32{0, 5, 1<<32 - 3, 1<<32 - slots} {
		t.Run(fmt.Sprintf("start=%#x", start), func(t *testing.T) {
			r := newTestHandoffRing(t, slots, slotSize)
			r.sh.prod.Store(start)
			r.sh.cons.Store(start)
			r.prod, r.consCache = start, start
			r.cons, r.read, r.prodCache = start, start, start

			var sent, got uint64
			buf := make([]byte, (slots+3)*slotSize)
			in := make([][]byte, slots+3)
			out := make([][]byte, slots+3)
			for round := range 200 {
				nIn := 1 + round%len(in)
				for i := range nIn {
					s := sent + uint64(i)
					in[i] = ringSeqFrame(buf[i*slotSize:], s, ringSeqLen(s, slotSize))
				}
				free := slots - r.Len()
				n := r.Enqueue(in[:nIn])
				if want := min(nIn, free); n != want {
					t.Fatalf("round %d: Enqueue %d with %d free = %d, want %d", round, nIn, free, n, want)
				}
				sent += uint64(n)
				nOut := 1 + (round*5)%len(out)
				m := r.Dequeue(out[:nOut])
				if want := min(nOut, int(sent-got)); m != want {
					t.Fatalf("round %d: Dequeue %d with %d queued = %d, want %d", round, nOut, sent-got, m, want)
				}
				for _, f := range out[:m] {
					if err := ringCheckFrame(f, got, ringSeqLen(got, slotSize)); err != nil {
						t.Fatalf("round %d: %v", round, err)
					}
					got++
				}
				if round%3 == 0 {
					r.Release()
				}
			}
			if sent < 4*slots || r.prod-start != uint32(sent) || r.read-start != uint32(got) {
				t.Fatalf("sent %d, got %d: prod moved %d, cons moved %d", sent, got, r.prod-start, r.read-start)
			}
		})
	}
}

// TestHandoffRingCorruptPeer writes nonsense where the other side's index
// and the slot lengths live: this side must neither panic nor step outside
// the mapping.
func TestHandoffRingCorruptPeer(t *testing.T) {
	r := newTestHandoffRing(t, 4, 64)
	r.Enqueue(ringTestFrames(10, 20))
	for i := range r.slots {
		binary.NativeEndian.PutUint32(r.data[i*r.stride:], 1<<31)
	}
	r.sh.prod.Store(1 << 20) // "a million frames ahead" in a 4-slot ring
	out := make([][]byte, 8)
	if n := r.Dequeue(out); n != 0 {
		t.Fatalf("Dequeue with an impossible producer index = %d, want 0", n)
	}
	r.sh.prod.Store(2)
	n := r.Dequeue(out)
	if n != 2 {
		t.Fatalf("Dequeue = %d, want 2", n)
	}
	for _, f := range out[:n] {
		if len(f) != 64 {
			t.Fatalf("corrupt length not clamped to the slot: %d", len(f))
		}
	}
	r.Release()
	// The producer keeps its last sane view of the consumer (index 0 of
	// prod 2): two more frames fit, a third does not.
	r.sh.cons.Store(1 << 30)
	if n := r.Enqueue(ringTestFrames(1, 1, 1)); n != 2 {
		t.Fatalf("Enqueue with an impossible consumer index = %d, want 2", n)
	}
	if r.Len() != 4 {
		t.Fatalf("Len = %d, want it clamped to 4", r.Len())
	}
}

func TestHandoffRingClose(t *testing.T) {
	r, err := NewHandoffRing(4, 64)
	if err != nil {
		t.Fatal(err)
	}
	r.Enqueue(ringTestFrames(1))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := r.Enqueue(ringTestFrames(1)); n != 0 {
		t.Fatalf("Enqueue after Close = %d", n)
	}
	if n := r.Dequeue(make([][]byte, 1)); n != 0 {
		t.Fatalf("Dequeue after Close = %d", n)
	}
	r.Release()
	if r.Len() != 0 || r.Stats() != (HandoffRingStats{}) {
		t.Fatal("Len or Stats after Close not zero")
	}
	if err := r.Remove(); err == nil {
		t.Fatal("Remove of an anonymous ring succeeded")
	}
}

func TestHandoffRingAllocs(t *testing.T) {
	r := newTestHandoffRing(t, 64, 2048)
	in := make([][]byte, 32)
	for i := range in {
		in[i] = make([]byte, 64+i)
	}
	out := make([][]byte, 32)
	allocs := testing.AllocsPerRun(1000, func() {
		r.Enqueue(in)
		r.Enqueue(in[:1])
		r.Dequeue(out)
		r.Dequeue(out[:1])
		r.Release()
	})
	if allocs != 0 {
		t.Fatalf("Enqueue/Dequeue/Release allocate %v times per run", allocs)
	}
}

// TestHandoffRingFile covers the shared-file constructors: a producer joins
// the consumer's ring and both see the same frames and counters, a second
// producer is refused, and damaged files are refused with clear errors.
// createRing creates the ring file at path or fails t.
func createRing(t testing.TB, path string, slots, slotSize int) *HandoffRing {
	t.Helper()
	r, err := CreateHandoffRing(path, slots, slotSize)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestHandoffRingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ring0")
	cons := createRing(t, path, 8, 256)
	defer cons.Close()
	if m, _ := filepath.Glob(filepath.Join(dir, "*.tmp*")); len(m) != 0 {
		t.Fatalf("temporary files left behind: %v", m)
	}
	prod, err := OpenHandoffRing(path)
	if err != nil {
		t.Fatal(err)
	}
	if prod.Slots() != 8 || prod.SlotSize() != 256 {
		t.Fatalf("producer sees %d slots of %d bytes", prod.Slots(), prod.SlotSize())
	}
	if _, err := OpenHandoffRing(path); !errors.Is(err, ErrHandoffRingBusy) {
		t.Fatalf("second producer: %v, want ErrHandoffRingBusy", err)
	}
	if err := prod.Remove(); err == nil {
		t.Fatal("the producer removed the creator's file")
	}

	var buf [256]byte
	prod.Enqueue([][]byte{ringSeqFrame(buf[:], 0, 100), ringSeqFrame(buf[100:], 1, 156)})
	out := make([][]byte, 4)
	if n := cons.Dequeue(out); n != 2 {
		t.Fatalf("consumer Dequeue = %d, want 2", n)
	}
	if err := ringCheckFrame(out[0], 0, 100); err != nil {
		t.Fatal(err)
	}
	if err := ringCheckFrame(out[1], 1, 156); err != nil {
		t.Fatal(err)
	}
	cons.Release()
	if got, want := prod.Stats(), (HandoffRingStats{Enqueued: 2, Dequeued: 2}); got != want {
		t.Fatalf("producer's Stats = %+v, want %+v", got, want)
	}

	// A producer that goes away and comes back continues from the
	// published index.
	if err := prod.Close(); err != nil {
		t.Fatal(err)
	}
	prod, err = OpenHandoffRing(path)
	if err != nil {
		t.Fatalf("rejoin after Close: %v", err)
	}
	defer prod.Close()
	prod.Enqueue([][]byte{ringSeqFrame(buf[:], 2, 8)})
	if n := cons.Dequeue(out); n != 1 {
		t.Fatalf("Dequeue after rejoin = %d", n)
	}
	if err := ringCheckFrame(out[0], 2, 8); err != nil {
		t.Fatal(err)
	}

	if err := cons.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("file still there after Remove: %v", err)
	}
	if err := cons.Remove(); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if _, err := OpenHandoffRing(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("open a removed ring: %v, want ErrNotExist", err)
	}
}

func TestHandoffRingFileReplace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ring")
	if err := os.WriteFile(path, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := CreateHandoffRing(path, 4, 64)
	if err != nil {
		t.Fatalf("create over a stale file: %v", err)
	}
	r.Close()
	p, err := OpenHandoffRing(path)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if _, err := CreateHandoffRing(filepath.Join(t.TempDir(), "no", "such", "dir"), 4, 64); err == nil {
		t.Fatal("create in a missing directory succeeded")
	}
	if _, err := CreateHandoffRing(path, 3, 64); err == nil {
		t.Fatal("create with 3 slots succeeded")
	}
}

func TestHandoffRingFileBadHeader(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	r := createRing(t, good, 4, 64)
	r.Close()
	image, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	put32 := func(off int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { binary.NativeEndian.PutUint32(b[off:], v); return b }
	}
	for _, tc := range []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"empty", func([]byte) []byte { return nil }},
		{"short", func(b []byte) []byte { return b[:100] }},
		{"magic", put32(0, 0x12345678)},
		{"version", put32(8, 99)},
		{"slots not a power of two", put32(12, 3)},
		{"slots zero", put32(12, 0)},
		{"slot size zero", put32(16, 0)},
		{"slot size huge", put32(16, 1<<31)},
		{"stride", put32(20, 72)},
		{"truncated slots", func(b []byte) []byte { return b[:len(b)-64] }},
		{"extra bytes", func(b []byte) []byte { return append(b, make([]byte, 64)...) }},
		{"more slots than the file holds", put32(12, 8)},
		{"indexes apart", put32(128, 5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "bad")
			img := tc.damage(bytes.Clone(image))
			if err := os.WriteFile(path, img, 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := OpenHandoffRing(path)
			if err == nil {
				r.Close()
				t.Fatal("opened a damaged ring")
			}
			if !errors.Is(err, ErrBadHandoffRing) {
				t.Fatalf("error %v does not match ErrBadHandoffRing", err)
			}
			t.Log(err)
		})
	}
}

// TestHandoffRingProperty runs a producer and a consumer goroutine with
// random batch sizes, random frame lengths, oversize frames mixed in, a
// consumer that sometimes releases early and sometimes lets Dequeue do it,
// and both sides pausing at random: every frame that went in comes out
// once, in order, intact.
func TestHandoffRingProperty(t *testing.T) {
	for _, geo := range []struct{ slots, slotSize int }{{1, 64}, {2, 64}, {8, 200}, {64, 1500}} {
		t.Run(fmt.Sprintf("%dx%d", geo.slots, geo.slotSize), func(t *testing.T) {
			seed := uint64(time.Now().UnixNano())
			t.Logf("seed %d", seed)
			r := newTestHandoffRing(t, geo.slots, geo.slotSize)
			const total = 200000
			var wg sync.WaitGroup
			var prodErr error
			var oversize uint64
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(seed, 1))
				buf := make([]byte, 40*(geo.slotSize+100))
				batch := make([][]byte, 0, 40)
				var seq uint64
				for seq < total {
					batch = batch[:0]
					fit := 0
					for i := range 1 + rng.IntN(39) {
						if seq+uint64(fit) == total {
							break
						}
						b := buf[i*(geo.slotSize+100):]
						if rng.IntN(50) == 0 {
							batch = append(batch, b[:geo.slotSize+1+rng.IntN(99)])
							oversize++
							continue
						}
						s := seq + uint64(fit)
						batch = append(batch, ringSeqFrame(b, s, ringSeqLen(s, geo.slotSize)))
						fit++
					}
					// Retry until every frame that fits went in: those
					// that went in are the first n that fit.
					for pending := batch; len(pending) > 0; {
						n := r.Enqueue(pending)
						seq += uint64(n)
						pending = ringFitAfter(pending, n, geo.slotSize)
						if n == 0 {
							runtime.Gosched()
						}
					}
					if rng.IntN(8) == 0 {
						runtime.Gosched()
					}
				}
				if seq != total {
					prodErr = fmt.Errorf("producer sent %d, want %d", seq, total)
				}
			})
			rng := rand.New(rand.NewPCG(seed, 2))
			out := make([][]byte, 40)
			var got uint64
			deadline := time.Now().Add(time.Minute)
			for got < total {
				n := r.Dequeue(out[:1+rng.IntN(39)])
				for _, f := range out[:n] {
					if err := ringCheckFrame(f, got, ringSeqLen(got, geo.slotSize)); err != nil {
						t.Fatalf("after %d frames: %v", got, err)
					}
					got++
				}
				switch rng.IntN(4) {
				case 0:
					r.Release()
				case 1:
					runtime.Gosched()
				}
				if n == 0 && time.Now().After(deadline) {
					t.Fatalf("stalled after %d frames; ring %+v", got, r.Stats())
				}
			}
			r.Release()
			wg.Wait()
			if prodErr != nil {
				t.Fatal(prodErr)
			}
			if n := r.Dequeue(out); n != 0 {
				t.Fatalf("%d frames after the last", n)
			}
			st := r.Stats()
			if st.Enqueued != total || st.Dequeued != total || st.Oversize < oversize {
				t.Fatalf("Stats %+v: want %d enqueued and dequeued, at least %d oversize", st, total, oversize)
			}
			t.Logf("%+v", st)
		})
	}
}

// ringFitAfter returns the frames of batch that fit a slot and come after the
// first n that do: what Enqueue refused when it returned n.
func ringFitAfter(batch [][]byte, n, slotSize int) [][]byte {
	var rest [][]byte
	for _, f := range batch {
		if len(f) > slotSize {
			continue
		}
		if n > 0 {
			n--
			continue
		}
		rest = append(rest, f)
	}
	return rest
}

// The cross-process test runs this test binary a second time as the
// producer: these variables tell the child what to do.
const (
	ringChildEnv   = "XSTACK_TEST_HANDOFF_RING_PRODUCER"
	ringChildCount = 300000
	ringChildSize  = 512
)

// TestHandoffRingCrossProcess makes a ring file, starts a producer process
// on it (this binary again), and checks that the frames it sends arrive in
// order and intact.
func TestHandoffRingCrossProcess(t *testing.T) {
	if path := os.Getenv(ringChildEnv); path != "" {
		ringChild(t, path)
		return
	}
	path := filepath.Join(t.TempDir(), "ring")
	r := createRing(t, path, 256, ringChildSize)
	defer r.Remove()
	defer r.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^TestHandoffRingCrossProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), ringChildEnv+"="+path)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	out := make([][]byte, 32)
	var got uint64
	start := time.Now()
	deadline := start.Add(time.Minute)
	for got < ringChildCount {
		n := r.Dequeue(out)
		for _, f := range out[:n] {
			if err := ringCheckFrame(f, got, ringSeqLen(got, ringChildSize)); err != nil {
				t.Fatalf("after %d frames: %v", got, err)
			}
			got++
		}
		r.Release()
		if n > 0 {
			continue
		}
		select {
		case err := <-exited:
			if r.Len() > 0 {
				exited <- err
				continue
			}
			t.Fatalf("producer exited (%v) after %d of %d frames:\n%s", err, got, ringChildCount, stderr.Bytes())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("stalled after %d frames", got)
		}
		runtime.Gosched()
	}
	elapsed := time.Since(start)
	if err := <-exited; err != nil {
		t.Fatalf("producer: %v\n%s", err, stderr.Bytes())
	}
	st := r.Stats()
	if st.Enqueued != ringChildCount || st.Dequeued != ringChildCount || st.Oversize != 0 {
		t.Fatalf("Stats %+v, want %d enqueued and dequeued", st, ringChildCount)
	}
	t.Logf("%d frames across processes in %v (%.1f Mframes/s); %+v",
		got, elapsed, float64(got)/elapsed.Seconds()/1e6, st)
}

// ringChild is the producer side of TestHandoffRingCrossProcess.
func ringChild(t *testing.T, path string) {
	r, err := OpenHandoffRing(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 3))
	buf := make([]byte, 64*ringChildSize)
	batch := make([][]byte, 64)
	var seq uint64
	for seq < ringChildCount {
		k := min(1+rng.IntN(64), ringChildCount-int(seq))
		for i := range k {
			s := seq + uint64(i)
			batch[i] = ringSeqFrame(buf[i*ringChildSize:], s, ringSeqLen(s, ringChildSize))
		}
		pending := batch[:k]
		for len(pending) > 0 {
			n := r.Enqueue(pending)
			pending = pending[n:]
			seq += uint64(n)
			if n == 0 {
				runtime.Gosched()
			}
		}
	}
	fmt.Fprintln(os.Stderr, "producer sent", strconv.FormatUint(seq, 10))
}

// BenchmarkHandoffRing measures frames through the ring with 64-byte
// frames: on one goroutine (the cost of the copy and the index updates) and
// between two goroutines on two cores (adds the cache-line traffic).
func BenchmarkHandoffRing(b *testing.B) {
	for _, mode := range []string{"same-goroutine", "cross-goroutine"} {
		for _, batch := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/batch=%d", mode, batch), func(b *testing.B) {
				r := newTestHandoffRing(b, 1024, 2048)
				in := make([][]byte, batch)
				for i := range in {
					in[i] = make([]byte, 64)
				}
				out := make([][]byte, batch)
				b.ReportAllocs()
				b.SetBytes(int64(64 * batch))
				if mode == "same-goroutine" {
					for b.Loop() {
						r.Enqueue(in)
						r.Dequeue(out)
						r.Release()
					}
				} else {
					benchHandoffRingCrossGoroutine(b, r, in, out)
				}
				b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "frames/s")
			})
		}
	}
}

func benchHandoffRingCrossGoroutine(b *testing.B, r *HandoffRing, in, out [][]byte) {
	total := b.N * len(in)
	b.ResetTimer()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sent := 0; sent < total; {
			p := in[:min(len(in), total-sent)]
			n := r.Enqueue(p)
			sent += n
			if n == 0 {
				ringSpinPause()
			}
		}
	}()
	for got := 0; got < total; {
		n := r.Dequeue(out)
		got += n
		if n == 0 {
			ringSpinPause()
		}
		r.Release()
	}
	<-done
	b.StopTimer()
}

// ringSpinPause is what a benchmark side does when the ring had nothing for
// it: let the other goroutine run if it shares this P (GOMAXPROCS=1), and
// return at once if it does not.
func ringSpinPause() { runtime.Gosched() }
