package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/xstack/xstack/tools/xload/report"
)

// xloadResult is what tools/xload reports with -json.
type xloadResult = report.Result

// xloadSources are the peer-side addresses xload speaks from: on-link in
// the rig's 198.18.0.0/16, apart from the peer kernel's address and from
// the 198.18.1.x the conns scenario binds, so that xload's XDP program
// takes only its own frames and the kernel sees none of them.
const xloadSources = "198.18.2.1-198.18.2.16"

// runXload runs tools/xload for d on the peer's veth end from namespace
// ns, pinned to cpu, with conns connections against addr: keep-alive, or
// one request per connection with short. It sleeps when idle (no -busy),
// so that the client CPU's /proc/stat utilisation says, as for the other
// clients, whether the client limited the run.
// A rate above 0 makes the loop open: that many requests (connections
// with short) per second on a fixed schedule.
func (b *bench) runXload(addr netip.AddrPort, conns int, d time.Duration, short bool, rate float64) (xloadResult, error) {
	args := []string{"-netns", b.r.PeerNS, "-if", b.r.PeerIf, "-src", xloadSources, "-server", addr.String(),
		"-c", strconv.Itoa(conns), "-d", d.String(), "-json"}
	if short {
		args = append(args, "-short")
	}
	if rate > 0 {
		args = append(args, "-rate", strconv.FormatFloat(rate, 'f', -1, 64))
	}
	return runXloadCmd(b.ctx, b.o.clientCPU, b.bins.xload, args)
}

// runXloadCmd runs the xload binary bin pinned to cpu and reads its -json
// report.
func runXloadCmd(ctx context.Context, cpu int, bin string, args []string) (xloadResult, error) {
	cmd := exec.CommandContext(ctx, "taskset", append([]string{"-c", strconv.Itoa(cpu), bin}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var r xloadResult
	// A run with failed responses exits 1 and still reports: the errors
	// are counted in the sample, not fatal to the scenario.
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1 && len(out) > 0) {
		return r, fmt.Errorf("xload: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		return r, fmt.Errorf("xload: its -json output %q: %w (stderr: %s)", strings.TrimSpace(string(out)), jerr, strings.TrimSpace(stderr.String()))
	}
	return r, nil
}

// xloadDetail is the sample detail of an xload run.
func xloadDetail(r xloadResult, unit string) map[string]float64 {
	return map[string]float64{
		unit: float64(r.Done()), "seconds": r.Seconds, "retransmits": float64(r.Counts.Retransmits),
		"reset": float64(r.Counts.Reset), "timeout": float64(r.Counts.Timeout),
		"latency_p50_us": r.P50us, "latency_p99_us": r.P99us, "latency_p99.9_us": r.P999us,
		"xload_busy_pct": r.CPUBusyPct, "xload_cpu_us_per_unit": r.CPUusPer,
	}
}
