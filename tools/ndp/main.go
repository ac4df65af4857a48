// Command ndp shows and changes the IPv6 neighbour cache of running xstack
// stacks, with FreeBSD's ndp syntax: -a lists, -d deletes, -s adds a
// permanent entry.
//
//	ndp -a                              every entry
//	ndp 2001:2::2                       the entry of one neighbour
//	ndp -d 2001:2::2                    delete it: the next packet solicits it again
//	ndp -s 2001:2::50 02:00:00:00:00:50 a permanent entry
package main

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/stack/stackinfo"
)

const usage = `
usage: ndp [-p proc-id] [--run-dir dir] [--json] -a
       ndp [flags] address
       ndp [flags] -d address
       ndp [flags] -s address ether_addr

Shows or changes the IPv6 neighbour cache of running xstack processes
(every process in the run dir unless -p is given): -a lists it, -d deletes
an entry (the next packet to the neighbour solicits it again), -s adds a
permanent entry. -n is accepted (output is numeric).`

func main() {
	t := ctl.NewTool("ndp", usage)
	list := t.FS.Bool("a", false, "list every entry")
	del := t.FS.Bool("d", false, "delete the entry of the address")
	set := t.FS.Bool("s", false, "add a permanent entry: address ether_addr")
	t.FS.Bool("n", false, "numeric output (always)")
	t.Bools = "adsn"
	t.Main(func(args []string) error {
		var addr netip.Addr
		if !*list || *del || *set {
			if len(args) == 0 {
				return ctl.Usagef("expected -a or an IPv6 address")
			}
			a, err := netip.ParseAddr(args[0])
			if err != nil || !a.Unmap().Is6() {
				return fmt.Errorf("%s: expected an IPv6 address", args[0])
			}
			addr = a.Unmap()
		}
		switch {
		case *del:
			err := t.Each(func(c *ctl.Client) error {
				return c.Call(ctl.OpNeighDelete, ctl.NeighArgs{IPv6: true, Addr: addr.String()}, nil)
			})
			if err == nil && !t.Opts.JSON {
				fmt.Printf("%s (%s) deleted\n", addr, addr)
			}
			return err
		case *set:
			if len(args) != 2 {
				return ctl.Usagef("-s: expected an IPv6 address and an Ethernet address")
			}
			return t.Each(func(c *ctl.Client) error {
				return c.Call(ctl.OpNeighAdd, ctl.NeighArgs{IPv6: true, Addr: addr.String(), MAC: args[1]}, nil)
			})
		}
		var entries []stackinfo.Neighbor
		err := t.Each(func(c *ctl.Client) error {
			var ns []stackinfo.Neighbor
			if err := c.Call(ctl.OpNeighbors, ctl.NeighArgs{IPv6: true}, &ns); err != nil {
				return err
			}
			for _, n := range ns {
				if !addr.IsValid() || n.Addr == addr {
					entries = append(entries, n)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if t.Opts.JSON {
			if entries == nil {
				entries = []stackinfo.Neighbor{}
			}
			return ctl.PrintJSON(os.Stdout, entries)
		}
		if addr.IsValid() && len(entries) == 0 {
			return fmt.Errorf("%s (%s) -- no entry", addr, addr)
		}
		fmt.Printf("%-39s %-17s %-6s %-10s %s\n", "Neighbor", "Linklayer Address", "Netif", "Expire", "S")
		for _, n := range entries {
			mac := n.MAC
			if mac == "" {
				mac = "(incomplete)"
			}
			fmt.Printf("%-39s %-17s %-6s %-10s %s\n", n.Addr, mac, n.Iface, expire(n), state(n.State))
		}
		return nil
	})
}

// expire is "permanent" for a static entry, else the time since it changed.
func expire(n stackinfo.Neighbor) string {
	if n.State == "Static" {
		return "permanent"
	}
	return n.Age.Round(time.Second).String() + " ago"
}

// state is FreeBSD ndp's one-letter state.
func state(s string) string {
	switch s {
	case "Reachable", "Static":
		return "R"
	case "Stale":
		return "S"
	case "Delay":
		return "D"
	case "Probe":
		return "P"
	case "Incomplete":
		return "I"
	case "Unreachable":
		return "U"
	}
	return "?"
}
