// Package nic moves Ethernet frames between a NIC queue and one lcore.
//
// A Queue is one receive/transmit queue pair of a network interface. Two
// implementations exist: XSKQueue (AF_XDP, this package, Linux) and the
// in-memory queues of nic/nictest for tests without privileges.
//
// # AF_XDP
//
// The AF_XDP side is written over golang.org/x/sys directly: ring mechanics in
// ring.go (producer/consumer indexes shared with the kernel, cached, one
// atomic store per batch), the socket, UMEM and queue logic in xsk_linux.go,
// and every use of unsafe in mmap_unsafe.go.
//
//	port, err := nic.OpenPort(nic.PortConfig{Ifname: "xs0", XDPMode: "auto",
//		PassToKernel: true, Addrs: addrs, Logf: log.Printf})
//	q, err := port.OpenQueue(nic.QueueConfig{Queue: 0, ZeroCopy: "auto"})
//	// lcore loop: q.Rx(batch) ... q.TxReserve(bufs), build frames in
//	// them, q.TxSubmit(frames) ... q.Wait(d) when idle
//	q.Close(); port.Close()
//
// Port owns the XDP program (built in Go with cilium/ebpf's asm package, no
// clang), its maps (XSKMAP indexed by queue, IPv4 and IPv6 address sets) and
// its bpf_link attachment, native or generic (Port.Mode). The program sends
// to the xsk of the receiving queue the frames that belong to the stack —
// IPv4/IPv6 packets to its addresses, ARP for them, neighbor solicitations
// and advertisements whose target is one of them — and passes the rest to
// the kernel; with PortConfig.PassToKernel false it takes every frame. Because
// the attachment is a bpf_link, the kernel detaches the program when the
// last process holding the link dies, even by SIGKILL.
//
// An XSKQueue (Port.OpenQueue, or Open for a socket without a Port) owns one
// AF_XDP socket bound to one queue with XDP_USE_NEED_WAKEUP, its UMEM and its
// four rings. Half of the UMEM frames circulate fill ring → kernel → RX ring
// → caller of Rx → fill ring on the next Rx; the other half free stack →
// caller of TxReserve → TX ring (TxSubmit) → kernel → completion ring → free
// stack. The caller builds each frame in the UMEM frame it is sent from, so
// transmitting copies it once, from the stack's packet into UMEM (Tx, for
// frames built elsewhere, copies them in). Zero-copy is used when the driver
// has it (ZeroCopy "auto"), else copy mode (XSKQueue.ZeroCopy says which).
// Syscalls happen only when the kernel asks for them (the rings'
// need_wakeup flags) and in Wait; in copy mode, where each sendto runs the
// transmit, the socket asks the kernel to send a whole TX ring per sendto
// rather than its default 32 frames (XDP_MAX_TX_SKB_BUDGET, Linux 6.17;
// Stats.TxBudget says what the kernel took).
//
// TX checksum offload (QueueConfig.TxChecksum, XSKQueue.TxChecksumOffload,
// the TxChecksumOffloader interface): where the kernel has AF_XDP TX
// metadata (Linux 6.8), the UMEM is registered with a struct
// xsk_tx_metadata in front of every TX frame; a caller that left the
// pseudo-header sum in a frame's checksum field calls SetTxChecksum and
// TxSubmit flags the descriptor XDP_TX_METADATA. In copy mode the kernel
// turns the request into a CHECKSUM_PARTIAL skb: a device with checksum
// offload completes it (veth hands it to the peer as it is, whose kernel
// trusts it), and for one without, the kernel computes it in software
// before the driver sees the frame. In zero-copy mode the driver must
// report the xsk tx-checksum feature. Elsewhere the offload is off and the
// caller computes checksums itself (CompleteChecksum does what the device
// would). Stats.TxCsumOffload counts the frames sent with a request.
//
// Jumbo frames (QueueConfig.MultiBuffer, the MultiBufferQueue interface):
// the XDP program is loaded frags-aware (BPF_F_XDP_HAS_FRAGS, Port.Frags),
// which a driver requires before it attaches a program where the MTU does
// not fit one page, and a multi-buffer queue binds with XDP_USE_SG (Linux
// 6.6). The kernel then copies a frame larger than one UMEM frame into a
// chain of them, XDP_PKT_CONTD on every descriptor but the last; RxPackets
// hands out whole chains, as buffers and per-frame buffer counts, and Tx
// and TxSubmitPackets send chains of up to MaxTxSegments descriptors.
//
// OpenPort, OpenQueue and Open must run on a thread inside the interface's
// network namespace (internal/netns.Do); the file descriptors they make work
// from any thread afterwards.
//
// # Ownership
//
// One goroutine (the lcore loop) calls Rx and Wait. The TX calls (Tx,
// TxReserve, TxSubmit, TxRelease) may be made from any goroutine: gVisor
// writes packets from its own processor and timer goroutines; each takes an
// uncontended mutex. A buffer TxReserve lent belongs to the caller until it
// hands it back, and every lent buffer must be back before Close. Stats and
// Close may be called from any goroutine; Close waits for a running Rx, TX
// call or Wait to return.
// Errors name the interface and queue; a missing kernel or driver feature
// matches ErrNotSupported. nic knows nothing about TCP or sockets.
package nic

import (
	"errors"
	"net"
	"sync/atomic"
	"time"
)

// ErrNotSupported is matched (errors.Is) by errors that report a kernel or
// driver feature this machine lacks. The message names the feature and what
// to configure instead.
var ErrNotSupported = errors.New("not supported")

// Queue is one NIC queue as the stack sees it.
type Queue interface {
	// Rx fills frames with up to len(frames) received Ethernet frames and
	// returns how many it filled. Each frame aliases memory owned by the
	// queue and stays valid until the next call to Rx, which gives the
	// previous batch back to the device. Rx never blocks.
	Rx(frames [][]byte) (int, error)

	// TxReserve lends the caller up to len(bufs) free transmit buffers
	// in device memory (UMEM frames on an XSKQueue), so that a frame is
	// built where the device sends it from, and returns how many it lent:
	// bufs[:n] are set, each empty with the capacity of the largest frame
	// the queue sends. When none is free it first takes back the frames
	// the device has finished sending. The caller writes one frame into
	// each buffer (as buf[:n]: its start must not move) and hands every lent
	// buffer back exactly once: to TxSubmit to send it, or to TxRelease.
	// TxReserve never blocks; it is safe for concurrent use.
	TxReserve(bufs [][]byte) int

	// TxSubmit queues frames for transmission, in order; each is a buffer
	// lent by TxReserve holding one frame. It takes every buffer back,
	// sent or not, and returns n: frames[:n] were sent, the rest (TX ring
	// full, an empty frame) are counted as TxDropped. A sent frame's bytes
	// stay as they are until the next TxReserve of the queue hands its
	// buffer out again, so the caller may still read frames[:n] (for a
	// capture) before then. A buffer the queue did not lend, or one given
	// back twice, is an error and is not sent.
	TxSubmit(frames [][]byte) (int, error)

	// TxRelease takes back buffers lent by TxReserve that are not to be
	// sent. A buffer the queue did not lend is an error.
	TxRelease(bufs [][]byte) error

	// Wait blocks until a frame may be ready to receive or timeout has
	// passed (an idle lcore's sleep); a negative timeout waits until a
	// frame or Close. The timeout is kept to the microsecond, not rounded
	// to the millisecond: idle_sleep is often tens of microseconds.
	Wait(timeout time.Duration) error

	// HardwareAddr is the MAC address of the interface.
	HardwareAddr() net.HardwareAddr

	// MTU is the largest IP packet the interface carries (without the
	// Ethernet header).
	MTU() int

	// Stats returns a snapshot of the queue's counters.
	Stats() Stats

	// Close releases the queue. It is idempotent; afterwards Rx and Tx
	// return net.ErrClosed.
	Close() error
}

// Stats are a queue's counters. All are totals since Open.
type Stats struct {
	RxFrames uint64 // frames handed to the caller by Rx
	RxBytes  uint64
	TxFrames uint64 // frames accepted by Tx
	TxBytes  uint64

	TxDropped     uint64 // frames Tx could not accept (ring or UMEM full, frame too big)
	TxRingFull    uint64 // Tx calls that found the TX ring full
	FillRingEmpty uint64 // times Rx found no free UMEM frame to give to the fill ring

	// Wake-ups (AF_XDP need_wakeup): syscalls made to kick the kernel,
	// and those that found it busy (EAGAIN, EBUSY, ENOBUFS, ENETDOWN) and
	// are retried on the next call. Zero for in-memory queues.
	TxWakeups  uint64
	RxWakeups  uint64
	WakeupBusy uint64

	// Kernel counters (XDP_STATISTICS); zero for in-memory queues.
	RxDropped        uint64 // frames the kernel dropped for this xsk
	RxInvalidDescs   uint64 // invalid descriptors on the fill ring
	TxInvalidDescs   uint64 // invalid descriptors on the TX ring
	RxRingFull       uint64 // frames dropped because the RX ring was full
	RxFillRingEmpty  uint64 // times the kernel found the fill ring empty
	TxRingEmptyDescs uint64 // times the kernel found the TX ring empty

	// TxBudget is how many frames one sendto may send in copy mode: the
	// TX ring size where the kernel took XDP_MAX_TX_SKB_BUDGET, else its
	// fixed 32. Zero for in-memory queues.
	TxBudget uint64

	// TxCsumOffload counts the frames sent with a checksum request
	// (TxChecksumOffloader.SetTxChecksum): the device, not the caller,
	// completed their L4 checksum. With the offload off it stays zero.
	TxCsumOffload uint64

	// UMEM accounting, a snapshot rather than totals: where the queue's
	// frames are. UMEMRxUser+UMEMRxKernel+UMEMTxFree+UMEMTxKernel ==
	// UMEMFrames always; at rest UMEMTxKernel and UMEMTxLent are 0 (every
	// sent frame has come back through the completion ring, every lent
	// buffer was submitted or released). In-memory queues report their
	// transmit buffers as TX-side frames, none of them with a kernel.
	UMEMFrames   uint64 // frames in the UMEM
	UMEMRxUser   uint64 // RX-side frames in user space: free, or lent to the caller by the last Rx
	UMEMRxKernel uint64 // RX-side frames the kernel holds: fill ring, driver, RX ring
	UMEMTxFree   uint64 // TX-side frames in user space: free, or lent by TxReserve
	UMEMTxKernel uint64 // TX-side frames in the TX ring, the driver or the completion ring
	UMEMTxLent   uint64 // of UMEMTxFree, the buffers lent by TxReserve and not yet given back
}

// QueueCounters are the frame counters every Queue implementation keeps,
// updated once per batch and read by Stats from any goroutine.
type QueueCounters struct {
	RxFrames, RxBytes, TxFrames, TxBytes, TxDropped, TxRingFull atomic.Uint64
	TxCsumOffload                                               atomic.Uint64
}

// Read copies the counters into s.
func (c *QueueCounters) Read(s *Stats) {
	s.RxFrames = c.RxFrames.Load()
	s.RxBytes = c.RxBytes.Load()
	s.TxFrames = c.TxFrames.Load()
	s.TxBytes = c.TxBytes.Load()
	s.TxDropped = c.TxDropped.Load()
	s.TxRingFull = c.TxRingFull.Load()
	s.TxCsumOffload = c.TxCsumOffload.Load()
}

// MultiBufferQueue is a Queue whose frames may be larger than one of its
// buffers: an XSKQueue (QueueConfig.MultiBuffer binds it with AF_XDP's
// XDP_USE_SG, so that the MTU may exceed a UMEM frame, as jumbo frames
// do), or a nictest queue that emulates one. A received frame is a list of
// buffers, which a caller can make one packet of without copying; a frame
// to send may be built in several buffers lent by TxReserve.
type MultiBufferQueue interface {
	Queue

	// MultiBuffer reports whether frames may span several buffers. When
	// false every frame is one buffer, as on a plain Queue.
	MultiBuffer() bool

	// RxPackets fills bufs with the buffers of up to len(segs) whole
	// received frames and segs with how many buffers each has: frame i
	// is bufs[k:k+segs[i]], k the sum of segs[:i]. It returns the number
	// of frames. The buffers stay valid until the next RxPackets, which
	// gives them back, as Rx's do. ErrRxBufsShort reports a frame with
	// more buffers than bufs holds. On a multi-buffer queue Rx answers
	// ErrRxMultiBuffer: a frame cannot be handed out one buffer at a time.
	RxPackets(bufs [][]byte, segs []int) (int, error)

	// TxSubmitPackets sends frames built in buffers lent by TxReserve,
	// frame i in bufs[k:k+segs[i]], as TxSubmit sends one-buffer frames:
	// every buffer is taken back, a prefix of the frames is sent, and
	// their number returned. A frame of more than MaxTxSegments buffers
	// is not sent (ErrTxTooManySegs). A checksum request
	// (TxChecksumOffloader) is made on a frame's first buffer and covers
	// the whole frame; its field must lie in that buffer.
	TxSubmitPackets(bufs [][]byte, segs []int) (int, error)

	// MaxTxSegments is how many buffers one sent frame may span (1 when
	// MultiBuffer is false).
	MaxTxSegments() int
}

// Errors of the multi-buffer calls, fixed so that they never allocate.
var (
	// ErrRxMultiBuffer is Rx's answer on a multi-buffer queue, whose
	// frames may span several buffers: read it with RxPackets.
	ErrRxMultiBuffer = errors.New("rx on a multi-buffer queue: use RxPackets, a frame may span several buffers")
	// ErrRxBufsShort is RxPackets' answer when the next frame spans more
	// buffers than bufs has room for: nothing is lost, a call with a
	// longer bufs receives it.
	ErrRxBufsShort = errors.New("rx packets: the next frame spans more buffers than bufs holds")
	// ErrTxTooManySegs reports a frame that needs more buffers than the
	// queue sends as one frame (MaxTxSegments); it is not sent.
	ErrTxTooManySegs = errors.New("tx: frame spans more buffers than the queue sends as one frame (MaxTxSegments)")
	// ErrTxSegsMismatch is TxSubmitPackets' answer when segs does not
	// divide bufs into frames (a count below 1, or a sum other than
	// len(bufs)); every buffer is taken back and none is sent.
	ErrTxSegsMismatch = errors.New("tx packets: segs does not divide bufs into frames")
)

// TxChecksumOffloader is implemented by queues that can complete a frame's
// L4 checksum as they send it: an XSKQueue whose UMEM carries AF_XDP TX
// metadata (QueueConfig.TxChecksum), and the in-memory queues of nictest.
// The caller asks once whether the offload is on (TxChecksumOffload) and
// otherwise computes every checksum itself.
//
// The contract is that of CHECKSUM_PARTIAL in the kernel
// (include/linux/skbuff.h): the caller writes the frame in a buffer lent by
// TxReserve, puts in its L4 checksum field (at start+offset) the one's
// complement sum of the pseudo-header, not complemented, and calls
// SetTxChecksum with the frame at its final length before TxSubmit. The
// device then sums the frame from start to its end (pseudo-header sum
// included, as it sits in the checksum field) and stores the complement of
// the folded sum in the checksum field, 0xffff for 0. For TCP and UDP start
// is the offset of the L4 header in the frame (14 + the IP header length)
// and offset is 16 (TCP) or 6 (UDP).
type TxChecksumOffloader interface {
	// TxChecksumOffload reports whether SetTxChecksum works on this
	// queue. It does not change after the queue is opened.
	TxChecksumOffload() bool

	// SetTxChecksum asks the device to complete the checksum of frame,
	// a buffer lent by TxReserve (its start as lent) holding one frame at
	// its final length, as the type's doc says. The request is
	// forgotten when the buffer is lent again. It fails, without
	// allocating, when the offload is off, when the checksum field does
	// not lie within frame, or when frame is not a lent buffer. It
	// neither blocks nor takes a lock; only the buffer's owner may call
	// it.
	SetTxChecksum(frame []byte, start, offset int) error
}

// Errors of SetTxChecksum, fixed so that the call never allocates.
var (
	ErrTxChecksumOff   = errors.New("tx checksum offload is off on this queue")
	errTxChecksumRange = errors.New("tx checksum request: the checksum field lies outside the frame")
	errTxChecksumBuf   = errors.New("tx checksum request: buffer not lent by TxReserve")
)

// CompleteChecksum does what a device does for a checksum request
// (TxChecksumOffloader): it sums frame[start:] in one's complement, with
// the pseudo-header sum the caller left in the checksum field at
// start+offset, and stores the complement of the folded sum there (0xffff
// for 0, as the kernel's skb_checksum_help does). The in-memory queues use
// it; a caller whose queue lacks the offload may use it on a frame built
// for the offload. It reports false, changing nothing, when the field lies
// outside frame.
func CompleteChecksum(frame []byte, start, offset int) bool {
	if start < 0 || offset < 0 || start+offset+2 > len(frame) {
		return false
	}
	var sum uint64
	b := frame[start:]
	for len(b) >= 8 {
		// Big-endian 16-bit words, eight bytes at a time: the carries
		// out of each 16-bit lane are folded at the end.
		v := uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
			uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
		sum += v >> 32
		sum += v & 0xffffffff
		b = b[8:]
	}
	for len(b) >= 2 {
		sum += uint64(b[0])<<8 | uint64(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint64(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	c := ^uint16(sum)
	if c == 0 {
		c = 0xffff
	}
	frame[start+offset] = byte(c >> 8)
	frame[start+offset+1] = byte(c)
	return true
}
