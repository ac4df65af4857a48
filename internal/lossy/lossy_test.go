package lossy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
)

// frame builds an Ethernet frame of the given EtherType whose network
// header has proto in the IPv4 protocol / IPv6 next-header field.
func frame(etherType uint16, proto byte) []byte {
	b := make([]byte, 14+40+20)
	copy(b[0:6], []byte{2, 0, 0, 0, 0, 1})
	copy(b[6:12], []byte{2, 0, 0, 0, 0, 2})
	binary.BigEndian.PutUint16(b[12:], etherType)
	switch etherType {
	case 0x0800:
		b[14] = 0x45
		binary.BigEndian.PutUint16(b[16:], 20+20)
		b[22] = 64
		b[23] = proto
		copy(b[26:30], []byte{198, 18, 0, 2})
		copy(b[30:34], []byte{198, 18, 0, 1})
		return b[:14+20+20]
	case 0x86dd:
		b[14] = 0x60
		binary.BigEndian.PutUint16(b[18:], 20)
		b[20] = proto
		b[21] = 64
	case 0x0806:
		binary.BigEndian.PutUint16(b[14:], 1)      // Ethernet
		binary.BigEndian.PutUint16(b[16:], 0x0800) // IPv4
		b[18], b[19] = 6, 4
		binary.BigEndian.PutUint16(b[20:], 1) // request
		return b[:14+28]
	}
	return b
}

// within reports whether k successes of n trials agree with probability p:
// within six standard deviations of the mean, plus one for rounding.
func within(k, n int, p float64) bool {
	mean := float64(n) * p
	sd := math.Sqrt(float64(n) * p * (1 - p))
	return math.Abs(float64(k)-mean) <= 6*sd+1
}

// TestProgramDropsShare runs both programs with BPF_PROG_TEST_RUN on
// synthetic frames: candidates (TCP and UDP over IPv4 and IPv6) are dropped
// in about the configured share, others never, and the counters agree with
// the verdicts.
func TestProgramDropsShare(t *testing.T) {
	rigtest.RequireRoot(t)
	d, err := load("test")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	candidates := map[string][]byte{
		"ipv4 tcp": frame(0x0800, 6), "ipv4 udp": frame(0x0800, 17),
		"ipv6 tcp": frame(0x86dd, 6), "ipv6 udp": frame(0x86dd, 17),
	}
	others := map[string][]byte{
		"arp": frame(0x0806, 0), "ipv4 icmp": frame(0x0800, 1), "ipv6 icmpv6": frame(0x86dd, 58),
		"ipv6 hop-by-hop": frame(0x86dd, 0), "vlan": frame(0x8100, 0),
	}
	progs := []struct {
		name       string
		prog       *ebpf.Program
		dir        func(Counts) Direction
		pass, drop uint32
	}{
		{"xdp ingress", d.xdpProg, func(c Counts) Direction { return c.Ingress }, 2, 1},
		{"tc egress", d.tcProg, func(c Counts) Direction { return c.Egress }, math.MaxUint32, 2},
	}
	const n = 4000
	for _, share := range []float64{0, 0.01, 0.2, 0.5, 1} {
		if err := d.SetLoss(share, share); err != nil {
			t.Fatal(err)
		}
		for _, p := range progs {
			for name, f := range candidates {
				t.Run(fmt.Sprintf("%s/%s/%v", p.name, name, share), func(t *testing.T) {
					before, err := d.Counts()
					if err != nil {
						t.Fatal(err)
					}
					drops := 0
					for range n {
						got, err := p.prog.Run(&ebpf.RunOptions{Data: f})
						if err != nil {
							t.Fatal(err)
						}
						switch got {
						case p.drop:
							drops++
						case p.pass:
						default:
							t.Fatalf("verdict %d, want %d (pass) or %d (drop)", got, p.pass, p.drop)
						}
					}
					if !within(drops, n, share) {
						t.Errorf("dropped %d of %d at share %v (expected about %.0f)", drops, n, share, share*n)
					}
					after, _ := d.Counts()
					gotDir, wantDir := p.dir(after), p.dir(before)
					wantDir.Dropped += uint64(drops)
					wantDir.Passed += uint64(n - drops)
					if gotDir != wantDir {
						t.Errorf("counters %+v, want %+v", gotDir, wantDir)
					}
				})
			}
		}
	}
	// At share 1 nothing else is ever dropped.
	for _, p := range progs {
		for name, f := range others {
			before, _ := d.Counts()
			for range 100 {
				if got, err := p.prog.Run(&ebpf.RunOptions{Data: f}); err != nil || got != p.pass {
					t.Fatalf("%s %s at share 1: verdict %d, %v; want pass (%d)", p.name, name, got, err, p.pass)
				}
			}
			after, _ := d.Counts()
			if got, want := p.dir(after).Other-p.dir(before).Other, uint64(100); got != want {
				t.Errorf("%s %s: other counter grew by %d, want %d", p.name, name, got, want)
			}
		}
	}
}

func TestSetLossRange(t *testing.T) {
	for _, s := range []float64{-0.1, 1.01, math.NaN()} {
		if _, err := threshold(s); err == nil {
			t.Errorf("threshold(%v) accepted", s)
		}
	}
	for _, tc := range []struct {
		share float64
		want  uint64
	}{{0, 0}, {0.5, 1 << 31}, {1, 1 << 32}} {
		if got, err := threshold(tc.share); err != nil || got != tc.want {
			t.Errorf("threshold(%v) = %d, %v; want %d", tc.share, got, err, tc.want)
		}
	}
}

// udpFlow sends n datagrams from namespace fromNS to addr in namespace
// toNS and returns how many arrived.
func udpFlow(t *testing.T, fromNS, toNS string, addr netip.AddrPort, n int) int {
	t.Helper()
	var rc *net.UDPConn
	if err := netns.Do(toNS, func() error {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		rc = c
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	// Room for every datagram, so that only the dropper loses any.
	raw, _ := rc.SyscallConn()
	raw.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
	})
	var sc net.Conn
	if err := netns.Do(fromNS, func() error {
		c, err := net.Dial("udp", addr.String())
		sc = c
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	got := make(chan int, 1)
	go func() {
		buf := make([]byte, 64)
		k := 0
		for {
			rc.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := rc.Read(buf); err != nil {
				got <- k
				return
			}
			k++
		}
	}()
	msg := make([]byte, 32)
	for i := range n {
		binary.BigEndian.PutUint32(msg, uint32(i))
		if _, err := sc.Write(msg); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatal(err)
		}
	}
	return <-got
}

// TestRigDropsBothWays attaches to a rig's peer end and sends UDP both
// ways between the peer and the stack side's kernel: the datagrams that
// arrive are exactly those the counters passed, the dropped share agrees
// with the setting, and at share 1 ping (ICMP) and neighbour resolution
// still work. The clsact path is checked the same way, and Close leaves
// nothing on the interface.
func TestRigDropsBothWays(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	for _, opts := range []Options{{}, {Clsact: true}} {
		name := "tcx"
		if opts.Clsact {
			name = "clsact"
		}
		t.Run(name, func(t *testing.T) {
			d, err := AttachWith(r.PeerNS, r.PeerIf, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if d.EgressHook() != name {
				t.Errorf("egress hook %q, want %q", d.EgressHook(), name)
			}
			out, _ := r.Run(r.PeerNS, "ip", "-d", "link", "show", "dev", r.PeerIf)
			if !strings.Contains(out, "prog/xdp") {
				t.Errorf("no XDP program on %s:\n%s", r.PeerIf, out)
			}
			if opts.Clsact {
				out, _ := r.Run(r.PeerNS, "tc", "filter", "show", "dev", r.PeerIf, "egress")
				if !strings.Contains(out, clsactFilterName) {
					t.Errorf("no %s filter on the egress hook of %s:\n%s", clsactFilterName, r.PeerIf, out)
				}
			}
			const egress, ingress, n = 0.2, 0.3, 3000
			if err := d.SetLoss(egress, ingress); err != nil {
				t.Fatal(err)
			}
			for _, leg := range []struct {
				name     string
				from, to string
				addr     netip.AddrPort
				share    float64
				dir      func(Counts) Direction
			}{
				{"peer to stack side", r.PeerNS, r.StackNS, netip.AddrPortFrom(r.KernelAddr4, 5001), egress, func(c Counts) Direction { return c.Egress }},
				{"stack side to peer", r.StackNS, r.PeerNS, netip.AddrPortFrom(r.PeerAddr6, 5002), ingress, func(c Counts) Direction { return c.Ingress }},
			} {
				before, err := d.Counts()
				if err != nil {
					t.Fatal(err)
				}
				got := udpFlow(t, leg.from, leg.to, leg.addr, n)
				after, _ := d.Counts()
				b, a := leg.dir(before), leg.dir(after)
				passed, dropped := a.Passed-b.Passed, a.Dropped-b.Dropped
				t.Logf("%s: sent %d, arrived %d, counters passed %d dropped %d", leg.name, n, got, passed, dropped)
				if passed+dropped != n {
					t.Errorf("%s: counters saw %d+%d frames, want %d", leg.name, passed, dropped, n)
				}
				if uint64(got) != passed {
					t.Errorf("%s: %d datagrams arrived, the counters passed %d", leg.name, got, passed)
				}
				if !within(int(dropped), n, leg.share) {
					t.Errorf("%s: dropped %d of %d, want about %.0f", leg.name, dropped, n, leg.share*n)
				}
			}

			// Everything TCP/UDP lost; ICMP, ARP and ND still pass.
			if err := d.SetLoss(1, 1); err != nil {
				t.Fatal(err)
			}
			r.Run(r.PeerNS, "ip", "neigh", "flush", "dev", r.PeerIf)
			for _, a := range []netip.Addr{r.KernelAddr4, r.KernelAddr6} {
				if out, err := r.Run(r.PeerNS, "ping", "-c", "2", "-i", "0.2", "-W", "2", a.String()); err != nil {
					t.Errorf("ping %v at loss 1: %v\n%s", a, err, out)
				}
			}
			if got := udpFlow(t, r.PeerNS, r.StackNS, netip.AddrPortFrom(r.KernelAddr4, 5003), 100); got != 0 {
				t.Errorf("%d of 100 datagrams arrived at loss 1", got)
			}

			if err := d.Close(); err != nil {
				t.Fatal(err)
			}
			if err := d.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if _, err := d.Counts(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Counts after Close: %v, want net.ErrClosed", err)
			}
			out, _ = r.Run(r.PeerNS, "ip", "-d", "link", "show", "dev", r.PeerIf)
			if strings.Contains(out, "prog/xdp") {
				t.Errorf("XDP program left on %s after Close:\n%s", r.PeerIf, out)
			}
			out, _ = r.Run(r.PeerNS, "tc", "qdisc", "show", "dev", r.PeerIf)
			if strings.Contains(out, "clsact") {
				t.Errorf("clsact qdisc left on %s after Close:\n%s", r.PeerIf, out)
			}
			if got := udpFlow(t, r.PeerNS, r.StackNS, netip.AddrPortFrom(r.KernelAddr4, 5004), 100); got != 100 {
				t.Errorf("%d of 100 datagrams arrived after Close", got)
			}
		})
	}
}

// The clsact path refuses an interface that has a clsact qdisc already
// (it would remove it, with its filters, on Close) and leaves it there.
func TestClsactKeepsExistingQdisc(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	if _, err := r.Run(r.PeerNS, "tc", "qdisc", "add", "dev", r.PeerIf, "clsact"); err != nil {
		t.Fatal(err)
	}
	d, err := AttachWith(r.PeerNS, r.PeerIf, Options{Clsact: true})
	if !errors.Is(err, unix.EEXIST) {
		if d != nil {
			d.Close()
		}
		t.Fatalf("AttachWith on an interface with a clsact qdisc: %v, want EEXIST", err)
	}
	out, _ := r.Run(r.PeerNS, "tc", "qdisc", "show", "dev", r.PeerIf)
	if !strings.Contains(out, "clsact") {
		t.Errorf("the existing clsact qdisc is gone after the failed attach:\n%s", out)
	}
	out, _ = r.Run(r.PeerNS, "ip", "-d", "link", "show", "dev", r.PeerIf)
	if strings.Contains(out, "prog/xdp") {
		t.Errorf("XDP program left on %s after the failed attach:\n%s", r.PeerIf, out)
	}
}
