// Package posixtest connects two gVisor stacks in memory so that posix and
// the packages above it can be tested without privileges or a NIC.
//
// Each stack has one NIC (NIC) over a link/channel endpoint; two goroutines,
// one per direction, move every frame one stack writes into the other
// stack's NIC, the way a wire would: asynchronously and in order. A frame is
// lost only if 4096 frames are waiting for a pump (TCP recovers). Stack A
// has addresses AddrA4 and AddrA6, stack B AddrB4 and AddrB6, on the
// benchmark ranges 198.18.0.0/15 and 2001:2::/48. There is no link layer, so
// no ARP or NDP is needed.
package posixtest

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"

	"github.com/xstack/xstack/posix"
	xstack "github.com/xstack/xstack/stack"
)

// NIC is the NIC id of both stacks.
const NIC tcpip.NICID = 1

// MTU of the in-memory link.
const MTU = 1500

// The stacks' addresses.
var (
	AddrA4 = [4]byte{198, 18, 0, 1}
	AddrB4 = [4]byte{198, 18, 0, 2}
	AddrA6 = [16]byte{0x20, 0x01, 0, 2, 15: 1}
	AddrB6 = [16]byte{0x20, 0x01, 0, 2, 15: 2}
)

// Pair is two stacks joined by an in-memory link.
type Pair struct {
	A, B *stack.Stack

	linkA, linkB *channel.Endpoint
	cancel       context.CancelFunc
	wg           sync.WaitGroup
}

// NewPair builds the two stacks and starts the pumps. Cleanup (registered
// with tb) stops the pumps and closes both stacks; register anything that
// uses the stacks (a posix.Sockets) after calling NewPair, so that its
// cleanup runs first.
func NewPair(tb testing.TB) *Pair {
	tb.Helper()
	p := &Pair{
		linkA: channel.New(4096, MTU, ""),
		linkB: channel.New(4096, MTU, ""),
	}
	var err error
	if p.A, err = newStack(p.linkA, AddrA4, AddrA6); err != nil {
		tb.Fatalf("stack A: %v", err)
	}
	if p.B, err = newStack(p.linkB, AddrB4, AddrB6); err != nil {
		tb.Fatalf("stack B: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(2)
	go p.routinePump(ctx, p.linkA, p.linkB)
	go p.routinePump(ctx, p.linkB, p.linkA)
	tb.Cleanup(p.Close)
	return p
}

// Close stops the pumps and closes both stacks. It is idempotent.
func (p *Pair) Close() {
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.wg.Wait()
	p.cancel = nil
	for _, s := range []*stack.Stack{p.A, p.B} {
		s.Close()
		s.Wait()
	}
	p.linkA.Close()
	p.linkB.Close()
}

func newStack(link *channel.Endpoint, a4 [4]byte, a6 [16]byte) (*stack.Stack, error) {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	if err := s.CreateNIC(NIC, link); err != nil {
		return nil, asError(err)
	}
	for _, pa := range []tcpip.ProtocolAddress{
		{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(a4), PrefixLen: 15}},
		{Protocol: ipv6.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom16(a6), PrefixLen: 48}},
	} {
		if err := s.AddProtocolAddress(NIC, pa, stack.AddressProperties{}); err != nil {
			return nil, asError(err)
		}
	}
	s.SetRouteTable([]tcpip.Route{
		{Destination: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(a4), PrefixLen: 15}.Subnet(), NIC: NIC},
		{Destination: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom16(a6), PrefixLen: 48}.Subnet(), NIC: NIC},
	})
	sack := tcpip.TCPSACKEnabled(true)
	if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return nil, asError(err)
	}
	return s, nil
}

// routinePump moves frames written by from's stack into to's stack until
// ctx is cancelled.
func (p *Pair) routinePump(ctx context.Context, from, to *channel.Endpoint) {
	defer p.wg.Done()
	for {
		pkt := from.ReadContext(ctx)
		if pkt == nil {
			return
		}
		proto := pkt.NetworkProtocolNumber
		in := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithView(pkt.ToView())})
		pkt.DecRef()
		to.InjectInbound(proto, in)
		in.DecRef()
	}
}

type tcpipError struct{ err tcpip.Error }

func (e tcpipError) Error() string { return e.err.String() }

func asError(err tcpip.Error) error { return tcpipError{err} }

// MemLimited returns socket tables over the two stacks, cli over A and srv
// over B, whose socket-buffer memory (net.inet.tcp.mem_limit) holds conns
// TCP connections. Both tables are closed by cleanup.
func (p *Pair) MemLimited(tb testing.TB, conns int) (cli, srv *posix.Sockets) {
	tb.Helper()
	cli = posix.NewSockets(p.A, NIC)
	srv = posix.NewSockets(p.B, NIC)
	tb.Cleanup(cli.Close)
	tb.Cleanup(srv.Close)
	var limit atomic.Int64
	srv.SetSocketDefaults(func() xstack.SocketDefaults { return xstack.SocketDefaults{MemLimit: limit.Load()} })
	fd, err := srv.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		tb.Fatal(err)
	}
	per := srv.MemReserved() // what one connection reserves
	srv.CloseFD(fd)
	limit.Store(int64(conns) * per)
	return cli, srv
}

// Loop calls poll, an event loop's callback, over and over on a goroutine
// of its own until cleanup; an error fails the test and ends the loop.
func Loop(tb testing.TB, poll func() error) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if err := poll(); err != nil {
				tb.Error(err)
				return
			}
		}
	}()
	tb.Cleanup(func() {
		stop.Store(true)
		wg.Wait()
	})
}
