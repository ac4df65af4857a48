// Package nictest provides in-memory nic.Queues for tests that run without
// privileges.
//
// Pair returns two queues joined like the ends of a cable: what one
// transmits, the other receives. New returns a single queue whose
// transmitted frames are captured for the test to read (Sent, ReadSent);
// Inject puts a frame on any queue's receive side as if it came off the wire.
//
// The queues keep the nic.Queue contract: a frame returned by Rx aliases the
// queue's own buffer and stays valid until the next Rx; TxReserve lends
// transmit buffers of the queue's own (TxBuffers of them, standing in for
// UMEM frames) that TxSubmit sends and TxRelease takes back, and Stats
// accounts for them as the UMEM fields do; Tx copies; none of them blocks
// and all are safe for concurrent use; after Close, Rx and the TX calls
// return net.ErrClosed (TxReserve lends nothing). Sending copies a frame
// once, onto the peer's receive side, as a wire would. Buffers are
// allocated once, so Rx and the TX calls do not allocate.
//
// The queues also offer TX checksum offload (nic.TxChecksumOffloader), on
// unless SetTxChecksumOffload turns it off: TxSubmit completes a requested
// checksum in software (nic.CompleteChecksum) before the frame goes on the
// wire, as a device would, and counts it in Stats.TxCsumOffload.
//
// SetMultiBuffer makes a queue emulate a multi-buffer XSKQueue
// (nic.MultiBufferQueue): received frames are handed out by RxPackets in
// pieces of a chosen size, and frames are sent from several lent buffers
// by TxSubmitPackets.
//
// Rx and Wait are called by one goroutine (the lcore under test); the TX
// calls, Inject, Sent and ReadSent by any.
package nictest

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xstack/xstack/nic"
)

// DefaultSlots is how many frames a queue holds before transmitting to it
// drops frames (the size of its receive ring).
const DefaultSlots = 1024

// TxBuffers is how many transmit buffers a queue has to lend (TxReserve).
const TxBuffers = 256

const ethHdrLen = 14

// Queue is an in-memory nic.Queue.
type Queue struct {
	mtu      int
	slotSize int // largest frame: MTU plus the Ethernet header
	mac      net.HardwareAddr
	peer     *Queue // nil: Tx captures into sent

	mu   sync.Mutex
	in   slotRing // +checklocks:mu; frames waiting for Rx, the lent ones first
	lent int      // +checklocks:mu; frames at the head of in lent by the last Rx
	sent slotRing // +checklocks:mu; captured Tx frames (no peer)

	// Transmit buffers: txBufs[i] is buffer i, empty with capacity
	// slotSize, at txMem[i*slotSize:] (fixed at creation). txMu is taken
	// before mu.
	txMem   []byte
	txBufs  [][]byte
	txMu    sync.Mutex
	txFree  []int  // +checklocks:txMu; indexes of free buffers
	txLent  []bool // +checklocks:txMu; txLent[i]: buffer i is lent by TxReserve
	txLentN int    // +checklocks:txMu
	// txCsum[i] is the checksum request SetTxChecksum made for buffer
	// i, written by the buffer's owner; TxReserve clears it.
	txCsum []csumRequest
	// noTxCsum turns the checksum offload off (SetTxChecksumOffload).
	noTxCsum atomic.Bool

	// Multi-buffer emulation (SetMultiBuffer): segSize is the bytes a
	// buffer holds, 0 when off; maxTxSegs the buffers a sent frame may
	// span. txFrame assembles a frame of several buffers for sending
	// (+checklocks:txMu), txOne holds it as a batch of one.
	segSize   int
	maxTxSegs int
	txFrame   []byte
	txOne     [1][]byte

	notify    chan struct{} // one token: frames arrived
	done      chan struct{} // closed by Close
	timer     *time.Timer   // Wait's, reused
	closed    atomic.Bool
	closeOnce sync.Once

	c nic.QueueCounters
}

var (
	_ nic.Queue               = (*Queue)(nil)
	_ nic.TxChecksumOffloader = (*Queue)(nil)
	_ nic.MultiBufferQueue    = (*Queue)(nil)
)

// csumRequest is a checksum request for one transmit buffer.
type csumRequest struct {
	set           bool
	start, offset int
}

var macSeq atomic.Uint32

// New returns an unconnected queue: frames it transmits are kept for Sent and
// ReadSent (up to DefaultSlots of them; more are dropped and counted).
func New(mtu int) *Queue { return newQueue(mtu, DefaultSlots) }

// Pair returns two connected queues.
func Pair(mtu int) (*Queue, *Queue) {
	a, b := newQueue(mtu, DefaultSlots), newQueue(mtu, DefaultSlots)
	a.peer, b.peer = b, a
	return a, b
}

func newQueue(mtu, slots int) *Queue {
	n := macSeq.Add(1)
	q := &Queue{
		mtu:      mtu,
		slotSize: mtu + ethHdrLen,
		// Locally administered unicast addresses, unique per process.
		mac:    net.HardwareAddr{0x02, 0x78, 0x73, byte(n >> 16), byte(n >> 8), byte(n)},
		in:     newSlotRing(slots, mtu+ethHdrLen),
		notify: make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	q.sent = newSlotRing(slots, q.slotSize)
	q.txMem = make([]byte, TxBuffers*q.slotSize)
	q.txBufs = make([][]byte, TxBuffers)
	q.txFree = make([]int, TxBuffers)
	q.txLent = make([]bool, TxBuffers)
	q.txCsum = make([]csumRequest, TxBuffers)
	for i := range q.txBufs {
		q.txBufs[i] = q.txMem[i*q.slotSize : i*q.slotSize : (i+1)*q.slotSize]
		q.txFree[i] = TxBuffers - 1 - i
	}
	return q
}

// SetHardwareAddr sets the address HardwareAddr reports.
func (q *Queue) SetHardwareAddr(mac net.HardwareAddr) { q.mac = mac }

// HardwareAddr implements nic.Queue.
func (q *Queue) HardwareAddr() net.HardwareAddr { return q.mac }

// MTU implements nic.Queue.
func (q *Queue) MTU() int { return q.mtu }

// Rx implements nic.Queue.
func (q *Queue) Rx(frames [][]byte) (int, error) {
	if q.closed.Load() {
		return 0, net.ErrClosed
	}
	if q.segSize > 0 {
		return 0, nic.ErrRxMultiBuffer
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.in.drop(q.lent)
	n := min(len(frames), q.in.n)
	var bytes uint64
	for i := range n {
		f := q.in.at(i)
		frames[i] = f[:len(f):len(f)]
		bytes += uint64(len(frames[i]))
	}
	q.lent = n
	if n > 0 {
		q.c.RxFrames.Add(uint64(n))
		q.c.RxBytes.Add(bytes)
	}
	return n, nil
}

// Tx sends frames from the caller's own memory, as XSKQueue.Tx does: a
// test injects frames with it. With a peer, frames are queued on the peer's
// receive side; a closed peer drops them like a pulled cable.
func (q *Queue) Tx(frames [][]byte) (int, error) {
	if q.closed.Load() {
		return 0, net.ErrClosed
	}
	return q.send(frames, len(frames)), nil
}

// SetMultiBuffer makes q emulate a multi-buffer queue
// (nic.MultiBufferQueue) whose buffers hold segSize bytes, as an XSKQueue
// bound with QueueConfig.MultiBuffer does with its UMEM frames: RxPackets
// hands each received frame out in pieces of segSize bytes (the last may
// be shorter), Rx answers nic.ErrRxMultiBuffer, TxReserve lends buffers of
// capacity segSize, and TxSubmitPackets sends a frame of up to maxTxSegs
// of them (the whole frame no longer than the MTU allows). Call it before
// the queue is used.
func (q *Queue) SetMultiBuffer(segSize, maxTxSegs int) error {
	if segSize < 1 || segSize > q.slotSize || maxTxSegs < 1 {
		return fmt.Errorf("nictest: multi-buffer with buffers of %d bytes and %d per frame: want 1 to %d bytes and at least 1", segSize, maxTxSegs, q.slotSize)
	}
	q.segSize, q.maxTxSegs = segSize, maxTxSegs
	q.txFrame = make([]byte, 0, q.slotSize)
	for i := range q.txBufs {
		q.txBufs[i] = q.txBufs[i][:0:segSize]
	}
	return nil
}

// MultiBuffer implements nic.MultiBufferQueue.
func (q *Queue) MultiBuffer() bool { return q.segSize > 0 }

// MaxTxSegments implements nic.MultiBufferQueue.
func (q *Queue) MaxTxSegments() int {
	if q.segSize == 0 {
		return 1
	}
	return q.maxTxSegs
}

// RxPackets implements nic.MultiBufferQueue: frames as Rx returns them,
// each cut into buffers of the SetMultiBuffer size (one buffer each
// without it).
func (q *Queue) RxPackets(bufs [][]byte, segs []int) (int, error) {
	if q.closed.Load() {
		return 0, net.ErrClosed
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.in.drop(q.lent)
	q.lent = 0
	seg := q.segSize
	if seg == 0 {
		seg = q.slotSize
	}
	used, n := 0, 0
	var bytes uint64
	var err error
	for n < len(segs) && n < q.in.n {
		f := q.in.at(n)
		k := max(1, (len(f)+seg-1)/seg)
		if used+k > len(bufs) {
			if n == 0 {
				err = nic.ErrRxBufsShort
			}
			break
		}
		for j := range k {
			piece := f[j*seg : min((j+1)*seg, len(f))]
			bufs[used] = piece[:len(piece):len(piece)]
			used++
		}
		segs[n] = k
		n++
		bytes += uint64(len(f))
	}
	q.lent = n
	if n > 0 {
		q.c.RxFrames.Add(uint64(n))
		q.c.RxBytes.Add(bytes)
	}
	return n, err
}

// TxSubmitPackets implements nic.MultiBufferQueue: each frame's buffers are
// joined, its checksum completed if its first buffer carries a request,
// and it is sent as by TxSubmit.
func (q *Queue) TxSubmitPackets(bufs [][]byte, segs []int) (int, error) {
	if q.closed.Load() {
		return 0, net.ErrClosed
	}
	q.txMu.Lock()
	defer q.txMu.Unlock()
	total := 0
	for _, k := range segs {
		if k < 1 {
			total = -1
			break
		}
		total += k
	}
	if total != len(bufs) {
		for _, b := range bufs {
			q.takeBackLocked(b)
		}
		q.c.TxDropped.Add(uint64(len(segs)))
		return 0, nic.ErrTxSegsMismatch
	}
	n, foreign, k := 0, 0, 0
	sending := true
	var err error
	for _, nseg := range segs {
		chain := bufs[k : k+nseg]
		k += nseg
		first, firstOK := bufIndex(q.txMem, chain[0], q.slotSize)
		req := csumRequest{}
		if firstOK && q.txLent[first] {
			req = q.txCsum[first]
		}
		ok := true
		f := q.txFrame[:0]
		for _, b := range chain {
			if _, lent := q.takeBackLocked(b); !lent {
				foreign++
				ok = false
				continue
			}
			if len(b) == 0 || len(f)+len(b) > cap(f) {
				ok = false
				continue
			}
			f = append(f, b...)
		}
		if nseg > q.MaxTxSegments() {
			ok = false
			if err == nil {
				err = nic.ErrTxTooManySegs
			}
		}
		if !sending || !ok {
			sending = false
			q.c.TxDropped.Add(1)
			continue
		}
		if req.set {
			nic.CompleteChecksum(f, req.start, req.offset)
		}
		q.txOne[0] = f
		if q.send(q.txOne[:], 1) == 0 {
			sending = false
			continue
		}
		if req.set {
			q.c.TxCsumOffload.Add(1)
		}
		n++
	}
	q.txOne[0] = nil
	if foreign > 0 {
		return n, fmt.Errorf("nictest: submit packets: %d buffers not lent by TxReserve, or given back twice", foreign)
	}
	return n, err
}

// TxReserve implements nic.Queue.
func (q *Queue) TxReserve(bufs [][]byte) int {
	if q.closed.Load() {
		return 0
	}
	q.txMu.Lock()
	defer q.txMu.Unlock()
	n := min(len(bufs), len(q.txFree))
	for i := range n {
		k := q.txFree[len(q.txFree)-1]
		q.txFree = q.txFree[:len(q.txFree)-1]
		q.txLent[k] = true
		q.txCsum[k] = csumRequest{}
		bufs[i] = q.txBufs[k]
	}
	q.txLentN += n
	return n
}

// TxSubmit implements nic.Queue. Frames are sent as by Tx, from the
// queue's buffers.
func (q *Queue) TxSubmit(frames [][]byte) (int, error) {
	if q.closed.Load() {
		return 0, net.ErrClosed
	}
	q.txMu.Lock()
	defer q.txMu.Unlock()
	// The sent frames are a prefix: sending stops at the first buffer
	// that is not the queue's.
	ours, foreign := len(frames), 0
	for i, f := range frames {
		k, ok := q.takeBackLocked(f)
		if !ok {
			ours = min(ours, i)
			foreign++
			continue
		}
		// The device completes the checksum as it sends the frame.
		if r := q.txCsum[k]; r.set && i < ours {
			nic.CompleteChecksum(f, r.start, r.offset)
		}
	}
	n := q.send(frames[:ours], len(frames))
	csums := 0
	for _, f := range frames[:n] {
		if k, _ := bufIndex(q.txMem, f, q.slotSize); q.txCsum[k].set {
			csums++
		}
	}
	if csums > 0 {
		q.c.TxCsumOffload.Add(uint64(csums))
	}
	if foreign > 0 {
		return n, fmt.Errorf("nictest: submit: %d buffers not lent by TxReserve, or given back twice", foreign)
	}
	return n, nil
}

// TxRelease implements nic.Queue.
func (q *Queue) TxRelease(bufs [][]byte) error {
	if q.closed.Load() {
		return net.ErrClosed
	}
	q.txMu.Lock()
	defer q.txMu.Unlock()
	foreign := 0
	for _, b := range bufs {
		if _, ok := q.takeBackLocked(b); !ok {
			foreign++
		}
	}
	if foreign > 0 {
		return fmt.Errorf("nictest: release: %d buffers not lent by TxReserve, or given back twice", foreign)
	}
	return nil
}

// takeBackLocked puts b, a buffer lent by TxReserve, back on the free
// list and returns its index, or reports false if it is not one. The
// caller holds txMu; the bytes of b stay as they are until a TxReserve
// lends it again.
func (q *Queue) takeBackLocked(b []byte) (int, bool) {
	k, ok := bufIndex(q.txMem, b, q.slotSize)
	if !ok || !q.txLent[k] {
		return 0, false
	}
	q.txLent[k] = false
	q.txLentN--
	q.txFree = append(q.txFree, k)
	return k, true
}

// SetTxChecksumOffload turns the queue's TX checksum offload on (the
// default) or off, as a device with or without it; call it before the
// queue is used.
func (q *Queue) SetTxChecksumOffload(on bool) { q.noTxCsum.Store(!on) }

// TxChecksumOffload implements nic.TxChecksumOffloader.
func (q *Queue) TxChecksumOffload() bool { return !q.noTxCsum.Load() }

// SetTxChecksum implements nic.TxChecksumOffloader: TxSubmit completes the
// checksum of frame in software before sending it.
func (q *Queue) SetTxChecksum(frame []byte, start, offset int) error {
	if q.noTxCsum.Load() {
		return nic.ErrTxChecksumOff
	}
	if start < 0 || offset < 0 || start > 0xffff || offset > 0xffff || start+offset+2 > len(frame) {
		return errCsumRange
	}
	k, ok := bufIndex(q.txMem, frame, q.slotSize)
	if !ok {
		return errCsumBuf
	}
	q.txCsum[k] = csumRequest{set: true, start: start, offset: offset}
	return nil
}

var (
	errCsumRange = errors.New("nictest: tx checksum request: the checksum field lies outside the frame")
	errCsumBuf   = errors.New("nictest: tx checksum request: buffer not lent by TxReserve")
)

// send transmits frames, the first of total, and counts the total-n that
// it did not send as dropped. It stops at the first frame that is empty or
// too large.
func (q *Queue) send(frames [][]byte, total int) int {
	n := 0
	var bytes uint64
	for _, f := range frames {
		if len(f) == 0 || len(f) > q.slotSize {
			break
		}
		n++
		bytes += uint64(len(f))
	}
	var took int
	if q.peer != nil {
		took = q.peer.deliver(frames[:n])
	} else {
		q.mu.Lock()
		took = q.sent.putAll(frames[:n])
		q.mu.Unlock()
	}
	if took < n {
		q.c.TxRingFull.Add(1)
	}
	if d := total - took; d > 0 {
		q.c.TxDropped.Add(uint64(d))
	}
	for _, f := range frames[took:n] {
		bytes -= uint64(len(f))
	}
	q.c.TxFrames.Add(uint64(took))
	q.c.TxBytes.Add(bytes)
	return took
}

// deliver queues frames for Rx and returns how many fit.
func (q *Queue) deliver(frames [][]byte) int {
	if q.closed.Load() {
		return len(frames)
	}
	q.mu.Lock()
	n := q.in.putAll(frames)
	q.mu.Unlock()
	if n > 0 {
		select {
		case q.notify <- struct{}{}:
		default:
		}
	}
	return n
}

// Inject queues frame for Rx as if it had been received, and reports whether
// it fit. It copies frame.
func (q *Queue) Inject(frame []byte) bool {
	if len(frame) > q.slotSize || q.closed.Load() {
		return false
	}
	return q.deliver([][]byte{frame}) == 1
}

// Sent returns copies of the frames an unconnected queue has transmitted
// since the last call, oldest first, and forgets them.
func (q *Queue) Sent() [][]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([][]byte, q.sent.n)
	for i := range out {
		out[i] = append([]byte(nil), q.sent.at(i)...)
	}
	q.sent.drop(q.sent.n)
	return out
}

// ReadSent copies the oldest captured frame into buf and forgets it. It
// returns the frame's length (which may exceed len(buf)) and false if there
// is none. It does not allocate.
func (q *Queue) ReadSent(buf []byte) (int, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.sent.n == 0 {
		return 0, false
	}
	f := q.sent.at(0)
	copy(buf, f)
	q.sent.drop(1)
	return len(f), true
}

// Wait implements nic.Queue.
func (q *Queue) Wait(timeout time.Duration) error {
	if q.closed.Load() {
		return net.ErrClosed
	}
	q.mu.Lock()
	ready := q.in.n > q.lent
	q.mu.Unlock()
	if ready || timeout == 0 {
		return nil
	}
	var expired <-chan time.Time
	if timeout > 0 {
		if q.timer == nil {
			q.timer = time.NewTimer(timeout)
		} else {
			q.timer.Reset(timeout)
		}
		defer q.timer.Stop()
		expired = q.timer.C
	}
	select {
	case <-q.notify:
	case <-expired:
	case <-q.done:
		return net.ErrClosed
	}
	return nil
}

// Stats implements nic.Queue. The kernel counters are zero; the transmit
// buffers are the UMEM's TX-side frames.
func (q *Queue) Stats() nic.Stats {
	q.txMu.Lock()
	lent := q.txLentN
	free := len(q.txFree) + lent
	q.txMu.Unlock()
	s := nic.Stats{UMEMFrames: TxBuffers, UMEMTxFree: uint64(free), UMEMTxLent: uint64(lent)}
	q.c.Read(&s)
	return s
}

// Close implements nic.Queue.
func (q *Queue) Close() error {
	q.closeOnce.Do(func() {
		q.closed.Store(true)
		close(q.done)
	})
	return nil
}

// slotRing is a FIFO of frames in preallocated buffers.
type slotRing struct {
	bufs [][]byte // each of cap slotSize
	head int      // index of the oldest frame
	n    int      // frames held
}

func newSlotRing(slots, slotSize int) slotRing {
	mem := make([]byte, slots*slotSize)
	r := slotRing{bufs: make([][]byte, slots)}
	for i := range r.bufs {
		r.bufs[i] = mem[i*slotSize : i*slotSize : (i+1)*slotSize]
	}
	return r
}

// at returns the i-th oldest frame.
func (r *slotRing) at(i int) []byte { return r.bufs[(r.head+i)%len(r.bufs)] }

// drop forgets the n oldest frames.
func (r *slotRing) drop(n int) {
	r.head = (r.head + n) % len(r.bufs)
	r.n -= n
}

// putAll copies frames in as far as there is room and returns how many.
func (r *slotRing) putAll(frames [][]byte) int {
	n := min(len(frames), len(r.bufs)-r.n)
	for i := range n {
		j := (r.head + r.n) % len(r.bufs)
		r.bufs[j] = append(r.bufs[j][:0], frames[i]...)
		r.n++
	}
	return n
}
