package rig_test

import (
	"strings"
	"testing"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
)

func TestUpDown(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	// The two kernels reach each other over the veth.
	if out, err := r.Run(r.PeerNS, "ping", "-c1", "-W2", r.KernelAddr4.String()); err != nil {
		t.Fatalf("ping kernel side: %v\n%s", err, out)
	}
	if out, err := r.Run(r.PeerNS, "ping", "-6", "-c1", "-W2", r.KernelAddr6.String()); err != nil {
		t.Fatalf("ping6 kernel side: %v\n%s", err, out)
	}
	out, err := r.Run(r.PeerNS, "ethtool", "-k", r.PeerIf)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "tx-checksumming: off") {
		t.Errorf("peer tx checksumming not off:\n%s", out)
	}
	if err := r.Down(); err != nil {
		t.Fatal(err)
	}
	if netns.Exists(r.StackNS) || netns.Exists(r.PeerNS) {
		t.Fatal("namespaces left after Down")
	}
}
