// Command pcap turns packet capture of running xstack lcores on and off and
// reports its state. Each lcore writes <savepath>/cpu<lcore>_<seq>.pcap,
// a new file every savelen bytes, as config.ini's [pcap] describes.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/stack/stackinfo"
)

const usage = `
usage: pcap [-p proc-id] [--run-dir dir] [--json] on [-s snaplen] [-l savelen] [-w savepath]
       pcap [flags] off
       pcap [flags] status

Starts or stops capturing the RX and TX frames of running xstack processes
(every process in the run dir unless -p is given), or shows the capture.
Files are <savepath>/cpu<lcore>_<seq>.pcap (pcap, Ethernet, µs timestamps),
rotated every savelen bytes, each frame cut to snaplen bytes; a new capture
continues the sequence numbers of the files already in savepath. The
defaults are config.ini's [pcap] snaplen, savelen and savepath. Options of
"on" come after it.`

func main() {
	t := ctl.NewTool("pcap", usage)
	t.Main(func(args []string) error {
		if len(args) == 0 {
			return ctl.Usagef("expected on, off or status")
		}
		var (
			op string
			a  any
		)
		switch args[0] {
		case "on":
			fs := flag.NewFlagSet("pcap on", flag.ContinueOnError)
			var pa ctl.PcapArgs
			fs.IntVar(&pa.Snaplen, "s", 0, "bytes kept of each frame, 1..65535 (default: [pcap] snaplen)")
			fs.Int64Var(&pa.Savelen, "l", 0, "bytes per file before rotation (default: [pcap] savelen)")
			fs.StringVar(&pa.Savepath, "w", "", "directory of the files (default: [pcap] savepath)")
			if err := fs.Parse(args[1:]); err != nil {
				return ctl.Usagef("on: %v", err)
			}
			if fs.NArg() > 0 {
				return ctl.Usagef("on: unexpected operand %q", fs.Arg(0))
			}
			if pa.Savepath != "" {
				abs, err := filepath.Abs(pa.Savepath) // the process's working directory is not ours
				if err != nil {
					return err
				}
				pa.Savepath = abs
			}
			op, a = ctl.OpPcapOn, pa
		case "off":
			op = ctl.OpPcapOff
		case "status":
			op = ctl.OpPcapStatus
		default:
			return ctl.Usagef("unknown command %q, expected on, off or status", args[0])
		}
		if len(args) > 1 && args[0] != "on" {
			return ctl.Usagef("%s: unexpected operand %q", args[0], args[1])
		}
		type result struct {
			ProcID int `json:"proc_id"`
			stackinfo.PcapStatus
		}
		var results []result
		err := t.Each(func(c *ctl.Client) error {
			var s stackinfo.PcapStatus
			if err := c.Call(op, a, &s); err != nil {
				return err
			}
			results = append(results, result{c.ProcID, s})
			return nil
		})
		if err != nil {
			return err
		}
		if t.Opts.JSON {
			return ctl.PrintJSON(os.Stdout, results)
		}
		for _, r := range results {
			state := "off"
			if r.Enabled {
				state = "on"
			}
			fmt.Printf("proc %d: capture %s", r.ProcID, state)
			if r.Prefix != "" {
				fmt.Printf(", %s/%s_*.pcap snaplen %d savelen %d: %d frames, %d bytes in %d file(s), %d dropped",
					r.Dir, r.Prefix, r.Snaplen, r.Savelen, r.Frames, r.Bytes, r.Files, r.Dropped)
				if r.File != "" {
					fmt.Printf(", last file %s", r.File)
				}
			}
			if r.Error != "" {
				fmt.Printf(", stopped by error: %s", r.Error)
			}
			fmt.Println()
		}
		return nil
	})
}
