package stack_test

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/xstack/xstack/stack"
)

func TestSysctlReadsBack(t *testing.T) {
	p := newPair(t)
	for _, kv := range [][2]string{
		{"net.inet.tcp.sack", "0"}, {"net.inet.tcp.sack", "1"}, {"net.inet.tcp.cc", "reno"},
		{"net.inet.tcp.sendspace", "65536"}, {"net.inet.tcp.recvspace", "131072"},
		{"net.inet.tcp.delayed_ack", "0"}, {"net.inet.tcp.nodelay", "1"}, {"net.inet.tcp.msl", "1000"},
		{"net.inet.tcp.keepidle", "10"}, {"net.inet.tcp.keepintvl", "11"}, {"net.inet.tcp.keepcnt", "3"},
		{"net.inet.tcp.syncookies", "2"}, {"net.inet.tcp.syncookies", "1"}, {"net.inet.tcp.moderate_rcvbuf", "0"},
		{"net.inet.tcp.tw_reuse", "1"}, {"net.inet.ip.ttl", "32"}, {"net.inet6.ip6.hlim", "33"},
		{"net.inet.ip.forwarding", "1"}, {"net.inet.tcp.timestamps", "1"},
		{"net.inet.tcp.rexmit_min", "30"}, {"net.inet.tcp.rexmit_max", "64000"},
	} {
		if err := p.a.SetSysctl(kv[0], kv[1]); err != nil {
			t.Fatalf("SetSysctl(%s, %s): %v", kv[0], kv[1], err)
		}
		if got, err := p.a.Sysctl(kv[0]); err != nil || got != kv[1] {
			t.Errorf("Sysctl(%s) = %q, %v after setting %q", kv[0], got, err, kv[1])
		}
	}
	if v, err := p.a.Sysctl("net.inet.tcp.mss_default"); err != nil || v != "536" {
		t.Errorf("mss_default = %q, %v", v, err)
	}
	if _, err := p.a.Sysctl("no.such"); err == nil {
		t.Error("Sysctl(no.such) succeeded")
	}
}

func TestRoutes(t *testing.T) {
	p := newPair(t)
	dst := netip.MustParsePrefix("198.19.0.0/24")
	gw := netip.MustParseAddr("198.18.0.2")
	if err := p.a.AddRoute(dst, gw); err != nil {
		t.Fatal(err)
	}
	if err := p.a.AddRoute(dst, gw); err == nil {
		t.Error("adding a route twice succeeded")
	}
	for _, bad := range []struct {
		dst netip.Prefix
		gw  netip.Addr
	}{
		{dst, netip.MustParseAddr("10.0.0.1")},           // not on-link
		{dst, netip.MustParseAddr("2001:2::2")},          // wrong family
		{netip.Prefix{}, netip.MustParseAddr("1.1.1.1")}, // no destination
	} {
		if err := p.a.AddRoute(bad.dst, bad.gw); err == nil {
			t.Errorf("AddRoute(%v, %v) succeeded", bad.dst, bad.gw)
		}
	}
	// gVisor takes the first match: the new /24 must come before the /16.
	rs := p.a.Routes()
	i24 := slices.IndexFunc(rs, func(r stack.Route) bool { return r.Dst == dst && r.Gateway == gw && r.Iface == "a" })
	i16 := slices.IndexFunc(rs, func(r stack.Route) bool { return r.Dst == netip.MustParsePrefix("198.18.0.0/16") })
	if i24 < 0 || i16 < 0 || i24 > i16 {
		t.Fatalf("routes %+v: want %v via %v before 198.18.0.0/16", rs, dst, gw)
	}
	got, err := p.a.RouteTo(netip.MustParseAddr("198.19.0.7"))
	if err != nil || got.Gateway != gw || got.Route.Dst != dst || got.Source != netip.MustParseAddr("198.18.0.1") {
		t.Fatalf("RouteTo: %+v, %v", got, err)
	}
	if got, err := p.a.RouteTo(netip.MustParseAddr("198.18.0.2")); err != nil || got.Gateway.IsValid() || got.NextHop != netip.MustParseAddr("198.18.0.2") {
		t.Fatalf("RouteTo on-link: %+v, %v", got, err)
	}
	if err := p.a.DeleteRoute(dst, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if err := p.a.DeleteRoute(dst, netip.Addr{}); !errors.Is(err, stack.ErrNoRoute) {
		t.Fatalf("second delete: %v, want ErrNoRoute", err)
	}
	if _, err := p.a.RouteTo(netip.MustParseAddr("198.19.0.7")); !errors.Is(err, stack.ErrNoRoute) {
		t.Fatalf("RouteTo after delete: %v, want ErrNoRoute", err)
	}
}

// TestRoutesConcurrent adds routes from many goroutines at once, as the
// route tool (on the loop) and an application (posix.RouteAdd, anywhere)
// may: none is lost, and of the goroutines adding the same route exactly
// one succeeds.
func TestRoutesConcurrent(t *testing.T) {
	p := newPair(t)
	// More Ps than CPUs, so that the adds interleave even on a small
	// machine.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(8))
	gw := netip.MustParseAddr("198.18.0.2")
	const n = 32
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, 2*n)
	for i := range n {
		dst := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 0}), 16)
		for j := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[2*i+j] = p.a.AddRoute(dst, gw)
			}()
		}
	}
	close(start)
	wg.Wait()
	for i := range n {
		a, b := errs[2*i], errs[2*i+1]
		if (a == nil) == (b == nil) || !errors.Is(a, stack.ErrRouteExists) && !errors.Is(b, stack.ErrRouteExists) {
			t.Errorf("route %d added twice at once: errors %v and %v, want one nil and one ErrRouteExists", i, a, b)
		}
	}
	got := 0
	for _, r := range p.a.Routes() {
		if netip.MustParsePrefix("10.0.0.0/8").Contains(r.Dst.Addr()) && r.Gateway == gw {
			got++
		}
	}
	if got != n {
		t.Fatalf("%d of %d routes in the table: %+v", got, n, p.a.Routes())
	}
}

func TestSocketsNeighborsInterface(t *testing.T) {
	p := newPair(t)
	c, _ := tcpConns(t, p, ipv4.ProtocolNumber, "198.18.0.1", 80)

	local := netip.MustParseAddrPort("198.18.0.1:80")
	remote := netip.MustParseAddrPort(c.LocalAddr().String())
	var listen, est bool
	for _, s := range p.a.Sockets() {
		switch {
		case s.Proto == "tcp" && s.State == "LISTEN" && s.Local == local:
			listen = true
		case s.Proto == "tcp" && s.State == "ESTABLISHED" && s.Local == local && s.Remote == remote:
			est = true
		}
	}
	if !listen || !est {
		t.Fatalf("sockets %+v: want the listener on %v and the connection from %v", p.a.Sockets(), local, remote)
	}

	ns, err := p.a.Neighbors(false)
	if err != nil || len(ns) != 1 || ns[0].Addr != netip.MustParseAddr("198.18.0.2") || ns[0].MAC != p.b.HardwareAddr().String() {
		t.Fatalf("ARP cache %+v, %v: want 198.18.0.2 at %v", ns, err, p.b.HardwareAddr())
	}
	if err := p.a.RemoveNeighbor(ns[0].Addr); err != nil {
		t.Fatal(err)
	}
	if err := p.a.RemoveNeighbor(ns[0].Addr); !errors.Is(err, stack.ErrNoNeighbor) {
		t.Fatalf("second remove: %v, want ErrNoNeighbor", err)
	}
	mac, _ := net.ParseMAC("02:00:00:00:00:09")
	if err := p.a.AddStaticNeighbor(netip.MustParseAddr("198.18.0.9"), mac); err != nil {
		t.Fatal(err)
	}
	if ns, _ := p.a.Neighbors(false); len(ns) != 1 || ns[0].State != "Static" || ns[0].MAC != mac.String() {
		t.Fatalf("after a static add: %+v", ns)
	}

	ifc := p.a.Interface()
	if !ifc.Up || ifc.MTU != 1500 || ifc.Name != "a" || len(ifc.Addrs) != 2 {
		t.Fatalf("interface %+v", ifc)
	}
	if err := p.a.SetMTU(1400); err != nil || p.a.Interface().MTU != 1400 {
		t.Fatalf("SetMTU(1400): %v, MTU %d", err, p.a.Interface().MTU)
	}
	if err := p.a.SetMTU(1600); err == nil {
		t.Fatal("SetMTU above the starting MTU succeeded")
	}
	if err := p.a.AddAddress(netip.MustParsePrefix("198.19.0.1/24")); err != nil {
		t.Fatal(err)
	}
	if err := p.a.RemoveAddress(netip.MustParseAddr("198.19.0.1")); err != nil {
		t.Fatal(err)
	}
	if len(p.a.Interface().Addrs) != 2 {
		t.Fatalf("addresses after add and remove: %v", p.a.Interface().Addrs)
	}
}
