// Package neigh is the body that the arp and ndp tools share: both show and
// change a neighbour table of running xstack stacks with FreeBSD's syntax
// (-a lists, -d deletes, -s adds a permanent entry), arp the IPv4 (ARP)
// table and ndp the IPv6 (NDP) one, each printed the way its FreeBSD
// namesake prints it.
package neigh

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/stack/stackinfo"
)

// Table is what differs between the two tools.
type Table struct {
	Tool  string // the tool's name
	About string // what the tool does, printed after the synopsis
	IPv6  bool   // the NDP table, else the ARP table
	Noun  string // what an operand is called in flag help: "hostname", "address"
	// Header, when set, is printed before the entries.
	Header string
	// Line formats one entry; mac is "(incomplete)" for an entry without
	// a link-layer address.
	Line func(n stackinfo.Neighbor, mac string) string
}

// Main runs the tool for t and exits.
func Main(t Table) {
	family := "IPv4"
	if t.IPv6 {
		family = "IPv6"
	}
	// Both tools take the same operands; only the tool and the operand's
	// name differ in the synopsis.
	usage := fmt.Sprintf(`
usage: %[1]s [-p proc-id] [--run-dir dir] [--json] -a
       %[1]s [flags] %[2]s
       %[1]s [flags] -d %[2]s
       %[1]s [flags] -s %[2]s ether_addr

%[3]s`, t.Tool, t.Noun, t.About)
	tool := ctl.NewTool(t.Tool, usage)
	list := tool.FS.Bool("a", false, "list every entry")
	del := tool.FS.Bool("d", false, "delete the entry of the "+t.Noun)
	set := tool.FS.Bool("s", false, "add a permanent entry: "+t.Noun+" ether_addr")
	tool.FS.Bool("n", false, "numeric output (always)")
	tool.Bools = "adsn"
	tool.Main(func(args []string) error {
		var addr netip.Addr
		if !*list || *del || *set {
			if len(args) == 0 {
				return ctl.Usagef("expected -a or an %s address", family)
			}
			a, err := netip.ParseAddr(args[0])
			if a = a.Unmap(); err != nil || a.Is6() != t.IPv6 {
				return fmt.Errorf("%s: expected an %s address", args[0], family)
			}
			addr = a
		}
		switch {
		case *del:
			err := tool.Each(func(c *ctl.Client) error {
				return c.Call(ctl.OpNeighDelete, ctl.NeighArgs{IPv6: t.IPv6, Addr: addr.String()}, nil)
			})
			if err == nil && !tool.Opts.JSON {
				fmt.Printf("%s (%s) deleted\n", addr, addr)
			}
			return err
		case *set:
			if len(args) != 2 {
				return ctl.Usagef("-s: expected an %s address and an Ethernet address", family)
			}
			return tool.Each(func(c *ctl.Client) error {
				return c.Call(ctl.OpNeighAdd, ctl.NeighArgs{IPv6: t.IPv6, Addr: addr.String(), MAC: args[1]}, nil)
			})
		}
		var entries []stackinfo.Neighbor
		err := tool.Each(func(c *ctl.Client) error {
			var ns []stackinfo.Neighbor
			if err := c.Call(ctl.OpNeighbors, ctl.NeighArgs{IPv6: t.IPv6}, &ns); err != nil {
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
		if tool.Opts.JSON {
			if entries == nil {
				entries = []stackinfo.Neighbor{}
			}
			return ctl.PrintJSON(os.Stdout, entries)
		}
		if addr.IsValid() && len(entries) == 0 {
			return fmt.Errorf("%s (%s) -- no entry", addr, addr)
		}
		if t.Header != "" {
			fmt.Println(t.Header)
		}
		for _, n := range entries {
			mac := n.MAC
			if mac == "" {
				mac = "(incomplete)"
			}
			fmt.Println(t.Line(n, mac))
		}
		return nil
	})
}
