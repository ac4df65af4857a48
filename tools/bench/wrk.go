package main

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// wrkResult is what wrk reports for one run.
type wrkResult struct {
	RequestsPerSec float64
	Requests       uint64
	// Latency percentiles (µs) from --latency, keyed "p50", "p75", "p90",
	// "p99"; "avg" and "max" from the thread stats.
	Latency map[string]float64
	// Socket errors and non-2xx responses, summed.
	Errors uint64
}

// runWrk runs wrk with one thread and conns connections against addr for d
// whole seconds, from namespace ns, pinned to cpu, with extra request
// headers ("Connection: close" makes wrk reconnect after each response).
func runWrk(ctx context.Context, ns string, cpu int, addr netip.AddrPort, conns int, d time.Duration, headers ...string) (wrkResult, string, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	args := []string{"netns", "exec", ns, "taskset", "-c", strconv.Itoa(cpu),
		"wrk", "-t1", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(secs) + "s", "--timeout", "2s", "--latency"}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	args = append(args, "http://"+addr.String()+"/")
	cmd := exec.CommandContext(ctx, "ip", args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, string(out), fmt.Errorf("wrk: %w: %s", err, strings.TrimSpace(string(out)))
	}
	r, err := parseWrk(string(out))
	return r, string(out), err
}

// parseWrk reads wrk's text report.
func parseWrk(out string) (wrkResult, error) {
	r := wrkResult{Latency: map[string]float64{}}
	found := false
	inDist := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Requests/sec:") && len(f) == 2:
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return r, fmt.Errorf("wrk: %q: %w", line, err)
			}
			r.RequestsPerSec, found = v, true
		case strings.HasPrefix(line, "Latency Distribution"):
			inDist = true
		case inDist && len(f) == 2 && strings.HasSuffix(f[0], "%"):
			p := strings.TrimSuffix(f[0], "%")
			if us, ok := parseWrkDuration(f[1]); ok {
				r.Latency["p"+p] = us
			}
		case strings.HasPrefix(line, "Latency") && len(f) >= 4:
			if us, ok := parseWrkDuration(f[1]); ok {
				r.Latency["avg"] = us
			}
			if us, ok := parseWrkDuration(f[3]); ok {
				r.Latency["max"] = us
			}
		case strings.HasPrefix(line, "Socket errors:"):
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 2; i+1 < len(f); i += 2 {
				n, _ := strconv.ParseUint(strings.TrimSuffix(f[i+1], ","), 10, 64)
				r.Errors += n
			}
		case strings.HasPrefix(line, "Non-2xx or 3xx responses:") && len(f) == 5:
			n, _ := strconv.ParseUint(f[4], 10, 64)
			r.Errors += n
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			r.Requests, _ = strconv.ParseUint(f[0], 10, 64)
			inDist = false
		}
	}
	if !found {
		return r, fmt.Errorf("wrk: no Requests/sec in its output:\n%s", out)
	}
	return r, nil
}

// parseWrkDuration parses wrk's "625.00us", "3.26ms", "1.02s", "2.00m"
// into microseconds.
func parseWrkDuration(s string) (float64, bool) {
	for _, u := range []struct {
		suffix string
		us     float64
	}{{"us", 1}, {"ms", 1e3}, {"s", 1e6}, {"m", 60e6}, {"h", 3600e6}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil {
				return 0, false
			}
			return v * u.us, true
		}
	}
	return 0, false
}
