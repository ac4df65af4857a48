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
)

// xloadResult is what tools/xload reports with -json (its result type).
type xloadResult struct {
	Mode       string  `json:"mode"`
	Conns      int     `json:"conns"`
	Seconds    float64 `json:"seconds"`
	Rate       float64 `json:"rate"`
	RateUnit   string  `json:"rate_unit"`
	P50us      float64 `json:"p50_us"`
	P90us      float64 `json:"p90_us"`
	P99us      float64 `json:"p99_us"`
	P999us     float64 `json:"p999_us"`
	CPUBusyPct float64 `json:"cpu_busy_pct"`
	CPUusPer   float64 `json:"cpu_us_per_unit"`
	XDPMode    string  `json:"xdp_mode"`
	Counts     struct {
		ConnsOpened uint64 `json:"conns_opened"`
		OK          uint64 `json:"ok"`
		BadStatus   uint64 `json:"bad_status"`
		Malformed   uint64 `json:"malformed"`
		Short       uint64 `json:"short"`
		Reset       uint64 `json:"reset"`
		Timeout     uint64 `json:"timeout"`
		Retransmits uint64 `json:"retransmits"`
	} `json:"counts"`
}

// errors is the sum of the failed responses of every kind.
func (r xloadResult) errors() uint64 {
	c := r.Counts
	return c.BadStatus + c.Malformed + c.Short + c.Reset + c.Timeout
}

// done is the responses that completed (ok or with a bad status): the units
// of work the server did.
func (r xloadResult) done() uint64 { return r.Counts.OK + r.Counts.BadStatus }

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
func (b *bench) runXload(addr netip.AddrPort, conns int, d time.Duration, short bool) (xloadResult, error) {
	args := []string{"-netns", b.r.PeerNS, "-if", b.r.PeerIf, "-src", xloadSources, "-server", addr.String(),
		"-c", strconv.Itoa(conns), "-d", d.String(), "-json"}
	if short {
		args = append(args, "-short")
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
		unit: float64(r.done()), "seconds": r.Seconds, "retransmits": float64(r.Counts.Retransmits),
		"reset": float64(r.Counts.Reset), "timeout": float64(r.Counts.Timeout),
		"latency_p50_us": r.P50us, "latency_p99_us": r.P99us, "latency_p99.9_us": r.P999us,
		"xload_busy_pct": r.CPUBusyPct, "xload_cpu_us_per_unit": r.CPUusPer,
	}
}
