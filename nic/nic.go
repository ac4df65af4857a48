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
//	// lcore loop: q.Rx(batch) ... q.Tx(frames) ... q.Wait(d) when idle
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
// → caller of Rx → fill ring on the next Rx; the other half free stack → TX
// ring → kernel → completion ring → free stack. Zero-copy is used when the
// driver has it (ZeroCopy "auto"), else copy mode (XSKQueue.ZeroCopy says
// which). Syscalls happen only when the kernel asks for them (the rings'
// need_wakeup flags) and in Wait.
//
// OpenPort, OpenQueue and Open must run on a thread inside the interface's
// network namespace (internal/netns.Do); the file descriptors they make work
// from any thread afterwards.
//
// # Ownership
//
// One goroutine (the lcore loop) calls Rx and Wait. Tx may be called from
// any goroutine: gVisor writes packets from its own processor and timer
// goroutines; it takes an uncontended mutex. Stats and Close may be called
// from any goroutine; Close waits for a running Rx, Tx or Wait to return.
// Errors name the interface and queue; a missing kernel or driver feature
// matches ErrNotSupported. nic knows nothing about TCP or sockets.
package nic

import (
	"errors"
	"net"
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

	// Tx copies frames into device memory and queues them for transmission,
	// in order, returning how many it accepted. Frames it did not accept
	// (TX ring or UMEM full) are counted as TxDropped unless the caller
	// retries them. Tx never blocks; it is safe for concurrent use.
	Tx(frames [][]byte) (int, error)

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

	// UMEM accounting, a snapshot rather than totals: where the queue's
	// frames are. UMEMRxUser+UMEMRxKernel+UMEMTxFree+UMEMTxKernel ==
	// UMEMFrames always; at rest UMEMTxKernel is 0 (every sent frame has
	// come back through the completion ring). Zero for in-memory queues.
	UMEMFrames   uint64 // frames in the UMEM
	UMEMRxUser   uint64 // RX-side frames in user space: free, or lent to the caller by the last Rx
	UMEMRxKernel uint64 // RX-side frames the kernel holds: fill ring, driver, RX ring
	UMEMTxFree   uint64 // TX-side frames free in user space
	UMEMTxKernel uint64 // TX-side frames in the TX ring, the driver or the completion ring
}
