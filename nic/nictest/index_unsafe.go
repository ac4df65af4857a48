package nictest

import "unsafe"

// This file holds the one use of unsafe in nictest.

// bufIndex returns which of the transmit buffers, slotSize bytes each from
// mem on, b starts at, and false if b does not start at one. A map from
// buffer to index would do the same at a hash per frame, a cost the
// device's own pointer arithmetic (nic's UMEM offset) does not have.
func bufIndex(mem, b []byte, slotSize int) (int, bool) {
	if cap(b) == 0 || len(mem) == 0 {
		return 0, false
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if p < base || p-base >= uintptr(len(mem)) || (p-base)%uintptr(slotSize) != 0 {
		return 0, false
	}
	return int((p - base) / uintptr(slotSize)), true
}
