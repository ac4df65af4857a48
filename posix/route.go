package posix

import (
	"errors"
	"net/netip"

	"golang.org/x/sys/unix"

	xstack "github.com/xstack/xstack/stack"
)

// Route is one entry of the lcore's routing table (the stack's own type:
// the control plane's route tool reads the same table).
type Route = xstack.Route

// RouteAdd adds a route to dst, through gateway or (with the zero Addr)
// on-link, to the stack's routing table: F-Stack's ff_route_ctl(FF_ROUTE_ADD)
// or `route add`, through the same stack.Stack.AddRoute as the route tool.
// It is safe from any goroutine. Errors are the ones Linux's route add
// gives: EINVAL for an invalid prefix, host bits set in dst or a gateway of
// the other family, EEXIST when a route to dst with the same gateway
// exists, ENETUNREACH when the gateway is not on-link.
func (t *Sockets) RouteAdd(dst netip.Prefix, gateway netip.Addr) error {
	if errno := t.checkRoute(dst, gateway); errno != 0 {
		return errno
	}
	return routeErrno(t.stack.AddRoute(dst, gateway))
}

// RouteDel removes the routes to dst (through gateway, or with the zero
// Addr through any gateway): ff_route_ctl(FF_ROUTE_DEL). ESRCH when there
// is none, as Linux answers.
func (t *Sockets) RouteDel(dst netip.Prefix, gateway netip.Addr) error {
	if errno := t.checkRoute(dst, netip.Addr{}); errno != 0 {
		return errno
	}
	return routeErrno(t.stack.DeleteRoute(dst, gateway))
}

// Routes returns the routing table, most specific first.
func (t *Sockets) Routes() []Route {
	if t.isClosed() {
		return nil
	}
	return t.stack.Routes()
}

// routeErrno is the errno Linux's rtnetlink answers for err, an error of
// the stack's AddRoute or DeleteRoute.
func routeErrno(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, xstack.ErrRouteExists):
		return unix.EEXIST
	case errors.Is(err, xstack.ErrGatewayNotOnLink):
		return unix.ENETUNREACH
	case errors.Is(err, xstack.ErrNoRoute):
		return unix.ESRCH
	}
	return unix.EINVAL
}

// checkRoute makes the checks Linux's rtnetlink makes and the stack does
// not: the stack masks a destination's host bits, Linux refuses them.
func (t *Sockets) checkRoute(dst netip.Prefix, gateway netip.Addr) unix.Errno {
	if t.isClosed() {
		return unix.ENETDOWN
	}
	if !dst.IsValid() || dst.Addr().Zone() != "" || dst != dst.Masked() {
		return unix.EINVAL
	}
	if gateway.IsValid() && (gateway.Is4() != dst.Addr().Is4() || gateway.Is4In6()) {
		return unix.EINVAL
	}
	return 0
}
