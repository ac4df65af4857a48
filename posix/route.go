package posix

import (
	"net/netip"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Route is one entry of the lcore's routing table.
type Route struct {
	Dst     netip.Prefix // the destination network
	Gateway netip.Addr   // the next hop; the zero Addr for an on-link route
}

// RouteAdd adds a route to dst, through gateway or (with the zero Addr)
// on-link, to the stack's routing table: F-Stack's ff_route_ctl(FF_ROUTE_ADD)
// or `route add`. It is safe from any goroutine: gVisor locks its table.
// Errors are the ones Linux's route add gives: EINVAL for an invalid prefix,
// host bits set in dst or a gateway of the other family, EEXIST when a route
// to dst with the same gateway exists, ENETUNREACH when the gateway is not
// on-link.
func (t *Sockets) RouteAdd(dst netip.Prefix, gateway netip.Addr) error {
	r, errno := t.route(dst, gateway)
	if errno != 0 {
		return errno
	}
	for _, x := range t.stack.GetRouteTable() {
		if x.Destination == r.Destination && x.Gateway == r.Gateway {
			return unix.EEXIST
		}
	}
	if gateway.IsValid() {
		proto := header.IPv4ProtocolNumber
		if gateway.Is6() {
			proto = header.IPv6ProtocolNumber
		}
		rt, err := t.stack.FindRoute(t.nicID, tcpip.Address{}, r.Gateway, proto, false)
		if err != nil {
			return unix.ENETUNREACH
		}
		onLink := rt.NextHop() == (tcpip.Address{})
		rt.Release()
		if !onLink {
			return unix.ENETUNREACH
		}
	}
	t.stack.AddRoute(r)
	return nil
}

// RouteDel removes the routes to dst (through gateway, or with the zero
// Addr through any gateway): ff_route_ctl(FF_ROUTE_DEL). ESRCH when there
// is none, as Linux answers.
func (t *Sockets) RouteDel(dst netip.Prefix, gateway netip.Addr) error {
	r, errno := t.route(dst, netip.Addr{})
	if errno != 0 {
		return errno
	}
	var gw tcpip.Address
	if gateway.IsValid() {
		gw = tcpip.AddrFromSlice(gateway.AsSlice())
	}
	n := t.stack.RemoveRoutes(func(x tcpip.Route) bool {
		return x.Destination == r.Destination && (!gateway.IsValid() || x.Gateway == gw)
	})
	if n == 0 {
		return unix.ESRCH
	}
	return nil
}

// Routes returns the routing table, most specific first.
func (t *Sockets) Routes() []Route {
	var out []Route
	for _, x := range t.stack.GetRouteTable() {
		id := x.Destination.ID()
		a, _ := netip.AddrFromSlice(id.AsSlice())
		r := Route{Dst: netip.PrefixFrom(a, x.Destination.Prefix())}
		if x.Gateway.Len() > 0 {
			r.Gateway, _ = netip.AddrFromSlice(x.Gateway.AsSlice())
		}
		out = append(out, r)
	}
	return out
}

func (t *Sockets) route(dst netip.Prefix, gateway netip.Addr) (tcpip.Route, unix.Errno) {
	if t.isClosed() {
		return tcpip.Route{}, unix.ENETDOWN
	}
	if !dst.IsValid() || dst.Addr().Zone() != "" || dst != dst.Masked() {
		return tcpip.Route{}, unix.EINVAL
	}
	if gateway.IsValid() && (gateway.Is4() != dst.Addr().Is4() || gateway.Is4In6()) {
		return tcpip.Route{}, unix.EINVAL
	}
	sub, err := tcpip.NewSubnet(tcpip.AddrFromSlice(dst.Addr().AsSlice()),
		tcpip.MaskFromBytes(net4or6Mask(dst)))
	if err != nil {
		return tcpip.Route{}, unix.EINVAL
	}
	r := tcpip.Route{Destination: sub, NIC: t.nicID}
	if gateway.IsValid() {
		r.Gateway = tcpip.AddrFromSlice(gateway.AsSlice())
	}
	return r, 0
}

// net4or6Mask returns the netmask bytes of p.
func net4or6Mask(p netip.Prefix) []byte {
	m := make([]byte, p.Addr().BitLen()/8)
	for i := 0; i < p.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}
