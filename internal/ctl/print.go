package ctl

import (
	"fmt"
	"io"
	"net/netip"

	"github.com/xstack/xstack/stack/stackinfo"
)

// OutputRoutes prints routes as JSON (an empty list, never null) or as the
// table PrintRoutes writes.
func OutputRoutes(w io.Writer, asJSON bool, routes []stackinfo.Route) error {
	if asJSON {
		if routes == nil {
			routes = []stackinfo.Route{}
		}
		return PrintJSON(w, routes)
	}
	PrintRoutes(w, routes)
	return nil
}

// PrintRoutes prints a routing table as FreeBSD's netstat -r does.
func PrintRoutes(w io.Writer, routes []stackinfo.Route) {
	fmt.Fprintln(w, "Routing tables")
	for _, fam := range []bool{true, false} {
		header := false
		for _, r := range routes {
			if r.Dst.Addr().Is4() != fam {
				continue
			}
			if !header {
				name := map[bool]string{true: "Internet", false: "Internet6"}[fam]
				fmt.Fprintf(w, "\n%s:\n%-24s %-24s %-6s %-6s %s\n", name, "Destination", "Gateway", "Flags", "Netif", "Mtu")
				header = true
			}
			flags, gw := "U", "link#1"
			if r.Gateway.IsValid() {
				flags, gw = "UG", r.Gateway.String()
			}
			if r.Dst.Bits() == r.Dst.Addr().BitLen() {
				flags += "H"
			}
			mtu := "-"
			if r.MTU != 0 {
				mtu = fmt.Sprint(r.MTU)
			}
			fmt.Fprintf(w, "%-24s %-24s %-6s %-6s %s\n", RouteDst(r.Dst), gw, flags, r.Iface, mtu)
		}
	}
}

// RouteDst prints a destination as route and netstat do: "default" for a
// zero-length prefix, the address alone for a host route.
func RouteDst(p netip.Prefix) string {
	switch p.Bits() {
	case 0:
		return "default"
	case p.Addr().BitLen():
		return p.Addr().String()
	}
	return p.String()
}
