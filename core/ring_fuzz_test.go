package core

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/xstack/xstack/internal/fuzzcorpus"
)

// ringFuzzFrame is frame number seq of n bytes: seq in its first byte or
// two, then a pattern.
func ringFuzzFrame(seq, n int) []byte {
	f := make([]byte, n)
	for i := range f {
		f[i] = byte(seq*37 + i*11)
	}
	if n >= 2 {
		binary.BigEndian.PutUint16(f, uint16(seq))
	}
	return f
}

// FuzzHandoffRing drives one ring with a program of Enqueue, Dequeue and
// Release calls and of writes of arbitrary bytes anywhere in its shared
// memory, as a crashed or hostile peer process could make them. While the
// memory is intact the ring must behave exactly like a FIFO of bounded
// slots (every count, every byte, the counters); once it has been written
// to, the ring may garble frames but must not panic, and every view Dequeue
// returns must fit a slot and be capped at its length.
//
// geo picks the geometry (1 to 8 slots of 8 to 512 bytes). Each op byte's
// low two bits pick the call and the next bits its batch size; enqueued
// frames take their lengths, and writes their offset and bytes, from the
// following op bytes.
func FuzzHandoffRing(f *testing.F) {
	f.Fuzz(func(t *testing.T, geo uint8, ops []byte) {
		slots, slotSize := 1<<(geo&3), 8+8*int(geo>>2&63)
		r, err := NewHandoffRing(slots, slotSize)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		next := func() int {
			if len(ops) == 0 {
				return 0
			}
			b := ops[0]
			ops = ops[1:]
			return int(b)
		}
		var (
			queue    [][]byte // the model: frames in the ring, not yet dequeued
			lent     int      // frames dequeued and not released
			seq      int
			corrupt  bool
			in, outs uint64 // frames the model put in and took out and released
			full     uint64
			oversize uint64
			views    = make([][]byte, 8)
		)
		for len(ops) > 0 {
			op := next()
			k := op>>2&7 + 1
			switch op & 3 {
			case 0: // Enqueue k frames
				batch := make([][]byte, k)
				fit := 0
				for i := range batch {
					batch[i] = ringFuzzFrame(seq, next()%(slotSize+2))
					seq++
					if len(batch[i]) <= slotSize {
						fit++
					}
				}
				n := r.Enqueue(batch)
				if n < 0 || n > fit {
					t.Fatalf("Enqueue of %d frames (%d fit a slot) = %d", k, fit, n)
				}
				if corrupt {
					continue
				}
				if want := min(fit, slots-len(queue)-lent); n != want {
					t.Fatalf("Enqueue of %d frames (%d fit) into %d free slots = %d", k, fit, slots-len(queue)-lent, n)
				}
				taken := 0
				for _, fr := range batch {
					switch {
					case len(fr) > slotSize:
						oversize++
					case taken < n:
						queue = append(queue, fr)
						taken++
					default:
						full++
					}
				}
				in += uint64(n)
			case 1: // Dequeue up to k frames
				n := r.Dequeue(views[:k])
				if n < 0 || n > k {
					t.Fatalf("Dequeue of %d = %d", k, n)
				}
				for _, v := range views[:n] {
					if len(v) > slotSize || cap(v) != len(v) {
						t.Fatalf("view of %d bytes, capacity %d, from %d-byte slots", len(v), cap(v), slotSize)
					}
				}
				if corrupt {
					continue
				}
				outs += uint64(lent)
				if want := min(k, len(queue)); n != want {
					t.Fatalf("Dequeue of %d with %d frames in the ring = %d", k, len(queue), n)
				}
				for i, v := range views[:n] {
					if !bytes.Equal(v, queue[i]) {
						t.Fatalf("dequeued % x, want % x", v, queue[i])
					}
				}
				queue, lent = queue[n:], n
			case 2: // Release
				r.Release()
				outs += uint64(lent)
				lent = 0
			case 3: // a peer writes k bytes somewhere in the shared memory
				off := (next()<<8 | next()) % len(r.mem)
				for i := 0; i < k && off+i < len(r.mem); i++ {
					r.mem[off+i] = byte(next())
				}
				corrupt = true
			}
			if l := r.Len(); l < 0 || l > slots {
				t.Fatalf("Len = %d with %d slots", l, slots)
			}
			if !corrupt {
				if l := r.Len(); l != len(queue)+lent {
					t.Fatalf("Len = %d, want %d", l, len(queue)+lent)
				}
				want := HandoffRingStats{Enqueued: in, Dequeued: outs, Full: full, Oversize: oversize}
				if got := r.Stats(); got != want {
					t.Fatalf("Stats = %+v, want %+v", got, want)
				}
			}
		}
	})
}

func ringSeeds() []fuzzcorpus.Seed {
	enq := func(k int, lens ...byte) []byte { return append([]byte{byte((k - 1) << 2)}, lens...) }
	deq := func(k int) []byte { return []byte{byte((k-1)<<2 | 1)} }
	rel := []byte{2}
	poke := func(off uint16, b ...byte) []byte {
		return append([]byte{byte((len(b)-1)<<2 | 3), byte(off >> 8), byte(off)}, b...)
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	// geo: slots 1<<(geo&3), slot size 8+8*(geo>>2).
	const four64 = 2 | 7<<2 // 4 slots of 64 bytes
	return []fuzzcorpus.Seed{
		{Name: "fifo", Args: []any{uint8(four64), cat(enq(3, 10, 64, 0), deq(2), enq(2, 1, 2), rel, deq(8), deq(8))}},
		{Name: "full_and_oversize", Args: []any{uint8(four64), cat(enq(6, 65, 3, 4, 5, 6, 7), enq(1, 9), deq(1), enq(2, 9, 66), rel, deq(8))}},
		{Name: "wrap", Args: []any{uint8(1 | 0<<2), cat(enq(2, 8, 1), deq(1), enq(1, 7), deq(2), enq(2, 5, 5), deq(1), rel, enq(1, 3), deq(2))}},
		{Name: "one_slot", Args: []any{uint8(0), cat(enq(2, 8, 8), deq(1), enq(1, 4), rel, enq(1, 4), deq(1))}},
		{Name: "peer_corrupts_prod", Args: []any{uint8(four64), cat(enq(2, 10, 20), poke(128, 0, 0, 0x10, 0), deq(8), poke(128, 2, 0, 0, 0), deq(8), rel)}},
		{Name: "peer_corrupts_cons", Args: []any{uint8(four64), cat(enq(2, 10, 20), deq(2), rel, poke(256, 0, 0, 0, 0x40), enq(4, 1, 1, 1, 1), deq(8))}},
		{Name: "peer_corrupts_lengths", Args: []any{uint8(four64), cat(enq(4, 1, 2, 3, 4), poke(384, 0xff, 0xff, 0xff, 0x7f), poke(384+128, 65, 0, 0, 0), deq(8), rel)}},
		{Name: "peer_corrupts_header", Args: []any{uint8(four64), cat(poke(12, 0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0), enq(2, 30, 40), deq(8))}},
	}
}

func TestHandoffRingFuzzSeeds(t *testing.T) {
	fuzzcorpus.Sync(t, "FuzzHandoffRing", ringSeeds())
	fuzzcorpus.Sync(t, "FuzzOpenHandoffRing", openRingSeeds(t))
}

// FuzzOpenHandoffRing joins a ring whose file holds arbitrary bytes, as a
// producer does with the file another process made: OpenHandoffRing must
// either refuse it with an error matching ErrBadHandoffRing or return a
// ring whose geometry fits the file, and on such a ring the producer and
// a consumer over the same memory must not panic: whatever frames the
// file already held come out first, each within its slot, then the frames
// the producer put in, intact and in order.
func FuzzOpenHandoffRing(f *testing.F) {
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, image []byte) {
		path := filepath.Join(dir, "ring")
		if err := os.WriteFile(path, image, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := OpenHandoffRing(path)
		if err != nil {
			if !errors.Is(err, ErrBadHandoffRing) {
				t.Fatalf("OpenHandoffRing: %v, not an ErrBadHandoffRing", err)
			}
			return
		}
		defer r.Close()
		slots, slotSize := r.Slots(), r.SlotSize()
		if size, err := handoffRingSize(slots, slotSize); err != nil || size != len(image) {
			t.Fatalf("opened %d slots of %d bytes from a %d-byte file (%v)", slots, slotSize, len(image), err)
		}
		before := r.Len()
		if before < 0 || before > slots {
			t.Fatalf("Len = %d of %d slots", before, slots)
		}
		var frames [][]byte
		for i := range slots - before + 1 {
			frames = append(frames, ringFuzzFrame(i, min(i*7, slotSize)))
		}
		frames = append(frames, ringFuzzFrame(99, slotSize+1))
		n := r.Enqueue(frames)
		if n != slots-before {
			t.Fatalf("Enqueue into %d free slots = %d", slots-before, n)
		}
		cons := newHandoffRingOver(r.mem, r.sh, slots, slotSize, false)
		views := make([][]byte, slots+1)
		got := cons.Dequeue(views)
		if got != slots {
			t.Fatalf("Dequeue of a full ring of %d = %d", slots, got)
		}
		for i, v := range views[:got] {
			if len(v) > slotSize || cap(v) != len(v) {
				t.Fatalf("view of %d bytes, capacity %d, from %d-byte slots", len(v), cap(v), slotSize)
			}
			if i >= before && !bytes.Equal(v, frames[i-before]) {
				t.Fatalf("frame %d: % x, want % x", i-before, v, frames[i-before])
			}
		}
		cons.Release()
		if r.Len() != 0 {
			t.Fatalf("Len = %d after the consumer took everything", r.Len())
		}
	})
}

// openRingSeeds are ring files: a fresh one, one holding frames, one whose
// indexes have wrapped, and the damaged headers TestHandoffRingFileBadHeader
// names.
func openRingSeeds(tb testing.TB) []fuzzcorpus.Seed {
	dir := tb.TempDir()
	image := func(name string, fill func(r *HandoffRing)) []byte {
		path := filepath.Join(dir, name)
		r := createRing(tb, path, 4, 64)
		fill(r)
		r.Close()
		b, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	fresh := image("fresh", func(*HandoffRing) {})
	holding := image("holding", func(r *HandoffRing) { r.Enqueue([][]byte{ringFuzzFrame(1, 10), ringFuzzFrame(2, 64)}) })
	wrapped := image("wrapped", func(r *HandoffRing) {
		out := make([][]byte, 4)
		for i := range 7 {
			r.Enqueue([][]byte{ringFuzzFrame(i, 3*i)})
			r.Dequeue(out)
			r.Release()
		}
		r.Enqueue([][]byte{ringFuzzFrame(9, 9)})
	})
	damaged := func(off int, v uint32) []byte {
		b := bytes.Clone(fresh)
		binary.NativeEndian.PutUint32(b[off:], v)
		return b
	}
	return []fuzzcorpus.Seed{
		{Name: "fresh", Args: []any{fresh}},
		{Name: "holding_frames", Args: []any{holding}},
		{Name: "wrapped", Args: []any{wrapped}},
		{Name: "bad_magic", Args: []any{damaged(0, 0x12345678)}},
		{Name: "bad_slots", Args: []any{damaged(12, 3)}},
		{Name: "bad_stride", Args: []any{damaged(20, 72)}},
		{Name: "indexes_apart", Args: []any{damaged(128, 5)}},
		{Name: "truncated", Args: []any{fresh[:len(fresh)-64]}},
	}
}
