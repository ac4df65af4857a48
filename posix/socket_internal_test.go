package posix

import (
	"testing"
	"unsafe"
)

// TestSocketSizeClass keeps a socket, which holds what a connection needs
// of posix in one object, in the runtime's 704-byte size class: the next
// is 768 bytes, for every connection.
func TestSocketSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(socket{}); n > 704 {
		t.Errorf("socket is %d bytes, want at most 704", n)
	}
}
