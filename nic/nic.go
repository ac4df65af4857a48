// Package nic moves Ethernet frames between a NIC queue and one lcore.
//
// A Queue is one receive/transmit queue pair of a network interface. The
// AF_XDP implementation (Open) owns a UMEM, its fill and completion rings and
// one xsk socket bound to the queue; the kernel writes received frames into
// UMEM frames taken from the fill ring and hands them over on the RX ring,
// and frames placed on the TX ring come back on the completion ring once the
// driver has sent them. The XDP program that decides which frames reach the
// xsk (Program) belongs to the port, not the queue.
//
// Ownership: one goroutine (the lcore loop) calls Rx. Tx may be called from
// any goroutine: gVisor writes packets from its own processor and timer
// goroutines. nic knows nothing about TCP or sockets.
package nic

import (
	"errors"
	"net"
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

	// Wait blocks until a frame may be ready to receive or timeoutMs
	// milliseconds have passed (an idle lcore's sleep).
	Wait(timeoutMs int) error

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

	// Kernel counters (XDP_STATISTICS); zero for in-memory queues.
	RxDropped        uint64 // frames the kernel dropped for this xsk
	RxInvalidDescs   uint64 // invalid descriptors on the fill ring
	TxInvalidDescs   uint64 // invalid descriptors on the TX ring
	RxRingFull       uint64 // frames dropped because the RX ring was full
	RxFillRingEmpty  uint64 // times the kernel found the fill ring empty
	TxRingEmptyDescs uint64 // times the kernel found the TX ring empty
}
