package nic

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// TestMain fails the package if its tests leave file descriptors open
// (sockets, maps, programs, links, eventfds).
func TestMain(m *testing.M) {
	before := openFDs()
	code := m.Run()
	if code == 0 && os.Getenv(crashEnv) == "" {
		after := openFDs()
		for i := 0; i < 20 && after > before; i++ {
			time.Sleep(10 * time.Millisecond)
			after = openFDs()
		}
		if after > before {
			fmt.Fprintf(os.Stderr, "file descriptor leak: %d open before the tests, %d after\n", before, after)
			code = 1
		}
	}
	os.Exit(code)
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return len(ents)
}
