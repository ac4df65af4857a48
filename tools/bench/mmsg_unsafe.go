package main

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

// sendmmsg sends frame len(msgs) times with one sendmmsg(2) on the bound
// packet socket fd and returns how many went out. iov and msgs belong to
// the caller and are reused, so that the blaster does not allocate.
func sendmmsg(fd int, frame []byte, iov *unix.Iovec, msgs []mmsghdr) int {
	iov.Base = &frame[0]
	iov.SetLen(len(frame))
	for i := range msgs {
		msgs[i].hdr.Iov = iov
		msgs[i].hdr.SetIovlen(1)
	}
	n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), 0, 0, 0)
	if errno != 0 {
		return 0
	}
	return int(n)
}
