package stack_test

import (
	"encoding/hex"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/xstack/xstack/core"
	"github.com/xstack/xstack/stack"
)

// The Microsoft RSS verification key and a 4-queue table.
var (
	testRSSKey, _ = hex.DecodeString("6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa")
	testRSS       = &core.RSS{Key: testRSSKey, Table: []uint32{0, 1, 2, 3, 3, 2, 1, 0}}
)

const testQueue = 2

// connectTCP opens a TCP connection from p.b to addr through ConnectTCP and
// returns its endpoint once established, or the error.
func connectTCP(t *testing.T, st *stack.Stack, proto tcpip.NetworkProtocolNumber, addr tcpip.FullAddress) (tcpip.Endpoint, tcpip.Error) {
	t.Helper()
	var wq waiter.Queue
	ep, err := st.Gvisor().NewEndpoint(tcp.ProtocolNumber, proto, &wq)
	if err != nil {
		t.Fatal(err)
	}
	we, ch := waiter.NewChannelEntry(waiter.WritableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)
	err = st.ConnectTCP(ep, addr)
	if _, ok := err.(*tcpip.ErrConnectStarted); ok {
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatal("connect timed out")
		}
		err = ep.LastError()
	}
	if err != nil {
		ep.Close()
		return nil, err
	}
	return ep, nil
}

func localPort(t *testing.T, ep tcpip.Endpoint) uint16 {
	t.Helper()
	a, err := ep.GetLocalAddress()
	if err != nil {
		t.Fatal(err)
	}
	return a.Port
}

func counter(st *stack.Stack, name string) uint64 {
	for _, c := range st.Counters() {
		if c.Name == name {
			return c.Value
		}
	}
	return 0
}

// Active connections of a stack with a PortPicker take ports that the NIC
// hashes back to the stack's queue, inside its ephemeral range, for IPv4
// and IPv6; once every such port is taken for a peer, gVisor's own choice
// takes over and the connect still succeeds.
func TestConnectTCPPicksRSSPort(t *testing.T) {
	const lo, hi = 40000, 40255
	p := newPairConfig(t, stack.Config{PortLo: lo, PortHi: hi,
		PickPort: func(local netip.Addr, remote netip.AddrPort, lo, hi, from uint16) (uint16, bool) {
			return testRSS.PickPort(testQueue, local, remote, lo, hi, from)
		}})
	for _, tc := range []struct {
		name        string
		proto       tcpip.NetworkProtocolNumber
		local, peer string
	}{
		{"ipv4", ipv4.ProtocolNumber, "198.18.0.2", "198.18.0.1"},
		{"ipv6", ipv6.ProtocolNumber, "2001:2::2", "2001:2::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peer := netip.MustParseAddr(tc.peer)
			full := tcpip.FullAddress{NIC: stack.NICID, Addr: tcpip.AddrFromSlice(peer.AsSlice()), Port: 80}
			ln := listenTCP(t, p, full, tc.proto)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					defer c.Close()
				}
			}()

			// How many ports of the range hash to the queue for this peer.
			want := 0
			for port := lo; port <= hi; port++ {
				src := netip.AddrPortFrom(peer, 80)
				if testRSS.Queue(src, netip.AddrPortFrom(netip.MustParseAddr(tc.local), uint16(port))) == testQueue {
					want++
				}
			}
			if want == 0 || want == hi-lo+1 {
				t.Fatalf("%d of %d ports hash to queue %d: the test needs some but not all", want, hi-lo+1, testQueue)
			}
			picked0, fallback0 := counter(p.b, "connect.rss_picked"), counter(p.b, "connect.rss_fallback")
			seen := map[uint16]bool{}
			var eps []tcpip.Endpoint
			defer func() {
				for _, ep := range eps {
					ep.Close()
				}
			}()
			for i := 0; i < want; i++ {
				ep, cerr := connectTCP(t, p.b, tc.proto, full)
				if cerr != nil {
					t.Fatalf("connect %d: %v", i, cerr)
				}
				eps = append(eps, ep)
				port := localPort(t, ep)
				if port < lo || port > hi || seen[port] {
					t.Fatalf("connect %d: port %d outside %d-%d or reused", i, port, lo, hi)
				}
				seen[port] = true
				src := netip.AddrPortFrom(peer, 80)
				if q := testRSS.Queue(src, netip.AddrPortFrom(netip.MustParseAddr(tc.local), port)); q != testQueue {
					t.Fatalf("connect %d: port %d hashes to queue %d, want %d", i, port, q, testQueue)
				}
			}
			if got := counter(p.b, "connect.rss_picked") - picked0; got != uint64(want) {
				t.Errorf("connect.rss_picked rose by %d, want %d", got, want)
			}
			// Every port that hashes right is taken: the next connect
			// falls back to gVisor's choice and still connects.
			ep, cerr := connectTCP(t, p.b, tc.proto, full)
			if cerr != nil {
				t.Fatalf("connect past the hashing ports: %v", cerr)
			}
			eps = append(eps, ep)
			if got := counter(p.b, "connect.rss_fallback") - fallback0; got != 1 {
				t.Errorf("connect.rss_fallback rose by %d, want 1", got)
			}
		})
	}
}

// A picker that finds no port leaves the choice to gVisor.
func TestConnectTCPPickerFindsNone(t *testing.T) {
	p := newPairConfig(t, stack.Config{
		PickPort: func(netip.Addr, netip.AddrPort, uint16, uint16, uint16) (uint16, bool) { return 0, false }})
	full := tcpip.FullAddress{NIC: stack.NICID, Addr: tcpip.AddrFrom4([4]byte{198, 18, 0, 1}), Port: 81}
	listenTCP(t, p, full, ipv4.ProtocolNumber)
	ep, cerr := connectTCP(t, p.b, ipv4.ProtocolNumber, full)
	if cerr != nil {
		t.Fatal(cerr)
	}
	defer ep.Close()
	if counter(p.b, "connect.rss_fallback") != 1 || counter(p.b, "connect.rss_picked") != 0 {
		t.Errorf("counters: picked %d fallback %d, want 0 and 1", counter(p.b, "connect.rss_picked"), counter(p.b, "connect.rss_fallback"))
	}
}
