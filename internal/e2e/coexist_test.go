package e2e

import (
	"bufio"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
)

func TestPing(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	p := startHelloworld(t, r)
	for _, args := range [][]string{
		{"ping", "-c", "3", "-i", "0.2", "-W", "2", r.StackAddr4.String()},
		{"ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", r.StackAddr6.String()},
	} {
		out, err := r.Run(r.PeerNS, args[0], args[1:]...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		if !strings.Contains(out, " 0% packet loss") {
			t.Errorf("%v lost packets:\n%s", args, out)
		}
	}
	// The peer resolved both addresses to the stack's MAC (ARP and ND).
	out, _ := r.Run(r.PeerNS, "ip", "neigh", "show", "dev", r.PeerIf)
	for _, a := range []netip.Addr{r.StackAddr4, r.StackAddr6} {
		re := regexp.MustCompile(regexp.QuoteMeta(a.String()) + ` lladdr ` + regexp.QuoteMeta(r.StackMAC.String()))
		if !re.MatchString(out) {
			t.Errorf("peer has no neighbour entry %s → %s:\n%s", a, r.StackMAC, out)
		}
	}
	cs := p.Counters(t)
	if cs["icmp.v4.packets_received.echo_request"] < 3 || cs["icmp.v6.packets_received.echo_request"] < 3 {
		t.Errorf("echo requests not counted: v4 %d v6 %d", cs["icmp.v4.packets_received.echo_request"], cs["icmp.v6.packets_received.echo_request"])
	}
}

// echoOnce checks one kernel-to-kernel round trip.
func echoOnce(ns string, addr netip.AddrPort) error {
	c, err := dial(ns, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "kernel traffic\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "kernel traffic\n" {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// TestCoexistence: while xstack serves, traffic for the stack-side
// kernel's own address on the same veth still reaches the kernel.
func TestCoexistence(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	rigtest.KernelEcho(t, r.StackNS, netip.AddrPortFrom(r.KernelAddr4, 9000))
	rigtest.KernelEcho(t, r.StackNS, netip.AddrPortFrom(r.KernelAddr6, 9000))
	startHelloworld(t, r)
	if ok, err := r.XDPAttached(); err != nil || !ok {
		t.Fatalf("XDP program not attached while serving (%v)", err)
	}
	for _, a := range []netip.Addr{r.KernelAddr4, r.KernelAddr6} {
		if err := echoOnce(r.PeerNS, netip.AddrPortFrom(a, 9000)); err != nil {
			t.Errorf("kernel-to-kernel via %s while xstack serves: %v", a, err)
		}
	}
	// And xstack still answers on its own address at the same time.
	c, err := dial(r.PeerNS, netip.AddrPortFrom(r.StackAddr4, 80))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fetch(c, bufio.NewReader(c), false); err != nil {
		t.Fatal(err)
	}
}

// TestCoexistenceBulk: while xstack (helloworld) serves on the same veth,
// 100 MiB echoed through a kernel-to-kernel TCP connection (peer to the
// stack side kernel's own address, IPv4 and IPv6) comes back intact, and
// none of it reaches xstack: its link counters stay where they were (the
// XDP program passed every frame of the flow to the kernel).
func TestCoexistenceBulk(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	rigtest.KernelEcho(t, r.StackNS, netip.AddrPortFrom(r.KernelAddr4, 9000))
	rigtest.KernelEcho(t, r.StackNS, netip.AddrPortFrom(r.KernelAddr6, 9000))
	p := startHelloworld(t, r)
	if ok, err := r.XDPAttached(); err != nil || !ok {
		t.Fatalf("XDP program not attached while serving (%v)", err)
	}
	before := p.Counters(t)
	const size = 100 << 20
	for i, a := range []netip.Addr{r.KernelAddr4, r.KernelAddr6} {
		start := time.Now()
		if err := echoBulk(r.PeerNS, netip.AddrPortFrom(a, 9000), size, uint64(i)); err != nil {
			t.Fatalf("kernel-to-kernel via %s while xstack serves: %v", a, err)
		}
		t.Logf("%d MiB echoed kernel to kernel via %s in %v", size>>20, a, time.Since(start).Round(time.Millisecond))
	}
	after := p.Counters(t)
	// 2 × 100 MiB each way is over 290,000 full-sized frames; a few
	// frames of the stack's own (none are expected) would not matter,
	// a share of the flow would.
	for _, k := range []string{"link.rx_frames", "link.tx_frames"} {
		if d := after[k] - before[k]; d > 16 {
			t.Errorf("%s grew by %d during the kernel-to-kernel transfers: xstack saw their frames", k, d)
		} else {
			t.Logf("%s grew by %d", k, d)
		}
	}
	if _, ok := after["link.rx_frames"]; !ok {
		t.Errorf("no link.rx_frames counter in %v", after)
	}
}

// echoBulk sends size pseudo-random bytes to the echo server at addr from
// namespace ns, reads them back, and compares length and SHA-256.
func echoBulk(ns string, addr netip.AddrPort, size int64, seed uint64) error {
	c, err := dial(ns, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(120 * time.Second))
	return rigtest.EchoBulk(c.(*net.TCPConn), size, seed, 0, nil)
}

// TestCrashLeavesNICWorking: SIGKILL leaves no XDP program behind (the
// bpf_link dies with the process) and the kernel gets its traffic back.
func TestCrashLeavesNICWorking(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	rigtest.KernelEcho(t, r.StackNS, netip.AddrPortFrom(r.KernelAddr4, 9000))
	p := startHelloworld(t, r)
	if ok, _ := r.XDPAttached(); !ok {
		t.Fatal("XDP program not attached while serving")
	}
	if err := p.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	p.Wait(10 * time.Second)
	rigtest.WaitDetached(t, r, 10*time.Second, "after kill -9")
	if err := echoOnce(r.PeerNS, netip.AddrPortFrom(r.KernelAddr4, 9000)); err != nil {
		t.Fatalf("kernel traffic after the crash: %v", err)
	}
	// The stack's address now belongs to nobody: the kernel does not
	// answer for it, and a new xstack can take the interface again.
	startHelloworld(t, r)
}

func TestBadConfig(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	bin := rigtest.Build(t, "./examples/helloworld")
	good := rigtest.Config(t, r)
	base, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		edit    func(string) string
		wantMsg *regexp.Regexp
	}{
		{"unknown key", func(s string) string { return s + "colour=blue\n" },
			regexp.MustCompile(`config\.ini:1[0-9]: colour: unknown key`)},
		{"bad address", func(s string) string {
			return strings.Replace(s, "addr="+r.StackAddr4.String(), "addr=198.18.0.300", 1)
		},
			regexp.MustCompile(`config\.ini:9: addr: `)},
		{"missing interface", func(s string) string { return strings.Replace(s, "ifname="+r.StackIf, "ifname=nosuch0", 1) },
			regexp.MustCompile(`config\.ini:7: ifname: interface "nosuch0" not found`)},
		{"missing namespace", func(s string) string { return strings.Replace(s, "netns="+r.StackNS, "netns=xs-nosuch", 1) },
			regexp.MustCompile(`config\.ini:8: netns: `)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf := filepath.Join(t.TempDir(), "config.ini")
			os.WriteFile(conf, []byte(tt.edit(string(base))), 0o644)
			p, err := rigtest.StartProc("serving on port", 20*time.Second, bin, "-c", conf)
			if err == nil {
				p.Stop(5 * time.Second)
				t.Fatal("helloworld started with a bad config")
			}
			werr := p.Wait(10 * time.Second)
			if werr == nil {
				t.Errorf("exit status 0 with a bad config")
			}
			if !tt.wantMsg.MatchString(p.Output()) {
				t.Errorf("output does not match %q:\n%s", tt.wantMsg, p.Output())
			}
			if ok, _ := r.XDPAttached(); ok {
				t.Error("an XDP program was left attached")
			}
		})
	}
}
