// Package blast writes the same Ethernet frame many times with one
// sendmmsg(2) on a bound AF_PACKET socket: the load generator the tests and
// the benchmarks use to measure the raw receive rate of a rig.
package blast

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is struct mmsghdr (linux/socket.h).
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// Batch sends one frame many times per system call. It holds the message
// headers so that sending does not allocate; one goroutine uses it.
type Batch struct {
	iov  unix.Iovec
	msgs []mmsghdr
}

// NewBatch returns a Batch that sends a frame n times per Send.
func NewBatch(n int) *Batch { return &Batch{msgs: make([]mmsghdr, n)} }

// Send sends frame up to n times on the bound packet socket fd and returns
// how many went out (0 on an error such as ENOBUFS).
func (b *Batch) Send(fd int, frame []byte) int {
	b.iov.Base = &frame[0]
	b.iov.SetLen(len(frame))
	for i := range b.msgs {
		b.msgs[i].hdr.Iov = &b.iov
		b.msgs[i].hdr.SetIovlen(1)
	}
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.msgs[0])), uintptr(len(b.msgs)), 0, 0, 0)
	if errno != 0 {
		return 0
	}
	return int(n)
}
