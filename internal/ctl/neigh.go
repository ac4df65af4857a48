package ctl

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/xstack/xstack/stack"
)

const arpUsage = `
usage: arp [-p proc-id] [--run-dir dir] [--json] -a
       arp [flags] hostname
       arp [flags] -d hostname
       arp [flags] -s hostname ether_addr

Shows or changes the ARP cache of running xstack processes (every process in
the run dir unless -p is given): -a lists it, -d deletes an entry (the next
packet to the host resolves it again), -s adds a permanent entry. Hosts are
IPv4 addresses; -n is accepted (output is numeric).`

const ndpUsage = `
usage: ndp [-p proc-id] [--run-dir dir] [--json] -a
       ndp [flags] address
       ndp [flags] -d address
       ndp [flags] -s address ether_addr

Shows or changes the IPv6 neighbour cache of running xstack processes
(every process in the run dir unless -p is given): -a lists it, -d deletes
an entry (the next packet to the neighbour solicits it again), -s adds a
permanent entry. -n is accepted (output is numeric).`

// NeighMain is the main function of arp (ipv6 false) and ndp (ipv6 true).
func NeighMain(ipv6 bool) {
	name, usage := "arp", arpUsage
	if ipv6 {
		name, usage = "ndp", ndpUsage
	}
	t := NewTool(name, usage)
	list := t.FS.Bool("a", false, "list every entry")
	del := t.FS.Bool("d", false, "delete the entry of the address")
	set := t.FS.Bool("s", false, "add a permanent entry: address ether_addr")
	t.FS.Bool("n", false, "numeric output (always)")
	t.Bools = "adsn"
	t.Main(func(args []string) error {
		fam := map[bool]string{false: "an IPv4", true: "an IPv6"}[ipv6]
		addrArg := func() (netip.Addr, error) {
			if len(args) == 0 {
				return netip.Addr{}, Usagef("expected %s address", fam)
			}
			a, err := netip.ParseAddr(args[0])
			if err != nil || a.Unmap().Is6() != ipv6 {
				return netip.Addr{}, fmt.Errorf("%s: expected %s address", args[0], fam)
			}
			return a.Unmap(), nil
		}
		switch {
		case *del:
			a, err := addrArg()
			if err != nil {
				return err
			}
			err = t.Each(func(c *Client) error {
				return c.Call(OpNeighDelete, NeighArgs{IPv6: ipv6, Addr: a.String()}, nil)
			})
			if err != nil {
				return err
			}
			if !t.Opts.JSON {
				fmt.Printf("%s (%s) deleted\n", a, a)
			}
			return nil
		case *set:
			a, err := addrArg()
			if err != nil {
				return err
			}
			if len(args) != 2 {
				return Usagef("-s: expected an address and an Ethernet address")
			}
			return t.Each(func(c *Client) error {
				return c.Call(OpNeighAdd, NeighArgs{IPv6: ipv6, Addr: a.String(), MAC: args[1]}, nil)
			})
		}
		var only netip.Addr
		if !*list {
			a, err := addrArg()
			if err != nil {
				return err
			}
			only = a
		}
		var entries []stack.Neighbor
		err := t.Each(func(c *Client) error {
			var ns []stack.Neighbor
			if err := c.Call(OpNeighbors, NeighArgs{IPv6: ipv6}, &ns); err != nil {
				return err
			}
			for _, n := range ns {
				if !only.IsValid() || n.Addr == only {
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
				entries = []stack.Neighbor{}
			}
			return PrintJSON(os.Stdout, entries)
		}
		if only.IsValid() && len(entries) == 0 {
			return fmt.Errorf("%s (%s) -- no entry", only, only)
		}
		if ipv6 {
			fmt.Printf("%-39s %-17s %-6s %-10s %s\n", "Neighbor", "Linklayer Address", "Netif", "Expire", "S")
		}
		for _, n := range entries {
			mac := n.MAC
			if mac == "" {
				mac = "(incomplete)"
			}
			if ipv6 {
				fmt.Printf("%-39s %-17s %-6s %-10s %s\n", n.Addr, mac, n.Iface, age(n), ndpState(n.State))
				continue
			}
			fmt.Printf("? (%s) at %s on %s %s [ethernet]\n", n.Addr, mac, n.Iface, arpExpiry(n))
		}
		return nil
	})
}

func age(n stack.Neighbor) string {
	if n.State == "Static" {
		return "permanent"
	}
	return (n.Age.Round(time.Second)).String() + " ago"
}

func arpExpiry(n stack.Neighbor) string {
	if n.State == "Static" {
		return "permanent"
	}
	return strings.ToLower(n.State) + ", updated " + age(n)
}

// ndpState is FreeBSD ndp's one-letter state.
func ndpState(s string) string {
	switch s {
	case "Reachable":
		return "R"
	case "Stale":
		return "S"
	case "Delay":
		return "D"
	case "Probe":
		return "P"
	case "Incomplete":
		return "I"
	case "Static":
		return "R"
	case "Unreachable":
		return "U"
	}
	return "?"
}
