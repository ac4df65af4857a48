package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rigtest"
)

const wrkOutput = `Running 3s test @ http://198.18.0.1/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.59ms    7.31ms  55.49ms   92.00%
    Req/Sec    11.45k     5.67k   19.83k    56.67%
  Latency Distribution
     50%  625.00us
     75%    3.26ms
     90%    8.54ms
     99%    1.02s
  34453 requests in 3.04s, 9.53MB read
  Socket errors: connect 1, read 2, write 0, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:  11331.52
Transfer/sec:      3.13MB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	if r.RequestsPerSec != 11331.52 || r.Requests != 34453 || r.Errors != 12 {
		t.Errorf("got %.2f req/s, %d requests, %d errors; want 11331.52, 34453, 12", r.RequestsPerSec, r.Requests, r.Errors)
	}
	want := map[string]float64{"p50": 625, "p75": 3260, "p90": 8540, "p99": 1.02e6, "avg": 3590, "max": 55490}
	for k, v := range want {
		if math.Abs(r.Latency[k]-v) > 1e-6 {
			t.Errorf("latency %s = %v µs, want %v", k, r.Latency[k], v)
		}
	}
	if _, err := parseWrk("unable to connect to 198.18.0.1:80 Connection refused\n"); err == nil {
		t.Error("parseWrk accepted output without Requests/sec")
	}
}

func TestStats(t *testing.T) {
	for _, tc := range []struct {
		v    []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got, _ := median(tc.v); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.v, got, tc.want)
		}
	}
	sorted := make([]float64, 1000)
	for i := range sorted {
		sorted[i] = float64(i + 1)
	}
	if q := quantile(sorted, 0.99); q != 990 {
		t.Errorf("p99 of 1..1000 = %v, want 990", q)
	}
	c := cdfOf(sorted)
	if c.Quantiles[len(c.Quantiles)-1] != 1 || c.LatencyUs[len(c.LatencyUs)-1] != 1000 {
		t.Errorf("CDF does not end at the maximum: %v", c.LatencyUs[len(c.LatencyUs)-1])
	}
}

func TestResponseLength(t *testing.T) {
	resp := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
	if n := responseLength([]byte(resp)); n != len(resp) {
		t.Errorf("responseLength = %d, want %d", n, len(resp))
	}
	if n := responseLength([]byte(resp[:20])); n != -1 {
		t.Errorf("responseLength of a partial head = %d, want -1", n)
	}
}

// sampleResults is a run with both targets, as the table and plots see it.
func sampleResults() *Results {
	r := &Results{}
	for i, c := range []int{1, 16, 64} {
		p := r.point(Point{Scenario: "rps", Label: "conns", Param: c, Metric: "requests/s", Unit: "req/s"})
		p.Label = strings.Repeat("x", i) // distinct points
		for round := 1; round <= 3; round++ {
			p.Samples = append(p.Samples,
				&Sample{Target: kernel, Round: round, Value: float64(1000 * c * round)},
				&Sample{Target: xstack, Round: round, Value: float64(2000 * c * round)})
		}
	}
	lat := r.point(Point{Scenario: "latency", Label: "1000 req/s", Param: 16, Metric: "p50", Unit: "µs", Lower: true})
	for _, tg := range []string{kernel, xstack} {
		v := make([]float64, 5000)
		for i := range v {
			v[i] = float64(50 + i/10)
		}
		lat.Samples = append(lat.Samples, &Sample{Target: tg, Round: 1, Value: quantile(v, 0.5), CDF: cdfOf(v)})
	}
	return r
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	sampleResults().writeTable(&b)
	out := b.String()
	// Median 2000 (kernel) and 4000 (xstack) at 1 connection: ratio 2.
	if !strings.Contains(out, "| rps | — | — |  | requests/s (req/s) | 2000 | 1000–3000 | 4000 | 2000–6000 | 2.00 |") {
		t.Errorf("table lacks the expected row:\n%s", out)
	}
	if !strings.Contains(out, "(lower is better)") {
		t.Errorf("latency row not marked lower-is-better:\n%s", out)
	}
}

func TestPlots(t *testing.T) {
	dir := t.TempDir()
	paths, err := writePlots(sampleResults(), filepath.Join(dir, "r"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 {
		t.Fatalf("wrote %v, want two plots", paths)
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if b := img.Bounds(); b.Dx() < 100 || b.Dy() < 100 {
			t.Errorf("%s: %v image", p, b)
		}
	}
}

func TestBarPlots(t *testing.T) {
	r := &Results{}
	for i, label := range []string{"1 flow, upload, offloads as-is", "4 flows, download, offloads off"} {
		p := r.point(Point{Scenario: "bulk", Label: label, Param: 1 + 3*i, Metric: "throughput", Unit: "Gbit/s"})
		p.Samples = append(p.Samples, &Sample{Target: kernel, Round: 1, Value: 5.5}, &Sample{Target: xstack, Round: 1, Value: 2.1})
	}
	p := r.point(Point{Scenario: "conns", Label: "2000 idle conns", Param: 2000, Metric: "memory/conn", Unit: "KiB", Lower: true})
	p.Samples = append(p.Samples, &Sample{Target: kernel, Round: 1, Value: -0.4}, &Sample{Target: xstack, Round: 1, Value: 6.5})
	paths, err := writePlots(r, filepath.Join(t.TempDir(), "r"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != 2 || !strings.HasSuffix(paths[0], "-bulk.png") || !strings.HasSuffix(paths[1], "-conns.png") {
		t.Fatalf("wrote %v, want the bulk and conns plots", paths)
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
}

// runQuick runs the bench binary in quick mode with args, on rigs named
// after prefix and a random suffix and with its JSON going to a temporary
// file, logs what it printed, and fails t if it fails or leaves a rig's
// namespace behind. It returns its standard output and the JSON's path.
func runQuick(t *testing.T, prefix string, args ...string) (stdout []byte, out string) {
	t.Helper()
	bin := rigtest.Build(t, "./tools/bench")
	var rb [3]byte
	rand.Read(rb[:])
	name := prefix + hex.EncodeToString(rb[:])
	out = filepath.Join(t.TempDir(), "results.json")
	args = append([]string{"-quick"}, args...)
	cmd := exec.Command(bin, append(args, "-name", name, "-out", out)...)
	cmd.Dir = "."
	t.Cleanup(func() {
		for _, ns := range []string{name + "-s", name + "-p"} {
			if netns.Exists(ns) {
				t.Errorf("namespace %s left behind", ns)
				exec.Command("ip", "netns", "del", ns).Run()
			}
		}
	})
	start := time.Now()
	stdout, err := cmd.Output()
	var stderr []byte
	if ee, ok := err.(*exec.ExitError); ok {
		stderr = ee.Stderr
	}
	line := "bench " + strings.Join(args, " ")
	t.Logf("%s took %v\n%s\n%s", line, time.Since(start).Round(time.Millisecond), stdout, stderr)
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	return stdout, out
}

// TestQuick runs the harness end to end in quick mode (rps, cps, latency,
// bulk and conns, both targets, both rig modes) on rigs of its own, and checks that
// it printed a table with numbers for both targets in both modes, the cost
// rows, wrote the JSON (with the raw CPU figures) and plots, and removed
// its rig. It asserts nothing about speed.
func TestQuick(t *testing.T) {
	rigtest.RequireRoot(t)
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Log("wrk is missing: the bench installs it with apt-get")
	}
	stdout, out := runQuick(t, "xbt", "-scenario", "rps,cps,latency,bulk,conns", "-rig", "veth,nic")

	// Rows: | scenario | rig | client | point | metric | kernel median |
	// kernel min–max | xstack median | xstack min–max | ratio |
	num := `-?[0-9.]+[kM]?`
	for _, mode := range []string{"veth", "nic"} {
		for _, row := range []struct{ scen, client, metric string }{
			{"rps", "wrk", "requests/s"}, {"rps", "wrk", "server CPU/request \\(µs\\)"},
			{"rps", "wrk", "server CPU/request, whole CPU \\(/proc/stat\\) \\(µs\\)"},
			{"cps", "wrk", "connections/s"}, {"cps", "wrk", "server CPU/connection \\(µs\\)"},
			{"cps", "Go", "connections/s"}, {"cps", "Go", "server CPU/connection \\(µs\\)"},
			{"rps", "xload", "requests/s"}, {"rps", "xload", "server CPU/request \\(µs\\)"},
			{"cps", "xload", "connections/s"}, {"cps", "xload", "server CPU/connection \\(µs\\)"},
			{"latency", "Go", "p99 \\(µs\\)"}, {"latency", "xload", "p99 \\(µs\\)"},
			{"latency", "xload", "server CPU/request \\(µs\\)"},
			{"bulk", "Go", "throughput \\(Gbit/s\\)"}, {"bulk", "Go", "server CPU \\(CPU-s/GB\\)"},
			{"conns", "Go", "memory/conn \\(KiB\\)"}, {"conns", "Go", "RSS/conn \\(KiB\\)"},
		} {
			re := regexp.MustCompile(`(?m)^\| ` + row.scen + ` \| ` + mode + ` \| ` + row.client + ` \| [^|]+ \| ` + row.metric + `[^|]*\| (` + num + `)[^|]* \| ` + num + `–` + num +
				` \| (` + num + `)[^|]* \| ` + num + `–` + num + ` \| -?[0-9.]+( \(lower is better\))? \|$`)
			if !re.Match(stdout) {
				t.Errorf("no %s %s %s %s row with numbers for both targets and a ratio in the table", mode, row.scen, row.client, row.metric)
			}
		}
		re := regexp.MustCompile(`(?m)^\| rps \| ` + mode + ` \| wrk \| [^|]+ \| client CPU \(%\) \| [0-9.]+( client-bound)? \| [0-9.]+–[0-9.]+ \| [0-9.]+( client-bound)? \| [0-9.]+–[0-9.]+ \| — \|$`)
		if !re.Match(stdout) {
			t.Errorf("no %s rps client CPU row", mode)
		}
	}
	// bulk reports the offloads it found, for both settings and targets.
	for _, c := range []struct{ mode, offloads string }{{"veth", "as-is"}, {"veth", "off"}, {"nic", "as-is"}, {"nic", "tso/gso off"}} {
		for _, tg := range []string{kernel, xstack} {
			if !bytes.Contains(stdout, []byte("note: bulk, rig "+c.mode+", offloads "+c.offloads+", "+tg+" target: xp0 tx-csum ")) {
				t.Errorf("no note on the offloads in rig %s with offloads %s, %s target", c.mode, c.offloads, tg)
			}
		}
	}

	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	seen := map[string]bool{}
	for _, p := range res.Points {
		for _, s := range p.Samples {
			if s.Value > 0 {
				seen[p.Rig+"/"+p.Scenario+"/"+s.Target] = true
			}
			if s.CPU == nil {
				continue
			}
			// The raw figures: a window, the server CPU's times, the
			// loop's busy time for xstack, the NAPI kthreads' in nic.
			k := p.Rig + "/" + p.Scenario + "/" + s.Target + "/cpu"
			seen[k] = s.CPU.WindowNs > 0 && s.CPU.Server.busy()+s.CPU.Server.Idle > 0 && s.CPU.Units > 0 &&
				(s.Target == kernel) == (s.CPU.LoopBusyNs == nil) && (p.Rig == "nic") == (s.CPU.NAPIStackNs != nil)
		}
	}
	for _, mode := range []string{"veth", "nic"} {
		for _, k := range []string{"rps/kernel", "rps/xstack", "cps/kernel", "cps/xstack", "bulk/kernel", "bulk/xstack", "conns/kernel", "conns/xstack",
			"rps/kernel/cpu", "rps/xstack/cpu", "cps/kernel/cpu", "cps/xstack/cpu", "bulk/kernel/cpu", "bulk/xstack/cpu"} {
			if !seen[mode+"/"+k] {
				t.Errorf("JSON has no positive sample (or no complete CPU figures) for %s/%s", mode, k)
			}
		}
		for _, plot := range []string{"rps", "bulk", "conns"} {
			if _, err := os.Stat(strings.TrimSuffix(out, ".json") + "-" + mode + "-" + plot + ".png"); err != nil {
				t.Errorf("%s plot: %v", plot, err)
			}
		}
	}
}
