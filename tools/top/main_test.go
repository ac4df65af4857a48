package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/internal/ctl/ctltest"
)

func TestRate(t *testing.T) {
	const sec = int64(1e9)
	base := ctl.Stats{Lcore: 3, TimeNs: 100 * sec, Passes: 1000, IdlePasses: 900, BusyNs: 5e9, IdleNs: 7e9, UserNs: 2e9, SysNs: 1e9,
		RxPackets: 10, RxBytes: 1000, TxPackets: 20, TxBytes: 3000, Conns: 1}
	after := func(f func(s *ctl.Stats)) ctl.Stats {
		s := base
		f(&s)
		return s
	}
	for _, tc := range []struct {
		name                  string
		b                     ctl.Stats
		busy, user, sys, pass float64
		rxpps, rxbps, stalls  float64
	}{
		{
			// A saturated loop: few long busy passes between many short
			// idle ones. The share of busy passes would say 10%.
			name: "saturated", b: after(func(s *ctl.Stats) {
				s.TimeNs += 2 * sec
				s.Passes += 10000
				s.IdlePasses += 9000
				s.BusyNs += 1.9e9
				s.IdleNs += 0.1e9
				s.UserNs += 1.5e9
				s.SysNs += 0.5e9
				s.RxPackets += 2e6
				s.RxBytes += 1.5e9
			}),
			busy: 95, user: 75, sys: 25, pass: 5000, rxpps: 1e6, rxbps: 6e9,
		},
		{
			// An idle spinning loop: its CPU is all used, its time idle.
			name: "idle", b: after(func(s *ctl.Stats) {
				s.TimeNs += sec
				s.Passes += 1e6
				s.IdlePasses += 1e6
				s.IdleNs += 1e9
				s.UserNs += 0.9e9
				s.SysNs += 0.1e9
			}),
			busy: 0, user: 90, sys: 10, pass: 1e6,
		},
		{
			name: "a quarter busy", b: after(func(s *ctl.Stats) {
				s.TimeNs += 4 * sec
				s.Passes += 400
				s.IdlePasses += 100
				s.BusyNs += 1e9
				s.IdleNs += 3e9
			}),
			busy: 25, pass: 100,
		},
		{
			name: "stalls", b: after(func(s *ctl.Stats) {
				s.TimeNs += 2 * sec
				s.Passes += 10
				s.BusyNs += 2e9
				s.LongPasses[0] += 9
				s.LongPasses[1] += 6
				s.LongPasses[2] += 1
			}),
			busy: 100, pass: 5, stalls: 3,
		},
		{
			// Two snapshots in one pass: no loop time between them.
			name: "no loop time", b: after(func(s *ctl.Stats) { s.TimeNs += sec / 1000 }),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rate(5, base, tc.b)
			for _, f := range []struct {
				what      string
				got, want float64
			}{
				{"busy %", r.BusyPct, tc.busy},
				{"user %", r.UserPct, tc.user},
				{"sys %", r.SysPct, tc.sys},
				{"passes/s", r.PassesPerSec, tc.pass},
				{"rx pkts/s", r.RxPPS, tc.rxpps},
				{"rx bit/s", r.RxBPS, tc.rxbps},
				{"tx pkts/s", r.TxPPS, 0},
				{"stalls/s", r.StallsPerSec, tc.stalls},
			} {
				if math.Abs(f.got-f.want) > 1e-6*math.Max(1, f.want) {
					t.Errorf("%s = %v, want %v", f.what, f.got, f.want)
				}
			}
			if r.ProcID != 5 || r.Lcore != 3 || r.Conns != 1 || r.BusyNs != tc.b.BusyNs || r.IntervalNs != tc.b.TimeNs-base.TimeNs {
				t.Errorf("row %+v: want proc 5, lcore 3, 1 conn, the later snapshot's counters and the interval", r)
			}
		})
	}
}

// stats answers the n-th request of proc-id id with counters that grow by
// a second of busy and three of idle time per request.
func stats(id int) ctltest.Handler {
	return func(n int, _ ctl.Request) (any, error) {
		return ctl.Stats{Lcore: 10 + id, TimeNs: int64(n) * 1e9, Passes: uint64(n), BusyNs: uint64(n) * 1e9, IdleNs: uint64(n) * 3e9}, nil
	}
}

func TestTopDropsProcessThatDies(t *testing.T) {
	runDir := t.TempDir()
	ctltest.Serve(t, runDir, 0, ctltest.Forever, stats(0))
	ctltest.Serve(t, runDir, 1, 2, stats(1)) // answers the first sample and the first round
	var stdout, stderr bytes.Buffer
	tool := ctl.NewTool("top", usage)
	tool.Stderr = &stderr
	tool.Opts.RunDir, tool.Opts.ProcID, tool.Opts.JSON = runDir, -1, true
	if err := run(tool, time.Millisecond, 3, &stdout); err != nil {
		t.Fatalf("top: %v", err)
	}
	var lcores [][]int
	for _, l := range strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n") {
		var r round
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		var ls []int
		for _, row := range r.Lcores {
			ls = append(ls, row.Lcore)
			if row.BusyPct != 25 {
				t.Errorf("lcore %d: busy %v%%, want 25%%", row.Lcore, row.BusyPct)
			}
		}
		lcores = append(lcores, ls)
	}
	if want := [][]int{{10, 11}, {10}, {10}}; !reflect.DeepEqual(lcores, want) {
		t.Errorf("lcores of each round %v, want %v", lcores, want)
	}
	if got := stderr.String(); strings.Count(got, "\n") != 1 || !strings.HasPrefix(got, "top: proc-id 1: not answering") {
		t.Errorf("stderr %q; want one line for proc-id 1", got)
	}
}

func TestTopFailsWhenNoProcessIsLeft(t *testing.T) {
	runDir := t.TempDir()
	ctltest.Serve(t, runDir, 0, 2, stats(0))
	var stdout, stderr bytes.Buffer
	tool := ctl.NewTool("top", usage)
	tool.Stderr = &stderr
	tool.Opts.RunDir, tool.Opts.ProcID, tool.Opts.JSON = runDir, -1, true
	err := run(tool, time.Millisecond, 0, &stdout)
	if !errors.Is(err, ctl.ErrNoProcess) || strings.Count(stdout.String(), "\n") != 1 || !strings.HasPrefix(stderr.String(), "top: proc-id 0: not answering") {
		t.Fatalf("top: %v, stdout %q, stderr %q; want one round, proc-id 0 reported, then ErrNoProcess", err, stdout.String(), stderr.String())
	}
}
