// Command sysctl reads and sets the knobs of running xstack stacks, with the
// FreeBSD-style names of config.ini's [sysctl] section.
//
//	sysctl -a                          every knob and its value
//	sysctl net.inet.tcp.sack ...       some knobs
//	sysctl -w net.inet.tcp.recvspace=262144
//	sysctl net.inet.tcp.recvspace=262144
//
// A set takes effect at once on the running stack (for TCP buffer sizes and
// socket defaults: on connections made after it). Names and values are
// checked as config.ini checks them.
package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/stack"
)

const usage = `
usage: sysctl [-p proc-id] [--run-dir dir] [--json] [-n] -a
       sysctl [flags] [-n] name ...
       sysctl [flags] [-w] name=value ...

Reads or sets the sysctls of running xstack processes (every process in the
run dir unless -p is given). Names are those of config.ini's [sysctl]:
` + "\t" + `%s

Output is "name: value"; a set prints "name: old -> new".`

func main() {
	t := ctl.NewTool("sysctl", fmt.Sprintf(usage, strings.Join(stack.SysctlNames(), "\n\t")))
	all := t.FS.Bool("a", false, "list every sysctl")
	t.FS.Bool("w", false, "set: operands are name=value (also accepted without -w)")
	valuesOnly := t.FS.Bool("n", false, "print values only, without names")
	t.Bools = "awn"
	t.Main(func(args []string) error {
		if !*all && len(args) == 0 {
			return ctl.Usagef("expected -a, a name, or name=value")
		}
		var gets []string
		var sets []ctl.SysctlValue
		for _, a := range args {
			name, value, isSet := strings.Cut(a, "=")
			if isSet {
				if err := stack.CheckSysctl(name, value); err != nil {
					return fmt.Errorf("%s=%s: %w", name, value, err)
				}
				sets = append(sets, ctl.SysctlValue{Name: name, Value: value})
				continue
			}
			if err := stack.CheckSysctl(name, ""); errors.Is(err, stack.ErrUnknownSysctl) {
				return fmt.Errorf("%s: %w", name, err)
			}
			gets = append(gets, name)
		}
		if *all {
			gets = nil
		}
		type result struct {
			ProcID int               `json:"proc_id"`
			Values []ctl.SysctlValue `json:"values"`
			lines  []string
		}
		var results []result
		err := t.Each(func(c *ctl.Client) error {
			r := result{ProcID: c.ProcID}
			for _, s := range sets {
				var old []ctl.SysctlValue
				if err := c.Call(ctl.OpSysctlGet, ctl.SysctlGetArgs{Names: []string{s.Name}}, &old); err != nil {
					return err
				}
				var now ctl.SysctlValue
				if err := c.Call(ctl.OpSysctlSet, s, &now); err != nil {
					return err
				}
				r.Values = append(r.Values, now)
				r.lines = append(r.lines, format(now, old[0].Value, *valuesOnly))
			}
			if len(gets) > 0 || *all {
				var vs []ctl.SysctlValue
				if err := c.Call(ctl.OpSysctlGet, ctl.SysctlGetArgs{Names: gets}, &vs); err != nil {
					return err
				}
				r.Values = append(r.Values, vs...)
				for _, v := range vs {
					r.lines = append(r.lines, format(v, "", *valuesOnly))
				}
			}
			results = append(results, r)
			return nil
		})
		if err != nil {
			return err
		}
		if t.Opts.JSON {
			return ctl.PrintJSON(os.Stdout, results)
		}
		// One block when every process agrees, else one per process.
		same := true
		for _, r := range results[1:] {
			same = same && slices.Equal(r.lines, results[0].lines)
		}
		for i, r := range results {
			if same && i > 0 {
				break
			}
			for _, l := range r.lines {
				if !same {
					fmt.Printf("[proc %d] ", r.ProcID)
				}
				fmt.Println(l)
			}
		}
		return nil
	})
}

func format(v ctl.SysctlValue, old string, valuesOnly bool) string {
	switch {
	case valuesOnly:
		return v.Value
	case old != "":
		return fmt.Sprintf("%s: %s -> %s", v.Name, old, v.Value)
	}
	return fmt.Sprintf("%s: %s", v.Name, v.Value)
}
