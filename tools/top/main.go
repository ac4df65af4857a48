// Command top shows the load of running xstack lcores, refreshed every -d
// seconds: how busy each loop is (passes that received or sent something,
// against idle ones), passes per second, packets and bits per second each
// way, and TCP connections.
package main

import (
	"fmt"
	"os"
	"time"

	"github.com/xstack/xstack/internal/ctl"
)

const usage = `
usage: top [-p proc-id] [--run-dir dir] [--json] [-d seconds] [-n rounds]

Samples running xstack processes (every process in the run dir unless -p is
given) every -d seconds and prints, per lcore: busy % (passes that did work
out of all passes), loop passes/s, RX and TX packets/s and Mbit/s (frames on
the AF_XDP queue, Ethernet header included), and TCP connections (not
listening, not closed). -n stops after that many rounds (0: until killed).
With --json each round is one JSON line.`

type row struct {
	ProcID       int     `json:"proc_id"`
	Lcore        int     `json:"lcore"`
	BusyPct      float64 `json:"busy_pct"`
	PassesPerSec float64 `json:"passes_per_sec"`
	RxPPS        float64 `json:"rx_pps"`
	RxBPS        float64 `json:"rx_bps"`
	TxPPS        float64 `json:"tx_pps"`
	TxBPS        float64 `json:"tx_bps"`
	Conns        int     `json:"conns"`
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
		cs, err := t.Opts.Connect()
		if err != nil {
			return err
		}
		defer func() {
			for _, c := range cs {
				c.Close()
			}
		}()
		sample := func() ([]ctl.Stats, error) {
			out := make([]ctl.Stats, len(cs))
			for i, c := range cs {
				if err := c.Call(ctl.OpStats, nil, &out[i]); err != nil {
					return nil, fmt.Errorf("proc-id %d: %w", c.ProcID, err)
				}
			}
			return out, nil
		}
		prev, err := sample()
		if err != nil {
			return err
		}
		for n := 0; *rounds == 0 || n < *rounds; n++ {
			time.Sleep(time.Duration(*delay * float64(time.Second)))
			cur, err := sample()
			if err != nil {
				return err
			}
			rows := make([]row, len(cs))
			for i := range cur {
				rows[i] = rate(cs[i].ProcID, prev[i], cur[i])
			}
			prev = cur
			if t.Opts.JSON {
				if err := ctl.PrintJSON(os.Stdout, rows); err != nil {
					return err
				}
				continue
			}
			if n > 0 {
				fmt.Println()
			}
			fmt.Printf("%s\n%5s %5s %7s %12s %12s %10s %12s %10s %8s\n", time.Now().Format("15:04:05"),
				"proc", "lcore", "busy%", "passes/s", "rx pkts/s", "rx Mbit/s", "tx pkts/s", "tx Mbit/s", "conns")
			for _, r := range rows {
				fmt.Printf("%5d %5d %6.1f%% %12.0f %12.0f %10.2f %12.0f %10.2f %8d\n", r.ProcID, r.Lcore, r.BusyPct,
					r.PassesPerSec, r.RxPPS, r.RxBPS/1e6, r.TxPPS, r.TxBPS/1e6, r.Conns)
			}
		}
		return nil
	})
}

func rate(proc int, a, b ctl.Stats) row {
	secs := float64(b.TimeNs-a.TimeNs) / 1e9
	if secs <= 0 {
		secs = 1e-9
	}
	passes := float64(b.Passes - a.Passes)
	busy := 0.0
	if passes > 0 {
		busy = 100 * (passes - float64(b.IdlePasses-a.IdlePasses)) / passes
	}
	return row{
		ProcID:       proc,
		Lcore:        b.Lcore,
		BusyPct:      busy,
		PassesPerSec: passes / secs,
		RxPPS:        float64(b.RxPackets-a.RxPackets) / secs,
		RxBPS:        8 * float64(b.RxBytes-a.RxBytes) / secs,
		TxPPS:        float64(b.TxPackets-a.TxPackets) / secs,
		TxBPS:        8 * float64(b.TxBytes-a.TxBytes) / secs,
		Conns:        b.Conns,
	}
}
