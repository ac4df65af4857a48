// Package stack runs one gVisor network stack over one NIC queue.
//
// A Stack is owned by one lcore. The lcore loop calls Deliver with each burst
// of received frames (GRO merges a flow's in-order segments within the
// burst, and nothing is held once Deliver returns) and Flush once per
// pass; it never spawns goroutines of
// its own. gVisor's TCP processor and timer goroutines also produce packets:
// they reach the link endpoint's TX batch through WritePackets, which is
// safe for concurrent use, and leave with the next Flush. Frames are copied
// once on receive (out of NIC memory into gVisor buffers) and once on
// transmit: WritePackets copies gVisor's packet straight into a NIC memory
// frame lent by the queue (nic.Queue.TxReserve), where ACK elision and FIN
// joining edit the batch before Flush submits it and gives the frames it
// leaves out back. No allocation is made per frame by this package.
//
// On a multi-buffer queue (nic.MultiBufferQueue: AF_XDP multi-buffer, for
// an MTU up to 9000) a frame may span several NIC buffers. The loop then
// calls DeliverPackets, which copies each received chain of buffers into
// one gVisor view, checked as any frame is; and WritePackets copies a
// packet larger than one lent buffer across several, which Flush sends as
// one frame (txchain.go). Each byte is still copied once each way.
//
// tcpip.Error values stay inside this package and posix: what Stack returns
// are plain Go errors.
package stack

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/xstack/xstack/nic"
	"github.com/xstack/xstack/stack/packet"
)

// NICID is the gVisor NIC identifier of the stack's one interface.
const NICID tcpip.NICID = 1

// DefaultMSL is the maximum segment lifetime a stack starts with
// (net.inet.tcp.msl): 2 s, as F-Stack configures FreeBSD, so that a
// TIME-WAIT connection is held 4 s rather than gVisor's 60.
const DefaultMSL = 2 * time.Second

// DefaultTxBatch is the endpoint's default batch: room for what one pass
// sends after a burst of 64 frames (core.DefaultBurst) that each draw an
// ACK and a response. ACK elision and FIN joining work within a batch, so
// a batch that fills in mid-pass sends the ACKs of the burst's requests
// alone, before the responses that would have carried them: with a batch
// of 64, a short connection took 3.9 frames sent instead of 3.
const DefaultTxBatch = 256

// Config describes the addresses and options of one stack.
type Config struct {
	Name string // interface name, for messages and tools

	Addr4    netip.Prefix // IPv4 address and prefix; invalid = none
	Gateway4 netip.Addr   // default IPv4 gateway; invalid = none
	Addr6    netip.Prefix // IPv6 address and prefix; invalid = none
	Gateway6 netip.Addr   // default IPv6 gateway; invalid = none

	// MTU overrides the queue's MTU when non-zero.
	MTU int

	// TxBatch is the number of frames the endpoint buffers before it
	// writes them to the queue without waiting for Flush (default
	// DefaultTxBatch).
	TxBatch int

	// PortLo and PortHi, when set, are the ephemeral port range of the
	// stack's active connections (one range per lcore, so that a reply's
	// port names the lcore that owns the connection).
	PortLo, PortHi uint16

	// PickPort, when set, chooses the local port of active TCP
	// connections (ConnectTCP) within the ephemeral range, so that the
	// NIC's hash brings the replies to this stack's queue.
	PickPort PortPicker

	// Clock, when set, is gVisor's clock, whose timers the lcore loop
	// fires (LoopClock returns it to the loop). Unset, gVisor runs its timers on Go
	// runtime timers; a stack that no loop drives must leave it unset, or
	// its timers never fire.
	Clock *LoopClock

	// Now, when set, is the clock of the stack's own decisions (the
	// SYN-flood guard's windows): monotonic time since any fixed origin,
	// never negative, as core.LoopConfig.Now. Tests give it a clock they
	// advance themselves. Default: Clock's, else the runtime's monotonic
	// clock.
	Now func() time.Duration
}

// LoopClock returns the stack's clock when it is a LoopClock (Config.Clock),
// whose timers the caller's loop must fire, or nil.
func (st *Stack) LoopClock() *LoopClock { return st.cfg.Clock }

// Stack is one gVisor stack over one NIC queue.
type Stack struct {
	s   *gvstack.Stack
	ep  *endpoint
	cfg Config

	// Defaults that gVisor keeps per socket rather than per stack: the
	// socket layer applies them to new sockets, from any goroutine.
	sockMu       sync.Mutex
	sockDefaults SocketDefaults // +checklocks:sockMu

	active activePorts // ConnectTCP's port choice

	// routeMu makes AddRoute's check for an existing route and its
	// insertion one step: every route change goes through this type.
	routeMu sync.Mutex

	tcpBufs atomic.Pointer[TCPBuffers] // what TCPBuffers reports
}

// SocketDefaults are per-socket options that the sysctls set for new sockets.
type SocketDefaults struct {
	NoDelay   bool
	KeepIdle  int // seconds, 0 = gVisor's default
	KeepIntvl int // seconds
	KeepCnt   int
	// AlwaysKeepalive turns SO_KEEPALIVE on for every TCP socket
	// (FreeBSD's net.inet.tcp.always_keepalive).
	AlwaysKeepalive bool
	// UserTimeout is TCP_USER_TIMEOUT for new TCP sockets, 0 = none.
	UserTimeout time.Duration
	// MemLimit bounds the socket-buffer memory the TCP sockets of one
	// lcore may reserve, in bytes (net.inet.tcp.mem_limit); 0 = none.
	// The socket layer enforces it (posix.Sockets reads it at every
	// reservation).
	MemLimit int64
}

// New builds a stack on q. The stack does not start any goroutine of its
// own; gVisor starts its TCP processors.
func New(q nic.Queue, cfg Config) (*Stack, error) {
	mtu := q.MTU()
	if cfg.MTU != 0 {
		mtu = cfg.MTU
	}
	if mtu < 576 || mtu > 9000 {
		return nil, fmt.Errorf("stack %s: MTU %d out of range 576..9000", cfg.Name, mtu)
	}
	if cfg.TxBatch <= 0 {
		cfg.TxBatch = DefaultTxBatch
	}
	var clock tcpip.Clock
	switch {
	case cfg.Clock != nil:
		clock = cfg.Clock
		if cfg.Now == nil {
			cfg.Now = cfg.Clock.now
		}
	case cfg.Now == nil:
		origin := time.Now()
		cfg.Now = func() time.Duration { return time.Since(origin) }
	}
	s := gvstack.New(gvstack.Options{
		Clock: clock,
		NetworkProtocols: []gvstack.NetworkProtocolFactory{
			ipv4.NewProtocol,
			ipv6.NewProtocolWithOptions(ipv6.Options{
				// The kernel owns the interface's link-local address
				// (the same MAC); the stack uses its global one.
				AutoGenLinkLocal: false,
				DADConfigs:       gvstack.DADConfigurations{DupAddrDetectTransmits: 0},
			}),
			arp.NewProtocol,
		},
		TransportProtocols: []gvstack.TransportProtocolFactory{
			tcp.NewProtocol, udp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6,
		},
		HandleLocal: true,
	})
	st := &Stack{s: s, cfg: cfg}
	st.ep = newEndpoint(q, mtu, cfg.TxBatch)
	if err := st.ep.checkChains(); err != nil {
		s.Close()
		return nil, fmt.Errorf("stack %s: %w", cfg.Name, err)
	}
	st.ep.guard.init(s.Stats().TCP.ListenOverflowSynCookieSent.Value, cfg.Now)
	st.ep.tw.init(cfg.Now, st.defaultTTL)
	if err := st.init(); err != nil {
		s.Close()
		return nil, fmt.Errorf("stack %s: %w", cfg.Name, err)
	}
	st.refreshTCPBuffers()
	return st, nil
}

func (st *Stack) init() error {
	s := st.s
	if err := s.CreateNICWithOptions(NICID, st.ep, gvstack.NICOptions{Name: st.cfg.Name, QDisc: qdisc{st.ep}}); err != nil {
		return fmt.Errorf("create NIC: %s", err)
	}
	// Defaults a server stack wants: SACK on, cubic.
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return fmt.Errorf("enable SACK: %s", err)
	}
	// TIME-WAIT lasts 2*DefaultMSL, not gVisor's 60 s, and the link
	// endpoint holds it (timewait.go): gVisor keeps its own only for the
	// handoff.
	if err := st.applyTimeWait(); err != nil {
		return err
	}
	cc := tcpip.CongestionControlOption("cubic")
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &cc); err != nil {
		return fmt.Errorf("set congestion control: %s", err)
	}
	if a := st.cfg.Addr4; a.IsValid() {
		if err := st.AddAddress(a); err != nil {
			return err
		}
	}
	if a := st.cfg.Addr6; a.IsValid() {
		if err := st.AddAddress(a); err != nil {
			return err
		}
	}
	var routes []tcpip.Route
	if a := st.cfg.Addr4; a.IsValid() {
		routes = append(routes, tcpip.Route{Destination: subnet(a.Masked()), NIC: NICID})
	}
	if a := st.cfg.Addr6; a.IsValid() {
		routes = append(routes, tcpip.Route{Destination: subnet(a.Masked()), NIC: NICID})
	}
	if g := st.cfg.Gateway4; g.IsValid() {
		routes = append(routes, tcpip.Route{Destination: subnet(netip.PrefixFrom(netip.IPv4Unspecified(), 0)), Gateway: tcpip.AddrFromSlice(g.AsSlice()), NIC: NICID})
	}
	if g := st.cfg.Gateway6; g.IsValid() {
		routes = append(routes, tcpip.Route{Destination: subnet(netip.PrefixFrom(netip.IPv6Unspecified(), 0)), Gateway: tcpip.AddrFromSlice(g.AsSlice()), NIC: NICID})
	}
	s.SetRouteTable(routes)
	if st.cfg.PortLo != 0 {
		if err := s.SetPortRange(st.cfg.PortLo, st.cfg.PortHi); err != nil {
			return fmt.Errorf("ephemeral ports %d-%d: %s", st.cfg.PortLo, st.cfg.PortHi, err)
		}
	}
	return nil
}

// applyTimeWait sets how long gVisor keeps connections in TIME-WAIT,
// from the link endpoint's table (timewait.go).
func (st *Stack) applyTimeWait() error {
	o := tcpip.TCPTimeWaitTimeoutOption(st.ep.tw.gvisorTimeWait())
	if err := st.s.SetTransportProtocolOption(tcp.ProtocolNumber, &o); err != nil {
		return fmt.Errorf("set the TIME-WAIT time: %s", err)
	}
	return nil
}

// defaultTTL is the TTL (hop limit, with v6) the stack's packets start
// with.
func (st *Stack) defaultTTL(v6 bool) uint8 {
	proto := ipv4.ProtocolNumber
	if v6 {
		proto = ipv6.ProtocolNumber
	}
	var o tcpip.DefaultTTLOption
	if err := st.s.NetworkProtocolOption(proto, &o); err != nil {
		return 64
	}
	return uint8(o)
}

// AddAddress assigns an address with its prefix to the stack's interface.
func (st *Stack) AddAddress(p netip.Prefix) error {
	proto := ipv4.ProtocolNumber
	if p.Addr().Is6() {
		proto = ipv6.ProtocolNumber
	}
	pa := tcpip.ProtocolAddress{
		Protocol: proto,
		AddressWithPrefix: tcpip.AddressWithPrefix{
			Address:   tcpip.AddrFromSlice(p.Addr().AsSlice()),
			PrefixLen: p.Bits(),
		},
	}
	if err := st.s.AddProtocolAddress(NICID, pa, gvstack.AddressProperties{}); err != nil {
		return fmt.Errorf("add address %s: %s", p, err)
	}
	return nil
}

// subnet converts a prefix to gVisor's form, host bits cleared.
func subnet(p netip.Prefix) tcpip.Subnet {
	return tcpip.AddressWithPrefix{Address: tcpip.AddrFromSlice(p.Addr().AsSlice()), PrefixLen: p.Bits()}.Subnet()
}

// Gvisor returns the gVisor stack, for what runs below the socket layer
// (the lcore's shutdown) and for tests. The socket layer (posix) goes
// through Stack's own methods.
func (st *Stack) Gvisor() *gvstack.Stack { return st.s }

// NewEndpoint creates a transport endpoint (a socket's) of the given
// protocols on the stack, as gVisor's Stack.NewEndpoint does: the socket
// layer does its I/O on the endpoint itself, as gVisor's gonet adapters do.
func (st *Stack) NewEndpoint(trans tcpip.TransportProtocolNumber, netProto tcpip.NetworkProtocolNumber, wq *waiter.Queue) (tcpip.Endpoint, tcpip.Error) {
	return st.s.NewEndpoint(trans, netProto, wq)
}

// TCPBuffers are the buffer sizes gVisor gives new TCP endpoints (the
// net.inet.tcp.sendspace and recvspace sysctls and gVisor's ranges).
type TCPBuffers struct {
	SendDefault    int
	ReceiveDefault int
	ReceiveMax     int  // the largest receive buffer auto-tuning grows to
	Moderate       bool // new endpoints auto-tune their receive buffer
}

// TCPBuffers returns the buffer sizes of new TCP endpoints now. It is safe
// from any goroutine and does not allocate: the socket layer asks on every
// socket and accept.
func (st *Stack) TCPBuffers() TCPBuffers { return *st.tcpBufs.Load() }

// refreshTCPBuffers reads the buffer sizes back from gVisor, whose option
// calls allocate, for TCPBuffers. The sysctls are the only way to change
// them, and SetSysctl calls it.
func (st *Stack) refreshTCPBuffers() {
	var snd tcpip.TCPSendBufferSizeRangeOption
	st.s.TransportProtocolOption(tcp.ProtocolNumber, &snd)
	var rcv tcpip.TCPReceiveBufferSizeRangeOption
	st.s.TransportProtocolOption(tcp.ProtocolNumber, &rcv)
	var mod tcpip.TCPModerateReceiveBufferOption
	st.s.TransportProtocolOption(tcp.ProtocolNumber, &mod)
	st.tcpBufs.Store(&TCPBuffers{SendDefault: snd.Default, ReceiveDefault: rcv.Default, ReceiveMax: rcv.Max, Moderate: bool(mod)})
}

// MTU returns the interface's MTU now (SetMTU changes it).
func (st *Stack) MTU() int { return int(st.ep.MTU()) }

// SocketDefaults returns the per-socket defaults set by sysctls.
func (st *Stack) SocketDefaults() SocketDefaults {
	st.sockMu.Lock()
	defer st.sockMu.Unlock()
	return st.sockDefaults
}

// HardwareAddr is the MAC address the stack uses.
func (st *Stack) HardwareAddr() net.HardwareAddr { return st.ep.q.HardwareAddr() }

// Deliver hands a burst of received Ethernet frames to the stack. The
// frames are copied; the caller may reuse them when Deliver returns. Only
// the lcore loop calls Deliver. The burst ends with it: what GRO merged
// reaches gVisor before it returns.
func (st *Stack) Deliver(frames [][]byte) {
	var p packet.Parsed
	st.ep.beginBurst()
	for _, f := range frames {
		packet.Parse(f, &p)
		st.ep.deliver(f, &p)
	}
	st.ep.endBurst()
}

// DeliverPackets is Deliver for the frames of a multi-buffer queue
// (nic.MultiBufferQueue.RxPackets): frame i is bufs[k:k+segs[i]], k the
// sum of segs[:i]. A frame of one buffer takes Deliver's path; a frame of
// several is joined into one packet as it is copied into gVisor memory.
// Like Deliver, it copies everything and holds nothing once it returns.
func (st *Stack) DeliverPackets(bufs [][]byte, segs []int) {
	var p packet.Parsed
	st.ep.beginBurst()
	k := 0
	for _, n := range segs {
		if n < 1 || k+n > len(bufs) {
			break // segs does not describe bufs: RxPackets never says so
		}
		if n == 1 {
			packet.Parse(bufs[k], &p)
			st.ep.deliver(bufs[k], &p)
		} else {
			st.ep.deliverChain(bufs[k:k+n], &p)
		}
		k += n
	}
	st.ep.endBurst()
}

// DeliverParsed is Deliver of frames whose headers the caller parsed
// already (for steering): parsed[i] is frames[i]'s.
func (st *Stack) DeliverParsed(frames [][]byte, parsed []packet.Parsed) {
	st.ep.beginBurst()
	for i, f := range frames {
		st.ep.deliver(f, &parsed[i])
	}
	st.ep.endBurst()
}

// Flush writes the frames gVisor produced since the last Flush to the
// queue. It reports how many frames were written.
func (st *Stack) Flush() int { return st.ep.flush() }

// LinkStats returns the link endpoint's counters.
func (st *Stack) LinkStats() LinkStats { return st.ep.stats() }

// Stats returns gVisor's protocol counters.
func (st *Stack) Stats() tcpip.Stats { return st.s.Stats() }

// Close closes every endpoint and the stack, and waits for gVisor's
// goroutines to finish. Closing TCP endpoints sends their RSTs or FINs; the
// caller flushes once more after Close if it wants them on the wire, and
// may close the queue after that flush: from Close on, the stack takes no
// more buffers from the queue.
func (st *Stack) Close() {
	st.s.Close()
	st.s.Wait()
	st.ep.closeTx()
}
