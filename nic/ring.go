package nic

import (
	"fmt"
	"sync/atomic"
)

// The four AF_XDP rings are single-producer single-consumer rings shared with
// the kernel (Documentation/networking/af_xdp.rst). Each has a producer and a
// consumer index that only grow (they wrap at 2^32), a flags word and an
// array of descriptors whose length is a power of two; a position p lives in
// slot p&mask. User space produces on the fill and TX rings and consumes the
// RX and completion rings.
//
// Both sides keep a cached copy of the index the other side owns and only
// reload it (one atomic load) when the cached view does not satisfy a
// request, and publish their own index with one atomic store per batch. The
// sync/atomic operations are sequentially consistent, which is at least the
// acquire/release ordering the kernel's rings require: descriptors written
// before the producer store are visible to the consumer that loaded it.

// ringNeedWakeup is XDP_RING_NEED_WAKEUP from include/uapi/linux/if_xdp.h:
// the kernel sets it in a ring's flags when it wants a syscall before it
// looks at the ring again.
const ringNeedWakeup = 1

// xdpDesc is struct xdp_desc, an RX or TX ring slot.
type xdpDesc struct {
	Addr    uint64 // offset into the UMEM
	Len     uint32
	Options uint32
}

// ringIndex is the part of a ring shared by both roles.
type ringIndex struct {
	producer *uint32 // shared with the kernel
	consumer *uint32 // shared with the kernel
	flags    *uint32 // shared with the kernel; XDP_RING_NEED_WAKEUP
	mask     uint32  // size-1; size is a power of two

	// cachedProd and cachedCons are this side's view of the indexes. The
	// index this side owns is always exact; the other one may lag.
	cachedProd uint32
	cachedCons uint32
}

func (r *ringIndex) size() uint32 { return r.mask + 1 }

// needWakeup reports whether the kernel asked to be woken up (sendto for the
// TX ring, recvfrom or poll for the fill ring) before it processes the ring.
func (r *ringIndex) needWakeup() bool {
	return atomic.LoadUint32(r.flags)&ringNeedWakeup != 0
}

// producerRing is a ring user space produces on: the fill ring (D is a UMEM
// address) or the TX ring (D is a descriptor). One goroutine at a time.
type producerRing[D any] struct {
	ringIndex
	descs []D // len(descs) == mask+1
}

// reserve returns the position of the first of up to n free slots and how
// many there are. The slots belong to the caller until submit.
func (r *producerRing[D]) reserve(n uint32) (pos, got uint32) {
	free := r.size() - (r.cachedProd - r.cachedCons)
	if free < n {
		r.cachedCons = atomic.LoadUint32(r.consumer)
		free = r.size() - (r.cachedProd - r.cachedCons)
	}
	return r.cachedProd, min(n, free)
}

// set writes the descriptor of a reserved slot.
func (r *producerRing[D]) set(pos uint32, d D) { r.descs[pos&r.mask] = d }

// submit publishes n reserved slots to the kernel.
func (r *producerRing[D]) submit(n uint32) {
	if n == 0 {
		return
	}
	r.cachedProd += n
	atomic.StoreUint32(r.producer, r.cachedProd)
}

// pending returns how many submitted slots the kernel has not consumed yet.
func (r *producerRing[D]) pending() uint32 {
	r.cachedCons = atomic.LoadUint32(r.consumer)
	return r.cachedProd - r.cachedCons
}

// consumerRing is a ring user space consumes: the RX ring (D is a
// descriptor) or the completion ring (D is a UMEM address).
type consumerRing[D any] struct {
	ringIndex
	descs []D // len(descs) == mask+1
}

// peek returns the position of the first of up to n filled slots and how
// many there are. They stay the caller's until release.
func (r *consumerRing[D]) peek(n uint32) (pos, got uint32) {
	avail := r.cachedProd - r.cachedCons
	if avail < n {
		r.cachedProd = atomic.LoadUint32(r.producer)
		avail = r.cachedProd - r.cachedCons
	}
	return r.cachedCons, min(n, avail)
}

// get reads the descriptor in a peeked slot.
func (r *consumerRing[D]) get(pos uint32) D { return r.descs[pos&r.mask] }

// release gives n peeked slots back to the kernel.
func (r *consumerRing[D]) release(n uint32) {
	if n == 0 {
		return
	}
	r.cachedCons += n
	atomic.StoreUint32(r.consumer, r.cachedCons)
}

// checkRingSize validates a configured ring size.
func checkRingSize(name string, n int) error {
	if n <= 0 || n&(n-1) != 0 || n > 1<<30 {
		return fmt.Errorf("%s size %d: must be a power of two between 1 and 2^30", name, n)
	}
	return nil
}

// frameStack is a LIFO of free UMEM frame addresses. LIFO hands out the most
// recently used frame, which is the one most likely still in the CPU cache.
// Not safe for concurrent use; its owner serializes access.
type frameStack struct {
	addrs []uint64 // cap is the number of frames the stack can ever hold
}

func newFrameStack(capacity int) frameStack {
	return frameStack{addrs: make([]uint64, 0, capacity)}
}

func (s *frameStack) len() int { return len(s.addrs) }

func (s *frameStack) push(addr uint64) { s.addrs = append(s.addrs, addr) }

func (s *frameStack) pop() uint64 {
	n := len(s.addrs) - 1
	a := s.addrs[n]
	s.addrs = s.addrs[:n]
	return a
}
