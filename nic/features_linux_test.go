package nic

import (
	"net"
	"testing"

	"github.com/xstack/xstack/internal/netns"
)

// TestXDPFeaturesVeth asks the kernel what veth's driver offers: XDP (the
// rig attaches programs to it) and no AF_XDP zero-copy, which is why
// zerocopy=auto binds veth's queues in copy mode at once.
func TestXDPFeaturesVeth(t *testing.T) {
	r := newRig(t)
	var feat uint64
	err := netns.Do(r.StackNS, func() error {
		ifi, err := net.InterfaceByName(r.StackIf)
		if err != nil {
			return err
		}
		feat, err = xdpFeatures(ifi.Index)
		return err
	})
	if err != nil {
		t.Fatalf("xdp-features of %s: %v", r.StackIf, err)
	}
	const basic = 1 // NETDEV_XDP_ACT_BASIC
	if feat&basic == 0 || feat&netdevXDPActXSKZeroCopy != 0 {
		t.Fatalf("xdp-features of veth %s = %#x; want XDP (bit 0) and no zero-copy (bit 3)", r.StackIf, feat)
	}
	q, err := openAuto(t, r)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if q.ZeroCopy() {
		t.Error("zerocopy=auto on veth bound in zero-copy mode")
	}
}

func openAuto(t *testing.T, r *testRig) (*XSKQueue, error) {
	t.Helper()
	var q *XSKQueue
	err := netns.Do(r.StackNS, func() (err error) {
		q, err = Open(r.StackIf, QueueConfig{ZeroCopy: ZeroCopyAuto})
		return err
	})
	return q, err
}
