package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/lossy"
	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
)

func TestMain(m *testing.M) { xstestMain(m) }

// kernelRig is a rig whose stack-side kernel serves: its own veth end
// must send whole checksums, since xload reads the raw frames.
func kernelRig(t *testing.T) *rig.Rig {
	t.Helper()
	r := rigtest.New(t, rig.Options{})
	if _, err := r.Run(r.StackNS, "ethtool", "-K", r.StackIf, "tx", "off"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		on, err := r.Run(r.PeerNS, "ip", "link", "show", r.PeerIf)
		if err == nil && containsXDP(on) {
			t.Errorf("an XDP program is left on %s: %s", r.PeerIf, on)
		}
	})
	return r
}

func containsXDP(s string) bool {
	for i := 0; i+3 <= len(s); i++ {
		if s[i:i+3] == "xdp" {
			return true
		}
	}
	return false
}

func loadOpts(r *rig.Rig, server string) options {
	return options{ns: r.PeerNS, ifname: r.PeerIf, srcs: "198.18.1.1-198.18.1.2", server: server,
		path: "/", xdpMode: "auto", conns: 8, portLo: 20000, portHi: 29999,
		dur: 500 * time.Millisecond, timeout: time.Second, rto: 200 * time.Millisecond}
}

// srcs6 are two IPv6 sources for xload in the rig's /64, on-link, past
// the rig's own addresses (::1 to ::3): ::100 and ::101.
func srcs6(t *testing.T, r *rig.Rig) (lo, hi netip.Addr) {
	t.Helper()
	pfx := netip.PrefixFrom(r.StackAddr6, r.Prefix6).Masked()
	b := pfx.Addr().As16()
	b[14] = 1
	lo = netip.AddrFrom16(b)
	hi = lo.Next()
	for _, a := range []netip.Addr{lo, hi} {
		if !pfx.Contains(a) || a == r.StackAddr6 || a == r.PeerAddr6 || a == r.KernelAddr6 {
			t.Fatalf("source %s: not on-link in %s or one of the rig's", a, pfx)
		}
	}
	return lo, hi
}

// loadOpts6 is loadOpts from two IPv6 sources.
func loadOpts6(t *testing.T, r *rig.Rig, server netip.AddrPort) options {
	lo, hi := srcs6(t, r)
	o := loadOpts(r, server.String())
	o.srcs = lo.String() + "-" + hi.String()
	return o
}

// checkNeighbors checks that the kernel in ns resolved each of xload's
// IPv6 sources to the peer's MAC address: by xload's own solicitation for
// the first (its source link-layer address option), by a solicitation to
// the solicited-node group that xload answered for the second.
func checkNeighbors(t *testing.T, r *rig.Rig, ns, ifname string) {
	t.Helper()
	out, err := r.Run(ns, "ip", "-6", "neigh", "show", "dev", ifname)
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := srcs6(t, r)
	for _, a := range []netip.Addr{lo, hi} {
		found := false
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] == a.String() && f[1] == "lladdr" && f[2] == r.PeerMAC.String() {
				found = true
			}
		}
		if !found {
			t.Errorf("the kernel in %s has no neighbor entry %s lladdr %s:\n%s", ns, a, r.PeerMAC, out)
		}
	}
}

func TestKernelHelloworld(t *testing.T) {
	r := kernelRig(t)
	bin := rigtest.Build(t, "./examples/helloworld")
	rigtest.Start(t, "serving on port", "ip", "netns", "exec", r.StackNS, bin, "-kernel", "-port", "8080")
	server := fmt.Sprintf("%s:8080", r.KernelAddr4)
	// Each mode twice: the later runs reuse 4-tuples that the server holds
	// in TIME-WAIT from the short run before them. Then each mode in an
	// open loop.
	for i, c := range []struct {
		short bool
		rate  float64
	}{{false, 0}, {true, 0}, {false, 0}, {true, 0}, {false, 4000}, {true, 1000}} {
		t.Run(fmt.Sprintf("%d/short=%v/rate=%v", i, c.short, c.rate), func(t *testing.T) {
			o := loadOpts(r, server)
			o.short, o.rate = c.short, c.rate
			res, err := run(o)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", res.Text())
			checkRun(t, o, res)
		})
	}
}

// TestKernelHelloworld6: the kernel's helloworld over IPv6, from two
// sources of the rig's /64. The server is resolved by Neighbor Discovery,
// and the kernel resolves both sources, one by the solicitation xload
// sends and the other by one xload answers.
func TestKernelHelloworld6(t *testing.T) {
	r := kernelRig(t)
	bin := rigtest.Build(t, "./examples/helloworld")
	rigtest.Start(t, "serving on port", "ip", "netns", "exec", r.StackNS, bin, "-kernel", "-port", "8080")
	server := netip.AddrPortFrom(r.KernelAddr6, 8080)
	for i, c := range []struct {
		short bool
		rate  float64
	}{{false, 0}, {true, 0}, {true, 0}, {false, 4000}} {
		t.Run(fmt.Sprintf("%d/short=%v/rate=%v", i, c.short, c.rate), func(t *testing.T) {
			o := loadOpts6(t, r, server)
			o.short, o.rate = c.short, c.rate
			res, err := run(o)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", res.Text())
			checkRun(t, o, res)
		})
	}
	checkNeighbors(t, r, r.StackNS, r.StackIf)
}

// checkRun checks what every run against a good server must show: only
// ok responses, no bad ND, one clean close per short connection, and in an open loop
// an outcome for every scheduled request.
func checkRun(t *testing.T, o options, res *result) {
	t.Helper()
	c := res.Counts
	if c.OK == 0 || c.Errors() != 0 {
		t.Errorf("want only ok responses, got %+v", c)
	}
	if c.RxBadND != 0 {
		t.Errorf("the server's Neighbor Discovery was counted bad: %+v", c)
	}
	if o.short && c.ConnsDone != c.OK {
		t.Errorf("short: %d connections closed cleanly, want one per response (%d)", c.ConnsDone, c.OK)
	}
	if o.rate > 0 {
		if res.OfferedRate != o.rate {
			t.Errorf("offered rate %v, want -rate %v", res.OfferedRate, o.rate)
		}
		if want := uint64(0.8 * o.rate * o.dur.Seconds()); c.Scheduled < want || c.OK+c.Errors()+c.Unsent != c.Scheduled {
			t.Errorf("want at least %d scheduled, each answered or counted unsent, got %+v", want, c)
		}
	}
}

// serveKernel runs a raw TCP server in ns that answers every connection
// with handle.
func serveKernel(t *testing.T, ns, addr string, handle func(c *net.TCPConn)) {
	t.Helper()
	var ln net.Listener
	if err := netns.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c.(*net.TCPConn))
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
}

func TestBadServers(t *testing.T) {
	r := kernelRig(t)
	readReq := func(c *net.TCPConn) bool {
		c.SetDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 1024)
		_, err := c.Read(buf)
		return err == nil
	}
	tests := []struct {
		name   string
		handle func(c *net.TCPConn)
		count  func(c *Counts) uint64
	}{
		{"garbage", func(c *net.TCPConn) {
			defer c.Close()
			if readReq(c) {
				c.Write([]byte("SSH-2.0-nonsense\r\n\r\n"))
			}
		}, func(c *Counts) uint64 { return c.Malformed }},
		{"reset", func(c *net.TCPConn) {
			if readReq(c) {
				c.SetLinger(0)
			}
			c.Close()
		}, func(c *Counts) uint64 { return c.Reset }},
		{"status", func(c *net.TCPConn) {
			defer c.Close()
			for readReq(c) {
				c.Write([]byte("HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy"))
			}
		}, func(c *Counts) uint64 { return c.BadStatus }},
		{"short", func(c *net.TCPConn) {
			defer c.Close()
			if readReq(c) {
				c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"))
			}
		}, func(c *Counts) uint64 { return c.Short }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := fmt.Sprintf("%s:%d", r.KernelAddr4, 9000+i)
			serveKernel(t, r.StackNS, addr, tt.handle)
			o := loadOpts(r, addr)
			o.portLo, o.portHi = 30000+1000*i, 30999+1000*i
			res, err := run(o)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", res.Text())
			if got := tt.count(&res.Counts); got == 0 || got != res.Counts.Errors() || res.Counts.OK != 0 {
				t.Errorf("want every response counted as %s only, got %+v", tt.name, res.Counts)
			}
		})
	}
}

// TestLossy: with 5% of the frames lost each way, xload still ends on time,
// and no response is misread.
func TestLossy(t *testing.T) {
	r := kernelRig(t)
	bin := rigtest.Build(t, "./examples/helloworld")
	rigtest.Start(t, "serving on port", "ip", "netns", "exec", r.StackNS, bin, "-kernel", "-port", "8080")
	// On the server's end: xload's own XDP program holds the peer's.
	d, err := lossy.Attach(r.StackNS, r.StackIf)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.SetLoss(0.05, 0.05); err != nil {
		t.Fatal(err)
	}
	for _, short := range []bool{false, true} {
		t.Run(fmt.Sprintf("short=%v", short), func(t *testing.T) {
			o := loadOpts(r, fmt.Sprintf("%s:8080", r.KernelAddr4))
			o.short, o.timeout = short, 3*time.Second
			if short {
				o.portLo, o.portHi = 40000, 49999
			}
			res, err := run(o)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", res.Text())
			c := res.Counts
			if c.OK == 0 || c.Malformed+c.BadStatus+c.Reset != 0 {
				t.Errorf("want ok responses and no misread ones, got %+v", c)
			}
		})
	}
	lc, err := d.Counts()
	if err != nil {
		t.Fatal(err)
	}
	if lc.Egress.Dropped+lc.Ingress.Dropped == 0 {
		t.Errorf("the dropper dropped nothing: %+v", lc)
	}
}

// TestXstackHelloworld: the same runs against helloworld on xstack, whose
// own XDP program holds the other end of the veth, over IPv4 and IPv6
// (gVisor's Neighbor Discovery on the other end).
func TestXstackHelloworld(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	bin := rigtest.Build(t, "./examples/helloworld")
	p := rigtest.Start(t, "serving on port", bin, "-c", rigtest.Config(t, r))
	defer p.Stop(5 * time.Second)
	for _, c := range []struct {
		v6    bool
		short bool
		rate  float64
	}{{false, false, 0}, {false, true, 0}, {false, false, 4000}, {true, false, 0}, {true, true, 0}, {true, false, 4000}} {
		t.Run(fmt.Sprintf("ipv6=%v/short=%v/rate=%v", c.v6, c.short, c.rate), func(t *testing.T) {
			o := loadOpts(r, fmt.Sprintf("%s:80", r.StackAddr4))
			if c.v6 {
				o = loadOpts6(t, r, netip.AddrPortFrom(r.StackAddr6, 80))
			}
			o.short, o.rate = c.short, c.rate
			if c.short {
				o.portLo, o.portHi = 40000, 49999
			}
			res, err := run(o)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", res.Text())
			checkRun(t, o, res)
		})
	}
}
