package core

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
)

// HandoffRing is a lock-free single-producer single-consumer ring of frames
// in memory that two threads or two processes share. An lcore that receives
// a frame owned by another lcore copies it into that lcore's incoming ring;
// the owner drains the ring once per pass and delivers the frames to its
// stack.
//
// Ownership: one producer goroutine calls Enqueue, one consumer goroutine
// calls Dequeue and Release; Stats and Len may be called from anywhere. In
// process mode the consumer makes the ring with CreateHandoffRing and the
// producer joins it with OpenHandoffRing, each holding its own HandoffRing;
// in thread mode both sides share the one NewHandoffRing returns.
//
// Memory layout (native byte order; the file never leaves the host):
//
//	[0,128)    header: magic, version, slots, slot size, slot stride (read-only once published)
//	[128,256)  producer line: prod index, enqueued/full/oversize counters (written by the producer only)
//	[256,384)  consumer line: cons index, dequeued counter (written by the consumer only)
//	[384,...)  slots*stride bytes of slots: uint32 length, 4 reserved bytes, then the frame
//
// The indexes run free as uint32 and are masked with slots-1, so slots must
// be a power of two; prod-cons is the number of full slots even across the
// 2^32 wrap. Each side publishes its index with one atomic store per batch,
// after it has written (producer) or finished with (consumer) the slots, and
// keeps a cached copy of the other side's index that it reloads only when
// the cached value says the batch does not fit: in steady state a batch
// costs one store of the index and one of a counter, both on this side's
// own line, and at most one load of a line the other side writes.
// The producer and consumer lines are 128 bytes apart so that the
// adjacent-line prefetcher does not pair them.
//
// A peer that misbehaves (a corrupt index or length in the shared memory)
// can garble frames but never makes this side read or write outside the
// mapping: lengths and indexes read from shared memory are clamped.
type HandoffRing struct {
	// Read-only after construction; both sides read them.
	sh       *ringShared
	data     []byte   // the slots; len(data) == slots*stride
	mem      []byte   // the whole mapping, for munmap
	slots    uint32   // a power of two
	mask     uint32   // slots-1
	slotSize uint32   // largest frame a slot holds
	stride   uint32   // bytes from one slot to the next
	path     string   // the file, for Remove; empty for an anonymous ring
	creator  bool     // this side made the file (Remove is allowed)
	closed   bool     // set by Close; Enqueue and Dequeue return 0 after it
	lock     *os.File // the producer's flock on the file; nil otherwise

	closeOnce sync.Once
	closeErr  error

	_ [128]byte

	// Producer state; only the producer touches it.
	prod      uint32 // next slot to fill; published to sh.prod per batch
	consCache uint32 // last value of sh.cons the producer saw; prod-consCache <= slots
	_         [128 - 8]byte

	// Consumer state; only the consumer touches it.
	cons      uint32 // first slot not yet released; published to sh.cons
	read      uint32 // first slot not yet dequeued; [cons, read) are lent out as views
	prodCache uint32 // last value of sh.prod the consumer saw; prodCache-read <= slots
	_         [128 - 12]byte
}

// ringShared is the header at the start of the shared memory. Its layout is
// the file format: change it only with a new handoffRingVersion. The
// compile-time checks in ring_linux.go hold it to the offsets above.
type ringShared struct {
	magic    atomic.Uint64 // stored last by the creator: a ring with the magic is complete
	version  uint32
	slots    uint32
	slotSize uint32
	stride   uint32
	_        [128 - 24]byte
	prod     atomic.Uint32
	_        uint32
	enqueued atomic.Uint64
	full     atomic.Uint64
	oversize atomic.Uint64
	_        [128 - 32]byte
	cons     atomic.Uint32
	_        uint32
	dequeued atomic.Uint64
	_        [128 - 16]byte
}

const (
	handoffRingMagic   = 0x474e495248545358 // "XSTHRING" read as little-endian bytes
	handoffRingVersion = 1
	ringHeaderSize     = 384
	ringSlotHeader     = 8 // uint32 length + 4 reserved bytes: frames start 8-byte aligned

	// MaxHandoffRingSlots bounds the slot count: indexes are uint32 and
	// prod-cons must stay far below the wrap.
	MaxHandoffRingSlots = 1 << 24
	// MaxHandoffSlotSize bounds a slot: a jumbo frame fits, a mistake in
	// units does not map gigabytes.
	MaxHandoffSlotSize = 1 << 20
)

// ErrBadHandoffRing is matched (errors.Is) by the errors of OpenHandoffRing
// for a file that is not a complete handoff ring of this version and layout.
var ErrBadHandoffRing = errors.New("not a handoff ring of this version")

// ErrHandoffRingBusy is matched by the error of OpenHandoffRing when another
// producer (in this or another process) already has the ring open.
var ErrHandoffRingBusy = errors.New("handoff ring already has a producer")

// HandoffRingStats are a ring's counters. They live in the shared memory,
// so both sides read the same values.
type HandoffRingStats struct {
	Enqueued uint64 // frames copied into the ring
	Dequeued uint64 // frames the consumer took and released
	Full     uint64 // frames refused because the ring was full
	Oversize uint64 // frames refused because they are longer than a slot
}

// handoffRingStride is the distance between slots: the slot header and the
// frame, rounded up to a cache line so a slot never shares a line with the
// next one's length word.
func handoffRingStride(slotSize uint32) uint32 {
	return (ringSlotHeader + slotSize + 63) &^ 63
}

// handoffRingSize checks the geometry and returns the bytes of memory a ring
// needs.
func handoffRingSize(slots, slotSize int) (int, error) {
	if slots <= 0 || slots&(slots-1) != 0 || slots > MaxHandoffRingSlots {
		return 0, errors.New("slots must be a power of two from 1 to 16777216")
	}
	if slotSize <= 0 || slotSize > MaxHandoffSlotSize {
		return 0, errors.New("slot size must be from 1 to 1048576 bytes")
	}
	size := uint64(ringHeaderSize) + uint64(slots)*uint64(handoffRingStride(uint32(slotSize)))
	if size > math.MaxInt {
		return 0, fmt.Errorf("%d slots of %d bytes do not fit in memory", slots, slotSize)
	}
	return int(size), nil
}

// newHandoffRingOver makes the ring over mem, a mapping of
// handoffRingSize bytes whose header is sh. With create it writes the
// header, magic last; otherwise the caller has checked it.
func newHandoffRingOver(mem []byte, sh *ringShared, slots, slotSize int, create bool) *HandoffRing {
	if create {
		sh.version = handoffRingVersion
		sh.slots = uint32(slots)
		sh.slotSize = uint32(slotSize)
		sh.stride = handoffRingStride(uint32(slotSize))
		sh.magic.Store(handoffRingMagic)
	}
	r := &HandoffRing{
		sh:       sh,
		mem:      mem,
		data:     mem[ringHeaderSize:],
		slots:    sh.slots,
		mask:     sh.slots - 1,
		slotSize: sh.slotSize,
		stride:   sh.stride,
	}
	// A producer that joins (or rejoins after a crash) continues from the
	// published index: slots it had filled but not published are refilled.
	r.prod = sh.prod.Load()
	r.cons = sh.cons.Load()
	r.consCache, r.read, r.prodCache = r.cons, r.cons, r.prod
	return r
}

// checkHandoffRingHeader validates the header of a mapping of size bytes.
func checkHandoffRingHeader(sh *ringShared, size int) error {
	if m := sh.magic.Load(); m != handoffRingMagic {
		return fmt.Errorf("%w: magic %#x, want %#x", ErrBadHandoffRing, m, uint64(handoffRingMagic))
	}
	if sh.version != handoffRingVersion {
		return fmt.Errorf("%w: version %d, this build reads version %d", ErrBadHandoffRing, sh.version, handoffRingVersion)
	}
	want, err := handoffRingSize(int(sh.slots), int(sh.slotSize))
	if err != nil {
		return fmt.Errorf("%w: header says %d slots of %d bytes: %v", ErrBadHandoffRing, sh.slots, sh.slotSize, err)
	}
	if sh.stride != handoffRingStride(sh.slotSize) {
		return fmt.Errorf("%w: slot stride %d, want %d for %d-byte slots", ErrBadHandoffRing, sh.stride, handoffRingStride(sh.slotSize), sh.slotSize)
	}
	if size != want {
		return fmt.Errorf("%w: file is %d bytes, want %d for %d slots of %d bytes", ErrBadHandoffRing, size, want, sh.slots, sh.slotSize)
	}
	// Nobody produces while a producer opens (it holds the lock), so the
	// consumer cannot pass the producer index read first.
	if prod, cons := sh.prod.Load(), sh.cons.Load(); prod-cons > sh.slots {
		return fmt.Errorf("%w: producer index %d and consumer index %d are more than %d slots apart", ErrBadHandoffRing, prod, cons, sh.slots)
	}
	return nil
}

// Slots returns the number of slots.
func (r *HandoffRing) Slots() int { return int(r.slots) }

// SlotSize returns the longest frame a slot holds.
func (r *HandoffRing) SlotSize() int { return int(r.slotSize) }

// Enqueue copies frames, in order, into free slots and returns how many it
// copied. It never blocks and never waits for the consumer: a frame longer
// than SlotSize is skipped and counted in Oversize, and once the ring is
// full the rest are refused and counted in Full. The frames that went in
// are the first n that fit a slot (with no oversize frame: frames[:n]), so
// a caller can retry the others (each refusal counts in Full again) or
// drop them, as a full NIC queue would. The consumer sees the whole batch
// at once: the producer index is published with one atomic store after the
// last copy. Enqueue does not allocate and returns 0 after Close. Only the
// producer may call it.
func (r *HandoffRing) Enqueue(frames [][]byte) int {
	if r.closed || len(frames) == 0 {
		return 0
	}
	prod := r.prod
	free := r.free(prod)
	if free < uint32(len(frames)) {
		// An index the consumer could not have published (a corrupt
		// peer) is not cached: the ring then looks full.
		if c := r.sh.cons.Load(); prod-c <= r.slots {
			r.consCache = c
		}
		free = r.free(prod)
	}
	n, oversize := 0, 0
	i := 0
	for ; i < len(frames) && free > 0; i++ {
		f := frames[i]
		if uint(len(f)) > uint(r.slotSize) {
			oversize++
			continue
		}
		off := (prod & r.mask) * r.stride
		slot := r.data[off : off+r.stride]
		binary.NativeEndian.PutUint32(slot, uint32(len(f)))
		copy(slot[ringSlotHeader:], f)
		prod++
		free--
		n++
	}
	full := 0
	for _, f := range frames[i:] {
		if uint(len(f)) > uint(r.slotSize) {
			oversize++
		} else {
			full++
		}
	}
	if n > 0 {
		r.prod = prod
		r.sh.prod.Store(prod)
		// Single writer: a load and a store, no read-modify-write.
		r.sh.enqueued.Store(r.sh.enqueued.Load() + uint64(n))
	}
	if full > 0 {
		r.sh.full.Store(r.sh.full.Load() + uint64(full))
	}
	if oversize > 0 {
		r.sh.oversize.Store(r.sh.oversize.Load() + uint64(oversize))
	}
	return n
}

// free returns the number of free slots as the producer sees them.
// Invariant: prod-consCache <= slots.
func (r *HandoffRing) free(prod uint32) uint32 {
	return r.slots - (prod - r.consCache)
}

// Dequeue fills frames with up to len(frames) frames, oldest first, and
// returns how many. The frames are views into the ring's slots, not copies:
// they stay valid until Release, the next Dequeue, or Close, whichever comes
// first, and the consumer must copy what it keeps (the stack's
// DeliverNetworkPacket does). Dequeue first releases the previous batch
// itself, so a loop that forgets Release still makes progress; calling
// Release as soon as the frames are delivered hands the slots back to the
// producer earlier. The views are capped at their length: appending to one
// reallocates instead of writing into the next slot. Dequeue does not
// allocate and returns 0 after Close. Only the consumer may call it.
func (r *HandoffRing) Dequeue(frames [][]byte) int {
	if r.closed || len(frames) == 0 {
		return 0
	}
	r.Release()
	cons := r.read
	avail := r.prodCache - cons
	if avail < uint32(len(frames)) {
		// An index the producer could not have published (a corrupt
		// peer) is not cached: the ring then looks empty.
		if p := r.sh.prod.Load(); p-cons <= r.slots {
			r.prodCache = p
		}
		avail = r.prodCache - cons
	}
	n := len(frames)
	if uint32(n) > avail {
		n = int(avail)
	}
	for i := range n {
		off := (cons & r.mask) * r.stride
		slot := r.data[off : off+r.stride]
		l := binary.NativeEndian.Uint32(slot)
		if l > r.slotSize {
			l = r.slotSize
		}
		end := ringSlotHeader + l
		frames[i] = slot[ringSlotHeader:end:end]
		cons++
	}
	r.read = cons
	return n
}

// Release hands the slots of the last Dequeue back to the producer; the
// views it returned must not be used after. It publishes the consumer
// index with one atomic store (and the Dequeued counter with another) and
// does nothing when nothing is outstanding. Only the consumer may call it.
func (r *HandoffRing) Release() {
	if r.closed || r.read == r.cons {
		return
	}
	r.sh.cons.Store(r.read)
	r.sh.dequeued.Store(r.sh.dequeued.Load() + uint64(r.read-r.cons))
	r.cons = r.read
}

// Len returns how many frames wait in the ring, including a batch the
// consumer holds and has not released. From any goroutine it is a snapshot.
func (r *HandoffRing) Len() int {
	if r.closed {
		return 0
	}
	used := r.sh.prod.Load() - r.sh.cons.Load()
	if used > r.slots {
		return int(r.slots)
	}
	return int(used)
}

// Stats returns the ring's counters. They are shared: the consumer sees how
// many frames its producer had refused, and the other way round.
func (r *HandoffRing) Stats() HandoffRingStats {
	if r.closed {
		return HandoffRingStats{}
	}
	return HandoffRingStats{
		Enqueued: r.sh.enqueued.Load(),
		Dequeued: r.sh.dequeued.Load(),
		Full:     r.sh.full.Load(),
		Oversize: r.sh.oversize.Load(),
	}
}
