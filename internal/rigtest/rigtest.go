// Package rigtest gives tests a rig of their own: it creates one, removes it
// in t.Cleanup (also when the test fails), and skips tests that need root
// when not root, unless XSTACK_REQUIRE_ROOT=1 makes that a failure. It also
// builds and runs the programs under test, and reads their capture files
// back (ReadPcap) with gopacket's pcapgo, so that the check of stack's pcap
// writer is not of the same hand.
package rigtest

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/xstest"
)

// RequireRoot skips t when the process is not root, or fails it when
// XSTACK_REQUIRE_ROOT=1 (as CI sets it).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("XSTACK_REQUIRE_ROOT") == "1" {
		t.Fatal("this test needs root (network namespaces, veth, XDP) and XSTACK_REQUIRE_ROOT=1 forbids skipping it")
	}
	t.Skip("needs root: creates network namespaces, a veth pair and an XDP program")
}

// New creates a rig for t and removes it when t ends.
func New(t testing.TB, o rig.Options) *rig.Rig {
	t.Helper()
	RequireRoot(t)
	r, err := rig.Up(o)
	if err != nil {
		t.Fatalf("rig up: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Down(); err != nil {
			t.Errorf("rig down: %v", err)
		}
	})
	return r
}

// WaitDetached fails t unless the XDP program leaves the stack-side
// interface within timeout; when says after what ("after SIGKILL"). The
// kernel detaches it when the last descriptor of its link is closed, which
// happens as a killed process is reaped, a little after it is gone.
func WaitDetached(t testing.TB, r *rig.Rig, timeout time.Duration, when string) {
	t.Helper()
	xstest.WaitFor(t, timeout, "XDP program detached "+when, func() error {
		on, err := r.XDPAttached()
		if err != nil {
			t.Fatal(err)
		}
		if on {
			return errors.New("still attached")
		}
		return nil
	})
}
