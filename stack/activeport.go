package stack

import (
	"net/netip"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/ports"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// PortPicker chooses the local port of an active TCP connection from
// local to remote: the first port from `from` up to hi, then from lo, that
// makes the NIC deliver the peer's packets to the stack's own queue (see
// core.RSS.PickPort). ok is false when no port in [lo, hi] does.
type PortPicker func(local netip.Addr, remote netip.AddrPort, lo, hi, from uint16) (port uint16, ok bool)

// activePorts is the state of Config.PickPort's port choice.
type activePorts struct {
	// mu makes the ephemeral range's narrowing to one port and the
	// connect that takes it one step.
	mu   sync.Mutex
	hint uint16 // +checklocks:mu; where the next search starts
	// steered and fallback count the connects that got a picked port and
	// those that fell back to gVisor's own choice.
	steered, fallback tcpip.StatCounter
}

// ConnectTCP starts the connection of ep, a TCP endpoint of this stack, to
// addr, as ep.Connect does. When the stack has a PortPicker and ep has no
// local port yet, it first chooses one with it, so that the reply traffic
// comes back to this stack's queue: the stack's ephemeral range is narrowed
// to that port while gVisor connects, which keeps gVisor's own checks
// (ports in use, TIME-WAIT reuse) in force. When no port in the range
// hashes to the queue, or every one is taken for addr, gVisor picks from
// the whole range and the replies are handed over by port (the lcore's
// range still names it). An ephemeral port taken by another goroutine of
// the same stack while the range is narrowed (a UDP or ping socket binding
// port 0) is that one port, inside the lcore's range, or none when it is in
// use for that protocol.
func (st *Stack) ConnectTCP(ep tcpip.Endpoint, addr tcpip.FullAddress) tcpip.Error {
	pick := st.cfg.PickPort
	if pick == nil || tcp.EndpointState(ep.State()) != tcp.StateInitial {
		return ep.Connect(addr)
	}
	remote, ok := netip.AddrFromSlice(addr.Addr.AsSlice())
	if !ok {
		return ep.Connect(addr)
	}
	remote = remote.Unmap()
	proto := header.IPv4ProtocolNumber
	dest := addr
	if remote.Is6() {
		proto = header.IPv6ProtocolNumber
	} else {
		dest.Addr = tcpip.AddrFrom4(remote.As4())
	}
	r, err := st.s.FindRoute(addr.NIC, tcpip.Address{}, dest.Addr, proto, false)
	if err != nil {
		return ep.Connect(addr)
	}
	la := r.LocalAddress()
	r.Release()
	local, _ := netip.AddrFromSlice(la.AsSlice())

	a := &st.active
	a.mu.Lock()
	defer a.mu.Unlock()
	lo, hi := st.s.PortRange()
	from := a.hint
	for tries := 0; tries < maxPickTries; tries++ {
		p, ok := pick(local, netip.AddrPortFrom(remote, addr.Port), lo, hi, from)
		if !ok {
			break
		}
		from = p + 1
		if !st.portFree(proto, local, p, dest) {
			continue
		}
		st.s.SetPortRange(p, p)
		err := ep.Connect(addr)
		st.s.SetPortRange(lo, hi)
		if _, taken := err.(*tcpip.ErrNoPortAvailable); taken {
			continue
		}
		a.hint = from
		a.steered.Increment()
		return err
	}
	a.fallback.Increment()
	return ep.Connect(addr)
}

// maxPickTries bounds the candidate ports ConnectTCP tries before it lets
// gVisor choose: a port that hashes right but is taken (by a connection to
// the same peer, or by a bind) costs one try.
const maxPickTries = 64

// portFree reports whether a TCP connection from local:port to dest could
// reserve the port now, by reserving and releasing it.
func (st *Stack) portFree(proto tcpip.NetworkProtocolNumber, local netip.Addr, port uint16, dest tcpip.FullAddress) bool {
	res := ports.Reservation{
		Networks:  []tcpip.NetworkProtocolNumber{proto},
		Transport: tcp.ProtocolNumber,
		Addr:      tcpip.AddrFromSlice(local.AsSlice()),
		Port:      port,
		Dest:      dest,
	}
	if _, err := st.s.ReservePort(st.s.SecureRNG(), res, nil); err != nil {
		return false
	}
	st.s.ReleasePort(res)
	return true
}
