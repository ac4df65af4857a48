package stack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/xstack/xstack/stack/stackinfo"
)

// What the control plane's tools read and change: the interface, sockets,
// routes, neighbours and sysctl values. These methods are meant to run on
// the lcore loop (the control plane executes requests between bursts);
// none of them is on the data path. The types they return are those of
// the leaf package stackinfo, which the control plane sends as they are
// and the tools decode without linking the stack.

// Interface describes the stack's interface.
type Interface = stackinfo.Interface

// Interface returns the stack's interface.
func (st *Stack) Interface() Interface {
	info, _ := st.s.SingleNICInfo(NICID)
	ls := st.ep.stats()
	ifc := Interface{
		Name:      st.cfg.Name,
		MAC:       st.HardwareAddr().String(),
		MTU:       int(st.ep.MTU()),
		MaxMTU:    st.ep.maxFrame - header.EthernetMinimumSize,
		RxErrors:  ls.RxMalformed,
		RxDropped: ls.RxNotForUs + ls.RxUnknown,
		TxDropped: ls.TxDropped,
	}
	if info != nil {
		ifc.Up = info.Flags.Up
		ifc.Running = info.Flags.Running
		for _, pa := range info.ProtocolAddresses {
			a, ok := netip.AddrFromSlice(pa.AddressWithPrefix.Address.AsSlice())
			if !ok {
				continue
			}
			ifc.Addrs = append(ifc.Addrs, netip.PrefixFrom(a, pa.AddressWithPrefix.PrefixLen))
		}
	}
	slices.SortFunc(ifc.Addrs, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return ifc
}

// RemoveAddress removes an address from the stack's interface.
func (st *Stack) RemoveAddress(a netip.Addr) error {
	if err := st.s.RemoveAddress(NICID, tcpip.AddrFromSlice(a.AsSlice())); err != nil {
		return fmt.Errorf("remove address %s: %s", a, err)
	}
	return nil
}

// SetMTU sets the interface's MTU. The TX buffers are sized for the MTU the
// stack started with, so it can be lowered and raised back to that, not
// beyond.
func (st *Stack) SetMTU(mtu int) error {
	maxMTU := st.ep.maxFrame - header.EthernetMinimumSize
	if mtu < 576 || mtu > maxMTU {
		return fmt.Errorf("mtu %d out of range 576..%d (the MTU the stack started with)", mtu, maxMTU)
	}
	if err := st.s.SetNICMTU(NICID, uint32(mtu)); err != nil {
		return fmt.Errorf("set mtu %d: %s", mtu, err)
	}
	return nil
}

// SetUp enables or disables the interface. A disabled interface neither
// receives nor sends; its addresses and routes are kept.
func (st *Stack) SetUp(up bool) error {
	var err tcpip.Error
	if up {
		err = st.s.EnableNIC(NICID)
	} else {
		err = st.s.DisableNIC(NICID)
	}
	if err != nil {
		return fmt.Errorf("set interface %s: %s", map[bool]string{true: "up", false: "down"}[up], err)
	}
	return nil
}

// Socket is one transport endpoint, as netstat shows it.
type Socket = stackinfo.Socket

// Sockets returns the stack's TCP and UDP endpoints, sorted by protocol,
// local and remote address.
func (st *Stack) Sockets() []Socket {
	var out []Socket
	for _, te := range st.s.RegisteredEndpoints() {
		ep, ok := te.(tcpip.Endpoint)
		if !ok {
			continue
		}
		info, ok := ep.Info().(*gvstack.TransportEndpointInfo)
		if !ok {
			continue
		}
		var s Socket
		switch info.TransProto {
		case tcp.ProtocolNumber:
			s.Proto = "tcp"
			s.State = tcpStateName(tcp.EndpointState(ep.State()))
		case udp.ProtocolNumber:
			s.Proto = "udp"
		default:
			continue
		}
		if info.NetProto == ipv6.ProtocolNumber {
			s.Proto += "6"
		}
		s.Local = addrPort(info.ID.LocalAddress, info.ID.LocalPort, info.NetProto)
		s.Remote = addrPort(info.ID.RemoteAddress, info.ID.RemotePort, info.NetProto)
		if n, err := ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption); err == nil {
			s.RecvQ = n
		}
		if n, err := ep.GetSockOptInt(tcpip.SendQueueSizeOption); err == nil {
			s.SendQ = n
		}
		out = append(out, s)
	}
	out = st.timeWaitSockets(out)
	slices.SortFunc(out, func(a, b Socket) int {
		if a.Proto != b.Proto {
			return compareStrings(a.Proto, b.Proto)
		}
		if c := a.Local.Compare(b.Local); c != 0 {
			return c
		}
		return a.Remote.Compare(b.Remote)
	})
	return out
}

// timeWaitSockets appends to out the connections in the link endpoint's
// TIME-WAIT (timewait.go) that gVisor does not list in TIME-WAIT itself:
// it lets its endpoint go after the handoff, and lists it as closed until
// it is gone.
func (st *Stack) timeWaitSockets(out []Socket) []Socket {
	keys := st.ep.tw.timeWaitKeys()
	if len(keys) == 0 {
		return out
	}
	type pair struct{ local, remote netip.AddrPort }
	listed := make(map[pair]bool)
	for _, s := range out {
		if s.State == "TIME_WAIT" {
			listed[pair{s.Local, s.Remote}] = true
		}
	}
	for _, k := range keys {
		n := int(k.n)
		local, _ := netip.AddrFromSlice(k.b[:n/2])
		remote, _ := netip.AddrFromSlice(k.b[n/2 : n])
		s := Socket{Proto: "tcp", State: "TIME_WAIT",
			Local:  netip.AddrPortFrom(local.Unmap(), binary.BigEndian.Uint16(k.b[n:])),
			Remote: netip.AddrPortFrom(remote.Unmap(), binary.BigEndian.Uint16(k.b[n+2:])),
		}
		if n == 32 {
			s.Proto = "tcp6"
		}
		if !listed[pair{s.Local, s.Remote}] {
			out = append(out, s)
		}
	}
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// addrPort converts a gVisor address; an unset one becomes the family's
// unspecified address, as netstat prints "0.0.0.0:80" and "[::]:80".
func addrPort(a tcpip.Address, port uint16, proto tcpip.NetworkProtocolNumber) netip.AddrPort {
	ip, ok := netip.AddrFromSlice(a.AsSlice())
	if !ok || a.Len() == 0 {
		ip = netip.IPv4Unspecified()
		if proto == ipv6.ProtocolNumber {
			ip = netip.IPv6Unspecified()
		}
	}
	return netip.AddrPortFrom(ip.Unmap(), port)
}

// tcpStateNames spells gVisor's TCP states as Linux's netstat does.
var tcpStateNames = map[tcp.EndpointState]string{
	tcp.StateEstablished: "ESTABLISHED",
	tcp.StateSynSent:     "SYN_SENT",
	tcp.StateConnecting:  "SYN_SENT",
	tcp.StateSynRecv:     "SYN_RECV",
	tcp.StateFinWait1:    "FIN_WAIT1",
	tcp.StateFinWait2:    "FIN_WAIT2",
	tcp.StateTimeWait:    "TIME_WAIT",
	tcp.StateClose:       "CLOSE",
	tcp.StateError:       "CLOSE",
	tcp.StateCloseWait:   "CLOSE_WAIT",
	tcp.StateLastAck:     "LAST_ACK",
	tcp.StateListen:      "LISTEN",
	tcp.StateClosing:     "CLOSING",
	tcp.StateBound:       "BOUND",
}

// tcpStateName is s as netstat spells it, or UNKNOWN.
func tcpStateName(s tcp.EndpointState) string {
	if name, ok := tcpStateNames[s]; ok {
		return name
	}
	return "UNKNOWN"
}

// Route is one entry of the routing table.
type Route = stackinfo.Route

// Routes returns the routing table in the order it is consulted.
func (st *Stack) Routes() []Route {
	var out []Route
	for _, r := range st.s.GetRouteTable() {
		out = append(out, st.route(r))
	}
	return out
}

func (st *Stack) route(r tcpip.Route) Route {
	id := r.Destination.ID()
	dst, _ := netip.AddrFromSlice(id.AsSlice())
	out := Route{
		Dst:   netip.PrefixFrom(dst, r.Destination.Prefix()),
		Iface: st.s.FindNICNameFromID(r.NIC),
		MTU:   int(r.MTU),
	}
	if r.Gateway.Len() > 0 {
		out.Gateway, _ = netip.AddrFromSlice(r.Gateway.AsSlice())
	}
	return out
}

// Errors of the route changes, matched with errors.Is.
var (
	// ErrNoRoute: RouteTo found no route to the address, or DeleteRoute
	// none to delete.
	ErrNoRoute = errors.New("no route")
	// ErrRouteExists: AddRoute's route is in the table already.
	ErrRouteExists = errors.New("route exists")
	// ErrGatewayNotOnLink: AddRoute's gateway cannot be reached
	// directly on the interface.
	ErrGatewayNotOnLink = errors.New("not on a network of the interface")
)

// AddRoute adds a route to dst (masked to its prefix) through gateway, or on
// the interface when gateway is invalid. The gateway must be of dst's family,
// not one of the interface's own addresses, and on-link: the table must
// reach it through a route without a gateway (as Linux asks of a next hop),
// or it is an IPv6 link-local address. The route must not exist yet
// (ErrRouteExists). gVisor keeps the table sorted, most specific first, and
// consults it in that order. It is safe from any goroutine.
func (st *Stack) AddRoute(dst netip.Prefix, gateway netip.Addr) error {
	if !dst.IsValid() {
		return fmt.Errorf("add route: invalid destination")
	}
	dst = dst.Masked()
	nr := tcpip.Route{Destination: subnet(dst), NIC: NICID}
	if gateway.IsValid() {
		if gateway.Is4() != dst.Addr().Is4() {
			return fmt.Errorf("add route %s: gateway %s is not of the destination's address family", dst, gateway)
		}
		if !st.onLink(gateway) {
			return fmt.Errorf("add route %s: gateway %s: %w (%s)", dst, gateway, ErrGatewayNotOnLink, prefixList(st.Interface().Addrs))
		}
		nr.Gateway = tcpip.AddrFromSlice(gateway.AsSlice())
	}
	st.routeMu.Lock()
	defer st.routeMu.Unlock()
	for _, r := range st.s.GetRouteTable() {
		if r.Destination == nr.Destination && r.Gateway == nr.Gateway {
			return fmt.Errorf("add route %s: %w", dst, ErrRouteExists)
		}
	}
	st.s.AddRoute(nr)
	return nil
}

// DeleteRoute removes the routes to exactly dst (masked to its prefix);
// with a valid gateway, only the one through it. It is safe from any
// goroutine.
func (st *Stack) DeleteRoute(dst netip.Prefix, gateway netip.Addr) error {
	if !dst.IsValid() {
		return fmt.Errorf("delete route: invalid destination")
	}
	dst = dst.Masked()
	sub := subnet(dst)
	var gw tcpip.Address
	if gateway.IsValid() {
		gw = tcpip.AddrFromSlice(gateway.AsSlice())
	}
	st.routeMu.Lock()
	defer st.routeMu.Unlock()
	n := st.s.RemoveRoutes(func(r tcpip.Route) bool {
		return r.Destination == sub && (!gateway.IsValid() || r.Gateway == gw)
	})
	if n == 0 {
		return fmt.Errorf("delete route %s: %w", dst, ErrNoRoute)
	}
	return nil
}

// RouteLookup is the answer of RouteTo: how the stack would reach an address.
type RouteLookup = stackinfo.RouteLookup

// RouteTo looks up the route the stack would use to reach dst.
func (st *Stack) RouteTo(dst netip.Addr) (RouteLookup, error) {
	proto := ipv4.ProtocolNumber
	if dst.Is6() {
		proto = ipv6.ProtocolNumber
	}
	r, err := st.s.FindRoute(NICID, tcpip.Address{}, tcpip.AddrFromSlice(dst.AsSlice()), proto, false)
	if err != nil {
		return RouteLookup{}, fmt.Errorf("route to %s: %w (%s)", dst, ErrNoRoute, err)
	}
	defer r.Release()
	out := RouteLookup{Dst: dst, Iface: st.s.FindNICNameFromID(r.NICID())}
	local, next := r.LocalAddress(), r.NextHop()
	out.Source, _ = netip.AddrFromSlice(local.AsSlice())
	out.NextHop, _ = netip.AddrFromSlice(next.AsSlice())
	if !out.NextHop.IsValid() || next.Len() == 0 {
		out.NextHop = dst
	} else if out.NextHop != dst {
		out.Gateway = out.NextHop
	}
	// The table entry: the first that contains dst, as gVisor picks it.
	for _, tr := range st.s.GetRouteTable() {
		if tr.Destination.Contains(tcpip.AddrFromSlice(dst.AsSlice())) {
			out.Route = st.route(tr)
			break
		}
	}
	return out, nil
}

// onLink reports whether a can be a next hop: not one of the interface's
// addresses, and reached without a gateway.
func (st *Stack) onLink(a netip.Addr) bool {
	for _, p := range st.Interface().Addrs {
		if p.Addr() == a {
			return false
		}
	}
	if a.Is6() && a.IsLinkLocalUnicast() {
		return true
	}
	proto := ipv4.ProtocolNumber
	if a.Is6() {
		proto = ipv6.ProtocolNumber
	}
	r, err := st.s.FindRoute(NICID, tcpip.Address{}, tcpip.AddrFromSlice(a.AsSlice()), proto, false)
	if err != nil {
		return false
	}
	defer r.Release()
	return r.NextHop() == (tcpip.Address{})
}

func prefixList(ps []netip.Prefix) string {
	s := ""
	for i, p := range ps {
		if i > 0 {
			s += ", "
		}
		s += p.Masked().String()
	}
	if s == "" {
		return "no addresses"
	}
	return s
}

// Neighbor is one ARP (IPv4) or NDP (IPv6) cache entry.
type Neighbor = stackinfo.Neighbor

// Neighbors returns the ARP cache (ipv6 false) or the NDP neighbour cache
// (ipv6 true), sorted by address.
func (st *Stack) Neighbors(ipv6Table bool) ([]Neighbor, error) {
	proto := neighProto(ipv6Table)
	entries, err := st.s.Neighbors(NICID, proto)
	if err != nil {
		return nil, fmt.Errorf("neighbors: %s", err)
	}
	now := st.s.Clock().NowMonotonic()
	out := make([]Neighbor, 0, len(entries))
	for _, e := range entries {
		a, ok := netip.AddrFromSlice(e.Addr.AsSlice())
		if !ok {
			continue
		}
		n := Neighbor{Addr: a, State: e.State.String(), Iface: st.cfg.Name, Age: now.Sub(e.UpdatedAt)}
		if e.LinkAddr != "" {
			n.MAC = net.HardwareAddr(e.LinkAddr).String()
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b Neighbor) int { return a.Addr.Compare(b.Addr) })
	return out, nil
}

func neighProto(ipv6Table bool) tcpip.NetworkProtocolNumber {
	if ipv6Table {
		return ipv6.ProtocolNumber
	}
	return ipv4.ProtocolNumber
}

// AddStaticNeighbor adds a permanent entry mapping a to mac.
func (st *Stack) AddStaticNeighbor(a netip.Addr, mac net.HardwareAddr) error {
	if len(mac) != 6 {
		return fmt.Errorf("neighbor %s: expected a 6-byte Ethernet address, got %q", a, mac)
	}
	if err := st.s.AddStaticNeighbor(NICID, neighProto(a.Is6()), tcpip.AddrFromSlice(a.AsSlice()), tcpip.LinkAddress(mac)); err != nil {
		return fmt.Errorf("add neighbor %s: %s", a, err)
	}
	return nil
}

// ErrNoNeighbor is returned by RemoveNeighbor for an address not in the cache.
var ErrNoNeighbor = errors.New("no such neighbor entry")

// RemoveNeighbor removes a's entry; the next packet to a resolves it anew.
func (st *Stack) RemoveNeighbor(a netip.Addr) error {
	err := st.s.RemoveNeighbor(NICID, neighProto(a.Is6()), tcpip.AddrFromSlice(a.AsSlice()))
	switch err.(type) {
	case nil:
		return nil
	case *tcpip.ErrBadAddress:
		return fmt.Errorf("delete neighbor %s: %w", a, ErrNoNeighbor)
	}
	return fmt.Errorf("delete neighbor %s: %s", a, err)
}
