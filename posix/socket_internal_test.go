package posix

import (
	"testing"
	"unsafe"
)

// TestSocketSizeClass keeps a socket, which holds what a connection needs
// of posix in one object, in the runtime's 768-byte size class: the next
// is 896 bytes, for every connection.
func TestSocketSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(socket{}); n > 768 {
		t.Errorf("socket is %d bytes, want at most 768", n)
	}
}
