package toolstest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/rigtest"
	"github.com/xstack/xstack/stack"
)

// readCapture reads <dir>/cpu0_0.pcap, cpu0_1.pcap, ... in order with
// gopacket's pcap reader (rigtest.ReadPcapSeq), checks that the directory
// holds nothing else, and returns the frames and the file names.
func readCapture(t *testing.T, dir string, snaplen int) ([]rigtest.PcapRecord, []string) {
	t.Helper()
	frames, files, err := rigtest.ReadPcapSeq(dir, "cpu0", snaplen)
	if err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != len(files) {
		t.Fatalf("%d files in %s, but cpu0_0 to cpu0_%d are %d", len(ents), dir, len(files)-1, len(files))
	}
	return frames, files
}

func TestPcap(t *testing.T) {
	const snaplen, savelen, n = 96, 4096, 100
	dir := t.TempDir()
	e := start(t, "[pcap]", "enable=1", fmt.Sprintf("snaplen=%d", snaplen), fmt.Sprintf("savelen=%d", savelen), "savepath="+dir)
	var st []stack.PcapStatus
	e.json(t, &st, "pcap", "status")
	if len(st) != 1 || !st[0].Enabled || st[0].Snaplen != snaplen || st[0].Savelen != savelen {
		t.Fatalf("pcap status: %+v", st)
	}

	c, br := e.connect(t, e.r.StackAddr4)
	for i := 0; i < n; i++ {
		if _, err := get(c, br, fmt.Sprintf("/req-%03d", i), i == n-1); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	c.Close()
	e.waitServerClosed(t, c)
	out := e.ok(t, "pcap", "off")
	if !strings.Contains(out, "proc 0: capture off") {
		t.Fatalf("pcap off: %q", out)
	}

	frames, files := readCapture(t, dir, snaplen)
	if len(files) < 2 {
		t.Fatalf("%d files: want rotation at %d bytes", len(files), savelen)
	}
	mac := string(e.r.StackMAC)
	next, responses, truncated := 0, 0, 0
	var prev time.Time
	for i, f := range frames {
		if f.FileSize > savelen {
			t.Fatalf("%s is %d bytes, more than savelen %d", f.File, f.FileSize, savelen)
		}
		if f.Time.Before(prev) {
			t.Fatalf("frame %d: timestamp goes back", i)
		}
		prev = f.Time
		if len(f.Data) < 14 {
			t.Fatalf("frame %d: %d bytes", i, len(f.Data))
		}
		if f.Orig > len(f.Data) {
			truncated++
		}
		rx, tx := string(f.Data[:6]) == mac, string(f.Data[6:12]) == mac
		switch {
		case rx && bytes.Contains(f.Data, []byte("GET /req-")):
			got := string(f.Data[bytes.Index(f.Data, []byte("GET /req-"))+9:][:3])
			if got != fmt.Sprintf("%03d", next) {
				t.Fatalf("frame %d: request %s, want %03d (in order, each once)", i, got, next)
			}
			if next > 0 && responses != next {
				t.Fatalf("frame %d: request %d after %d responses", i, next, responses)
			}
			next++
		case tx && bytes.Contains(f.Data, []byte("HTTP/1.1 200")):
			responses++
		case !rx && !tx && f.Data[0]&1 == 0:
			t.Fatalf("frame %d neither to nor from the stack's MAC", i)
		}
	}
	if next != n || responses != n {
		t.Fatalf("captured %d requests (RX) and %d responses (TX), want %d each", next, responses, n)
	}
	if truncated == 0 {
		t.Fatal("no frame was cut to snaplen")
	}
	e.json(t, &st, "pcap", "status")
	if st[0].Enabled || st[0].Frames != uint64(len(frames)) || st[0].Files != len(files) || st[0].Dropped != 0 {
		t.Fatalf("pcap status after off: %+v; read back %d frames in %d files", st[0], len(frames), len(files))
	}

	// tshark reads the files as they are, frame for frame: Wireshark's
	// reader is the check that matters to users, so CI installs it.
	tshark, err := exec.LookPath("tshark")
	switch {
	case err == nil:
		total := 0
		for _, f := range files {
			out, err := exec.Command(tshark, "-r", f, "-T", "fields", "-e", "frame.number").Output()
			if err != nil {
				t.Fatalf("tshark -r %s: %v", f, err)
			}
			total += len(strings.Fields(string(out)))
		}
		if total != len(frames) {
			t.Fatalf("tshark read %d frames, pcapgo read %d", total, len(frames))
		}
		out, err := exec.Command(tshark, "-r", files[0], "-Y", "tcp.flags.syn==1", "-T", "fields", "-e", "ip.src").Output()
		if err != nil || !strings.Contains(string(out), e.r.PeerAddr4.String()) || !strings.Contains(string(out), e.r.StackAddr4.String()) {
			t.Fatalf("tshark: the handshake's SYN and SYN-ACK are not in %s: %q, %v", files[0], out, err)
		}
	case os.Getenv("XSTACK_REQUIRE_ROOT") == "1":
		t.Fatal("tshark is not installed, and XSTACK_REQUIRE_ROOT=1 (CI) forbids skipping the Wireshark check of the capture files: apt-get install tshark (.ci/run does)")
	default:
		t.Log("tshark not installed: files checked with pcapgo only")
	}

	// On again at run time, with other settings and another directory.
	dir2 := t.TempDir()
	e.ok(t, "pcap", "on", "-s", "200", "-l", "1000000", "-w", dir2)
	c2, br2 := e.connect(t, e.r.StackAddr6)
	if _, err := get(c2, br2, "/again", true); err != nil {
		t.Fatal(err)
	}
	c2.Close()
	e.waitServerClosed(t, c2)
	e.ok(t, "pcap", "off")
	frames, _ = readCapture(t, dir2, 200)
	found := false
	for _, f := range frames {
		found = found || bytes.Contains(f.Data, []byte("GET /again"))
	}
	if !found {
		t.Fatalf("%d frames captured after pcap on, none with the request", len(frames))
	}
	e.fails(t, 1, "savelen", "pcap", "on", "-s", "500", "-l", "100")
	e.fails(t, 1, "no such file", "pcap", "on", "-w", filepath.Join(dir2, "missing"))
}
