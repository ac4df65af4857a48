// Command top shows the load of running xstack lcores, refreshed every -d
// seconds: how busy each loop is by time (the share of the loop's time
// spent in passes that received, delivered or sent something), the
// process's user and system CPU as the OS counts it, loop passes per
// second, packets and bits per second each way, and TCP connections.
//
// Each round it asks every process for a stats snapshot (ctl.OpStats:
// cumulative counters and the process's clock) and prints the differences
// to the previous round over the time between the two snapshots. It
// samples the processes that answer when it starts; one that stops
// answering is reported once on standard error and left out of the
// following rounds, and top ends with an error only when none is left.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/xstack/xstack/internal/ctl"
)

const usage = `
usage: top [-p proc-id] [--run-dir dir] [--json] [-d seconds] [-n rounds]

Samples running xstack processes (every process in the run dir unless -p is
given) every -d seconds and prints, per lcore:
  busy%      the share of the loop's time spent in passes that received,
             delivered or sent something (idle passes and their sleeps are
             the rest): a saturated lcore reads near 100%
  user% sys% the CPU time of the whole process in user and kernel mode, in
             % of one CPU, as the OS counts it (getrusage); a busy-polling
             loop uses its CPU whatever its load, and every lcore of a
             process in thread mode shows the same figure
  passes/s   loop passes per second
  rx/tx pkts/s and Mbit/s
             frames on the AF_XDP queue, Ethernet header included
  conns      TCP connections (not listening, not closed)
  stalls/s   working passes per second that took 1 ms or more from their
             start to the next pass: frames that arrive meanwhile wait in
             the ring, so these make the latency tail (the stats carry
             the counts at 100 µs, 1 ms and 10 ms)
-n stops after that many rounds (0: until killed). With --json each round
is one line holding one JSON object: {"time_ns":..., "lcores":[...]}, each
lcore with the rates above and the raw cumulative counters of its snapshot
(time_ns, busy_ns, idle_ns, user_ns, sys_ns, passes, rx_bytes, ...), so a
script can compute rates of its own. A process that does not answer is
reported on standard error and the others are sampled.`

// row is one lcore's line of a round: the rates over the interval, and
// the snapshot they end at.
type row struct {
	ProcID int `json:"proc_id"`
	ctl.Stats
	IntervalNs   int64   `json:"interval_ns"` // between the two snapshots, by the process's clock
	BusyPct      float64 `json:"busy_pct"`
	UserPct      float64 `json:"user_pct"`
	SysPct       float64 `json:"sys_pct"`
	PassesPerSec float64 `json:"passes_per_sec"`
	RxPPS        float64 `json:"rx_pps"`
	RxBPS        float64 `json:"rx_bps"`
	TxPPS        float64 `json:"tx_pps"`
	TxBPS        float64 `json:"tx_bps"`
	// StallsPerSec is the working passes of 1 ms or more per second.
	StallsPerSec float64 `json:"stalls_per_sec"`
}

// round is what --json prints for one round, on one line.
type round struct {
	TimeNs int64 `json:"time_ns"` // when top printed it (Unix ns)
	Lcores []row `json:"lcores"`
}

func main() {
	t := ctl.NewTool("top", usage)
	delay := t.FS.Float64("d", 1, "seconds between samples")
	rounds := t.FS.Int("n", 0, "rounds to print, 0 = until interrupted")
	t.Main(func(args []string) error {
		if len(args) > 0 {
			return ctl.Usagef("unexpected operand %q", args[0])
		}
		if *delay <= 0 || *rounds < 0 {
			return ctl.Usagef("-d must be positive and -n at least 0")
		}
		return run(t, time.Duration(*delay*float64(time.Second)), *rounds, os.Stdout)
	})
}

// sampler holds the processes top samples and their previous snapshots.
type sampler struct {
	t    *ctl.Tool
	cs   []*ctl.Client
	prev []ctl.Stats
}

// sample takes a snapshot of every process still answering. A process
// that stops answering is reported and dropped; any other failure ends
// top. It returns the snapshots in the order of s.cs, after the drops.
func (s *sampler) sample() ([]ctl.Stats, error) {
	out := make([]ctl.Stats, 0, len(s.cs))
	live := make([]*ctl.Client, 0, len(s.cs))
	var prev []ctl.Stats
	for i, c := range s.cs {
		var st ctl.Stats
		err := c.Call(ctl.OpStats, nil, &st)
		if errors.Is(err, ctl.ErrNotAnswering) && s.t.Opts.ProcID < 0 {
			s.t.Report(err)
			c.Close()
			continue
		}
		if err != nil {
			return nil, err
		}
		live = append(live, c)
		out = append(out, st)
		if s.prev != nil {
			prev = append(prev, s.prev[i])
		}
	}
	s.cs, s.prev = live, prev
	if len(s.cs) == 0 {
		return nil, fmt.Errorf("%w left answering (see above)", ctl.ErrNoProcess)
	}
	return out, nil
}

func run(t *ctl.Tool, delay time.Duration, rounds int, w io.Writer) error {
	cs, err := t.Connect()
	if err != nil {
		return err
	}
	s := &sampler{t: t, cs: cs}
	defer func() {
		for _, c := range s.cs {
			c.Close()
		}
	}()
	if s.prev, err = s.sample(); err != nil {
		return err
	}
	enc := json.NewEncoder(w) // one compact line per value
	for n := 0; rounds == 0 || n < rounds; n++ {
		time.Sleep(delay)
		cur, err := s.sample()
		if err != nil {
			return err
		}
		rows := make([]row, len(cur))
		for i := range cur {
			rows[i] = rate(s.cs[i].ProcID, s.prev[i], cur[i])
		}
		s.prev = cur
		if t.Opts.JSON {
			if err := enc.Encode(round{TimeNs: time.Now().UnixNano(), Lcores: rows}); err != nil {
				return err
			}
			continue
		}
		if n > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s\n%5s %5s %6s %6s %6s %10s %12s %10s %12s %10s %7s %9s\n", time.Now().Format("15:04:05"),
			"proc", "lcore", "busy%", "user%", "sys%", "passes/s", "rx pkts/s", "rx Mbit/s", "tx pkts/s", "tx Mbit/s", "conns", "stalls/s")
		for _, r := range rows {
			fmt.Fprintf(w, "%5d %5d %6.1f %6.1f %6.1f %10.0f %12.0f %10.2f %12.0f %10.2f %7d %9.1f\n", r.ProcID, r.Lcore,
				r.BusyPct, r.UserPct, r.SysPct, r.PassesPerSec, r.RxPPS, r.RxBPS/1e6, r.TxPPS, r.TxBPS/1e6, r.Conns, r.StallsPerSec)
		}
	}
	return nil
}

// rate computes the figures of the interval from snapshot a to snapshot
// b of one lcore. Busy % is busy time over the loop's time,
// ΔBusyNs / (ΔBusyNs + ΔIdleNs), so it does not depend on how long the
// two snapshots' requests waited for the loop; CPU % is the process's
// CPU time over the wall time between the snapshots, in % of one CPU.
func rate(proc int, a, b ctl.Stats) row {
	wall := b.TimeNs - a.TimeNs
	secs := float64(wall) / 1e9
	if secs <= 0 {
		secs = 1e-9
	}
	busy, idle := float64(b.BusyNs-a.BusyNs), float64(b.IdleNs-a.IdleNs)
	busyPct := 0.0
	if busy+idle > 0 {
		busyPct = 100 * busy / (busy + idle)
	}
	return row{
		ProcID:       proc,
		Stats:        b,
		IntervalNs:   wall,
		BusyPct:      busyPct,
		UserPct:      100 * float64(b.UserNs-a.UserNs) / 1e9 / secs,
		SysPct:       100 * float64(b.SysNs-a.SysNs) / 1e9 / secs,
		PassesPerSec: float64(b.Passes-a.Passes) / secs,
		RxPPS:        float64(b.RxPackets-a.RxPackets) / secs,
		RxBPS:        8 * float64(b.RxBytes-a.RxBytes) / secs,
		TxPPS:        float64(b.TxPackets-a.TxPackets) / secs,
		TxBPS:        8 * float64(b.TxBytes-a.TxBytes) / secs,
		StallsPerSec: float64(b.LongPasses[1]-a.LongPasses[1]) / secs,
	}
}
