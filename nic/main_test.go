package nic

import (
	"os"
	"testing"

	"github.com/xstack/xstack/internal/xstest"
)

// TestMain fails the package if its tests leave goroutines or file
// descriptors (sockets, maps, programs, links, eventfds) behind. The
// subprocess of TestCrashDetaches is killed with its queue open, so it runs
// without the check.
func TestMain(m *testing.M) {
	if os.Getenv(crashEnv) != "" {
		os.Exit(m.Run())
	}
	xstest.Main(m)
}
