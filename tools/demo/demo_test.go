package main

import (
	"testing"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rigtest"
)

// TestDemoOnce runs the demo as a newcomer would, with the shipped
// config.ini, and checks that it leaves no rig behind.
func TestDemoOnce(t *testing.T) {
	rigtest.RequireRoot(t)
	if netns.Exists(rigName+"-s") || netns.Exists(rigName+"-p") {
		t.Skipf("the demo rig %s is in use (a demo is running)", rigName)
	}
	if err := run("../../config.ini", true); err != nil {
		t.Fatal(err)
	}
	if netns.Exists(rigName+"-s") || netns.Exists(rigName+"-p") {
		t.Fatal("the demo left its rig behind")
	}
}
