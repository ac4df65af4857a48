// Command route shows and changes the routing table of running xstack
// stacks, with FreeBSD's route syntax.
//
//	route show                               the table
//	route add -net 198.19.0.0/24 198.18.0.2  a network route through a gateway
//	route add -host 198.19.0.7 198.18.0.2    a host route
//	route add -inet6 default 2001:2::2       the IPv6 default route
//	route delete 198.19.0.0/24               remove it (all gateways, or the one given)
//	route get 198.19.0.7                     which route reaches an address
package main

import (
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/stack/stackinfo"
	"github.com/xstack/xstack/tools/internal/gather"
)

const usage = `
usage: route [-p proc-id] [--run-dir dir] [--json] show
       route [flags] add [-net|-host] [-inet|-inet6] destination [gateway]
       route [flags] delete [-net|-host] [-inet|-inet6] destination [gateway]
       route [flags] get address

Shows or changes the routing table of running xstack processes (every
process in the run dir unless -p is given). destination is an address (a
host route), an address/prefix length, or "default" (IPv4, or IPv6 with
-inet6); "-netmask M" may follow an IPv4 destination. gateway must be on a
network of the interface; without one the route is on-link. "gw" and "via"
before the gateway are accepted.`

func main() {
	t := ctl.NewTool("route", usage)
	t.FS.Bool("n", false, "numeric output (always)")
	t.Main(func(args []string) error {
		if len(args) == 0 {
			args = []string{"show"}
		}
		cmd, rest := args[0], args[1:]
		switch cmd {
		case "show", "print", "list":
			return show(t)
		case "add", "delete", "del":
			a, err := parseRoute(rest)
			if err != nil {
				return err
			}
			op := ctl.OpRouteAdd
			if cmd != "add" {
				op, cmd = ctl.OpRouteDelete, "delete"
			}
			err = t.Each(func(c *ctl.Client) error { return c.Call(op, a, nil) })
			if err != nil {
				return err
			}
			if !t.Opts.JSON {
				p, _ := netip.ParsePrefix(a.Dst)
				kind := "net"
				if p.Bits() == p.Addr().BitLen() {
					kind = "host"
				}
				gw := ""
				if a.Gateway != "" {
					gw = ": gateway " + a.Gateway
				}
				fmt.Printf("%s %s %s%s\n", cmd, kind, ctl.RouteDst(p), gw)
			}
			return nil
		case "get":
			if len(rest) != 1 {
				return ctl.Usagef("get: expected one address")
			}
			answers, err := gather.All[stackinfo.RouteLookup](t, ctl.OpRouteGet, ctl.RouteArgs{Dst: rest[0]})
			if err != nil {
				return err
			}
			if t.Opts.JSON {
				return ctl.PrintJSON(os.Stdout, gather.Values(answers))
			}
			r := answers[0].Value
			fmt.Printf("   route to: %s\n", r.Dst)
			fmt.Printf("destination: %s\n", ctl.RouteDst(r.Route.Dst))
			if r.Gateway.IsValid() {
				fmt.Printf("    gateway: %s\n", r.Gateway)
			}
			fmt.Printf("  interface: %s\n", r.Iface)
			fmt.Printf("     source: %s\n", r.Source)
			flags := "<UP,DONE"
			if r.Gateway.IsValid() {
				flags += ",GATEWAY"
			}
			if r.Route.Dst.Bits() == r.Route.Dst.Addr().BitLen() {
				flags += ",HOST"
			}
			fmt.Printf("      flags: %s>\n", flags)
			return nil
		}
		return ctl.Usagef("unknown command %q, expected show, add, delete or get", cmd)
	})
}

func show(t *ctl.Tool) error {
	routes, err := gather.Routes(t)
	if err != nil {
		return err
	}
	return ctl.OutputRoutes(os.Stdout, t.Opts.JSON, routes)
}

// parseRoute reads "[-net|-host] [-inet|-inet6] dst [-netmask m] [gw|via] [gateway]".
func parseRoute(words []string) (ctl.RouteArgs, error) {
	var (
		a                  ctl.RouteArgs
		inet6, host, isNet bool
		dst, mask, gateway string
	)
	for i := 0; i < len(words); i++ {
		switch w := words[i]; w {
		case "-net":
			isNet = true
		case "-host":
			host = true
		case "-inet":
		case "-inet6", "-6":
			inet6 = true
		case "-4":
		case "gw", "via":
		case "-netmask", "netmask":
			if i+1 >= len(words) {
				return a, ctl.Usagef("-netmask: expected a mask")
			}
			i++
			mask = words[i]
		default:
			switch {
			case dst == "":
				dst = w
			case gateway == "":
				gateway = w
			default:
				return a, ctl.Usagef("unexpected argument %q", w)
			}
		}
	}
	if dst == "" {
		return a, ctl.Usagef("expected a destination")
	}
	if host && isNet {
		return a, ctl.Usagef("-net and -host both given")
	}
	var p netip.Prefix
	switch {
	case dst == "default":
		p = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if inet6 {
			p = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
	case strings.Contains(dst, "/"):
		var err error
		if p, err = netip.ParsePrefix(dst); err != nil {
			return a, fmt.Errorf("destination: expected an address/prefix length such as 198.19.0.0/24, got %q", dst)
		}
	default:
		ad, err := netip.ParseAddr(dst)
		if err != nil {
			return a, fmt.Errorf("destination: expected an IPv4 or IPv6 address, a prefix or \"default\", got %q", dst)
		}
		bits := ad.BitLen()
		if mask != "" {
			m, err := netip.ParseAddr(mask)
			if err != nil || !m.Is4() || !ad.Is4() {
				return a, fmt.Errorf("-netmask: expected a dotted IPv4 netmask for an IPv4 destination, got %q", mask)
			}
			b := m.As4()
			bits = 0
			for _, x := range b {
				for ; x&0x80 != 0; x <<= 1 {
					bits++
				}
			}
		}
		p = netip.PrefixFrom(ad, bits)
	}
	if host && p.Bits() != p.Addr().BitLen() {
		return a, ctl.Usagef("-host with a prefix %s", p)
	}
	if inet6 && p.Addr().Is4() {
		return a, ctl.Usagef("-inet6 with the IPv4 destination %s", dst)
	}
	if gateway != "" {
		g, err := netip.ParseAddr(gateway)
		if err != nil {
			return a, fmt.Errorf("gateway: expected an IPv4 or IPv6 address, got %q", gateway)
		}
		if g.Is4() != p.Addr().Is4() {
			return a, fmt.Errorf("gateway %s is not of the family of %s", g, p)
		}
	}
	a.Dst, a.Gateway = p.Masked().String(), gateway
	return a, nil
}
