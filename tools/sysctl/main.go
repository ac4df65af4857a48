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
// checked as config.ini checks them, by the running process (the tool
// links no stack, so it knows no names of its own), and every name and
// value of a command is checked before the first is set.
package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/xstack/xstack/internal/ctl"
)

const usage = `
usage: sysctl [-p proc-id] [--run-dir dir] [--json] [-n] -a
       sysctl [flags] [-n] name ...
       sysctl [flags] [-w] name=value ...

Reads or sets the sysctls of running xstack processes (every process in the
run dir unless -p is given). Names are those of config.ini's [sysctl]
(README lists them; sysctl -a prints each with its value), and a value is
checked as config.ini checks it, before any is set.

Output is "name: value"; a set prints "name: old -> new".`

func main() {
	t := ctl.NewTool("sysctl", usage)
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
				sets = append(sets, ctl.SysctlValue{Name: name, Value: value})
				continue
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
		// check asks the first process that answers to check every name
		// and value before the first set, so that a bad one changes
		// nothing anywhere: the processes check alike, as config.ini does.
		checked := false
		check := func(c *ctl.Client) error {
			names := slices.Clone(gets)
			for _, s := range sets {
				names = append(names, s.Name)
			}
			if len(names) > 0 {
				if err := c.Call(ctl.OpSysctlGet, ctl.SysctlGetArgs{Names: names}, nil); err != nil {
					return err
				}
			}
			for _, s := range sets {
				if err := c.Call(ctl.OpSysctlCheck, s, nil); err != nil {
					return err
				}
			}
			checked = true
			return nil
		}
		var results []result
		err := t.Each(func(c *ctl.Client) error {
			if !checked {
				if err := check(c); err != nil {
					return err
				}
			}
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
