package toolstest

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestToolsLinkNoStack checks that the tools which talk to running stacks
// over the control socket link neither gVisor nor the stack: the control
// protocol's types sit in leaf packages (internal/ctl, stack/stackinfo).
// Every directory of tools/ is such a tool but those that run stacks
// themselves, and xload, which drives an AF_XDP queue of its own.
func TestToolsLinkNoStack(t *testing.T) {
	runStacks := []string{"bench", "demo", "launch", "rig", "xload"}
	// tools/internal holds code the tools share, no tool; its packages
	// are checked through the tools that import them.
	ents, err := os.ReadDir("../../tools")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "internal" || slices.Contains(runStacks, e.Name()) {
			continue
		}
		pkg := "github.com/xstack/xstack/tools/" + e.Name()
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if heavy(dep) {
				t.Errorf("%s links %s", pkg, dep)
			}
		}
		checked++
	}
	if checked < 8 {
		t.Fatalf("checked %d tools, want at least ifconfig, sysctl, netstat, route, arp, ndp, top and pcap", checked)
	}
}

// heavy reports whether dep is gVisor or a package of xstack that runs a
// stack (stack/stackinfo, the leaf, excepted).
func heavy(dep string) bool {
	if strings.HasPrefix(dep, "gvisor.dev/") {
		return true
	}
	for _, p := range []string{"stack", "nic", "core", "posix"} {
		root := "github.com/xstack/xstack/" + p
		if dep == root || strings.HasPrefix(dep, root+"/") && dep != "github.com/xstack/xstack/stack/stackinfo" {
			return true
		}
	}
	return false
}
