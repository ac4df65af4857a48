// Command arp shows and changes the ARP cache of running xstack stacks,
// with FreeBSD's arp syntax: -a lists, -d deletes, -s adds a permanent entry.
//
//	arp -a                                every entry
//	arp 198.18.0.2                        the entry of one host
//	arp -d 198.18.0.2                     delete it: the next packet resolves it again
//	arp -s 198.18.0.50 02:00:00:00:00:50  a permanent entry
package main

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/stack/stackinfo"
)

const usage = `
usage: arp [-p proc-id] [--run-dir dir] [--json] -a
       arp [flags] hostname
       arp [flags] -d hostname
       arp [flags] -s hostname ether_addr

Shows or changes the ARP cache of running xstack processes (every process in
the run dir unless -p is given): -a lists it, -d deletes an entry (the next
packet to the host resolves it again), -s adds a permanent entry. Hosts are
IPv4 addresses; -n is accepted (output is numeric).`

func main() {
	t := ctl.NewTool("arp", usage)
	list := t.FS.Bool("a", false, "list every entry")
	del := t.FS.Bool("d", false, "delete the entry of the host")
	set := t.FS.Bool("s", false, "add a permanent entry: hostname ether_addr")
	t.FS.Bool("n", false, "numeric output (always)")
	t.Bools = "adsn"
	t.Main(func(args []string) error {
		var host netip.Addr
		if !*list || *del || *set {
			if len(args) == 0 {
				return ctl.Usagef("expected -a or an IPv4 address")
			}
			a, err := netip.ParseAddr(args[0])
			if err != nil || !a.Unmap().Is4() {
				return fmt.Errorf("%s: expected an IPv4 address", args[0])
			}
			host = a.Unmap()
		}
		switch {
		case *del:
			err := t.Each(func(c *ctl.Client) error {
				return c.Call(ctl.OpNeighDelete, ctl.NeighArgs{Addr: host.String()}, nil)
			})
			if err == nil && !t.Opts.JSON {
				fmt.Printf("%s (%s) deleted\n", host, host)
			}
			return err
		case *set:
			if len(args) != 2 {
				return ctl.Usagef("-s: expected an IPv4 address and an Ethernet address")
			}
			return t.Each(func(c *ctl.Client) error {
				return c.Call(ctl.OpNeighAdd, ctl.NeighArgs{Addr: host.String(), MAC: args[1]}, nil)
			})
		}
		var entries []stackinfo.Neighbor
		err := t.Each(func(c *ctl.Client) error {
			var ns []stackinfo.Neighbor
			if err := c.Call(ctl.OpNeighbors, ctl.NeighArgs{}, &ns); err != nil {
				return err
			}
			for _, n := range ns {
				if !host.IsValid() || n.Addr == host {
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
		if host.IsValid() && len(entries) == 0 {
			return fmt.Errorf("%s (%s) -- no entry", host, host)
		}
		for _, n := range entries {
			mac := n.MAC
			if mac == "" {
				mac = "(incomplete)"
			}
			fmt.Printf("? (%s) at %s on %s %s [ethernet]\n", n.Addr, mac, n.Iface, expiry(n))
		}
		return nil
	})
}

// expiry is "permanent" for a static entry, else its state and age.
func expiry(n stackinfo.Neighbor) string {
	if n.State == "Static" {
		return "permanent"
	}
	return fmt.Sprintf("%s, updated %s ago", strings.ToLower(n.State), n.Age.Round(time.Second))
}
