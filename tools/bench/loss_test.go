package main

import (
	"regexp"
	"testing"

	"github.com/xstack/xstack/internal/rigtest"
)

// TestQuickLoss runs the loss scenario in quick mode and checks that the
// table has a throughput row for both targets at every loss rate and
// direction, that the dropper really dropped frames, and that the rig and
// its dropper are gone afterwards. It asserts nothing about speed.
func TestQuickLoss(t *testing.T) {
	rigtest.RequireRoot(t)
	stdout, _ := runQuick(t, "xbl", "-scenario", "loss", "-rig", "veth")
	num := `-?[0-9.]+[kM]?`
	for _, dir := range []string{upload, download} {
		for _, rate := range []string{"0", "1", "5", "20"} {
			re := regexp.MustCompile(`(?m)^\| loss \| veth \| Go \| ` + dir + `, ` + rate + `% loss \| throughput \(MiB/s\)[^|]*\| (` + num + `)[^|]* \| ` + num + `–` + num +
				` \| (` + num + `)[^|]* \| ` + num + `–` + num + ` \| [^|]+ \|$`)
			if !re.Match(stdout) {
				t.Errorf("no loss row for %s at %s%% with figures for both targets", dir, rate)
			}
		}
	}
	m := regexp.MustCompile(`the dropper dropped ([0-9]+) of ([0-9]+) TCP/UDP frames to the stack side and ([0-9]+) of ([0-9]+) from it`).FindSubmatch(stdout)
	if m == nil {
		t.Fatal("no note with the dropper's counts")
	}
	if string(m[1]) == "0" || string(m[3]) == "0" {
		t.Errorf("the dropper dropped nothing in one direction: %s", m[0])
	}
}
