//go:build linux

package nic

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This file holds every use of unsafe in nic: the socket options that take
// structs, and turning the rings the kernel maps into typed Go views.

// registerUMEM tells the kernel that umem, split into frames of frameSize
// bytes, is the packet memory of the socket (XDP_UMEM_REG). The mapping must
// outlive the socket.
//
// txMeta > 0 reserves that many bytes of TX metadata in front of each TX
// frame (XDP_UMEM_TX_METADATA_LEN, Linux 6.8; the field sits where older
// kernels' struct had padding, so only the flag makes the kernel read it);
// flags adds further XDP_UMEM_* flags. A kernel that knows neither answers
// EINVAL.
func registerUMEM(fd int, umem []byte, frameSize int, txMeta uint32, flags uint32) error {
	reg := unix.XDPUmemReg{
		Addr:  uint64(uintptr(unsafe.Pointer(&umem[0]))),
		Len:   uint64(len(umem)),
		Size:  uint32(frameSize),
		Flags: flags,
	}
	if txMeta > 0 {
		reg.Flags |= unix.XDP_UMEM_TX_METADATA_LEN
		reg.Tx_metadata_len = txMeta
	}
	_, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_UMEM_REG,
		uintptr(unsafe.Pointer(&reg)), unsafe.Sizeof(reg), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// mmapOffsets reads XDP_MMAP_OFFSETS. Kernels before 5.4 return a shorter
// struct without the flags offsets, so need_wakeup is unavailable there.
func mmapOffsets(fd int) (unix.XDPMmapOffsets, error) {
	var off unix.XDPMmapOffsets
	size := uint32(unsafe.Sizeof(off))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return off, errno
	}
	if size != uint32(unsafe.Sizeof(off)) {
		return off, &NotSupportedError{
			Feature: "XDP ring flags (need_wakeup, Linux 5.4)",
			Hint:    "upgrade the kernel",
		}
	}
	return off, nil
}

// xdpStatistics reads the kernel's counters of the socket (XDP_STATISTICS).
func xdpStatistics(fd int, st *unix.XDPStatistics) error {
	size := uint32(unsafe.Sizeof(*st))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(st)), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// ringView returns the indexes and descriptor array of a ring mapped at mem,
// laid out as off describes. size is the ring's number of slots.
func ringView[D any](mem []byte, off unix.XDPRingOffset, size uint32) (ringIndex, []D, error) {
	var d D
	need := off.Desc + uint64(size)*uint64(unsafe.Sizeof(d))
	if uint64(len(mem)) < need || off.Producer+4 > need || off.Consumer+4 > need || off.Flags+4 > need {
		return ringIndex{}, nil, fmt.Errorf("ring mapping of %d bytes is smaller than its layout (%d)", len(mem), need)
	}
	base := unsafe.Pointer(&mem[0])
	idx := ringIndex{
		producer: (*uint32)(unsafe.Add(base, off.Producer)),
		consumer: (*uint32)(unsafe.Add(base, off.Consumer)),
		flags:    (*uint32)(unsafe.Add(base, off.Flags)),
		mask:     size - 1,
	}
	descs := unsafe.Slice((*D)(unsafe.Add(base, off.Desc)), size)
	return idx, descs, nil
}

// ringBytes is the length to map for a ring of size slots of D.
func ringBytes[D any](off unix.XDPRingOffset, size uint32) int {
	var d D
	return int(off.Desc + uint64(size)*uint64(unsafe.Sizeof(d)))
}

// umemOffset returns the offset in umem at which b's memory starts, and
// false if b does not start inside umem: it maps a buffer that TxReserve
// lent, however the caller resliced it, back to its UMEM address.
func umemOffset(umem, b []byte) (uint64, bool) {
	if cap(b) == 0 || len(umem) == 0 {
		return 0, false
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(umem)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if p < base || p-base >= uintptr(len(umem)) {
		return 0, false
	}
	return uint64(p - base), true
}
