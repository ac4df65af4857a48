package core_test

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
)

// TestJumboRig runs the echo example on a veth rig whose two ends have MTU
// 9000, in copy mode: the port's MTU is the interface's, so
// multi_buffer=auto binds the queue with AF_XDP multi-buffer, and
// 9014-byte frames cross the rig as chains of UMEM frames both ways. A
// TCP stream of 64 MiB from the kernel in the peer namespace must come
// back whole over IPv4 and IPv6, and the stack's frames must be jumbo
// frames. It skips, with the kernel's answer, only where the kernel or
// veth refuses multi-buffer.
//
// Further runs at MTU 9000 have gVisor hand the link packets of up to 64
// KiB (net.inet.tcp.gso=1), which the endpoint cuts into chains, and ask
// the kernel to complete each chain's TCP checksum (tx_checksum=on).
//
// At MTU 9000 and 1500 alike it also echoes the stream, from the same
// client, off the kernel's own stack in the stack namespace (echo -kernel
// on the same CPU as the lcore), and logs both rates (-v): a figure, not
// an assertion.
func TestJumboRig(t *testing.T) {
	rigtest.RequireRoot(t)
	bin := rigtest.Build(t, "./examples/echo")
	for _, tc := range []struct {
		mtu       int
		gso, csum bool
	}{{9000, false, false}, {9000, true, false}, {9000, false, true}, {1500, false, false}} {
		mtu := tc.mtu
		name := fmt.Sprintf("mtu=%d", mtu)
		extra := []string{"zerocopy=off"}
		if tc.csum {
			// The checksum request on a chain's first buffer covers
			// the whole frame (AF_XDP TX metadata, Linux 6.8).
			name += "/tx_checksum"
			extra = append(extra, "tx_checksum=on")
		}
		if tc.gso {
			// GSO's frames of MSS bytes span several buffers too.
			name += "/gso"
			extra = append(extra, "[sysctl]", "net.inet.tcp.gso=1")
		}
		t.Run(name, func(t *testing.T) {
			r := rigtest.New(t, rig.Options{})
			if mtu != 1500 {
				for _, e := range [][2]string{{r.StackNS, r.StackIf}, {r.PeerNS, r.PeerIf}} {
					if _, err := r.Run(e[0], "ip", "link", "set", "dev", e[1], "mtu", strconv.Itoa(mtu)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tc.csum && !kernelAtLeast(6, 8) {
				t.Skip("AF_XDP TX metadata needs Linux 6.8")
			}
			p, err := rigtest.StartProc("echoing", 20*time.Second, bin, "-c", rigtest.Config(t, r, extra...))
			if p != nil {
				t.Cleanup(func() { p.Stop(5 * time.Second) })
			}
			if err != nil {
				if mtu > 1500 && strings.Contains(err.Error(), "multi-buffer") && strings.Contains(err.Error(), "not supported") {
					t.Skipf("the kernel refuses AF_XDP multi-buffer on veth: %v", err)
				}
				t.Fatal(err)
			}
			if mtu > 1500 {
				if _, err := p.WaitLine("multi-buffer true", time.Second); err != nil {
					t.Errorf("the queue is not multi-buffer at MTU %d: %v\n%s", mtu, err, p.Output())
				}
			}
			k, err := rigtest.StartProc("echoing", 20*time.Second, "ip", "netns", "exec", r.StackNS, bin, "-kernel", "-cpu", "0")
			if k != nil {
				t.Cleanup(func() { k.Stop(5 * time.Second) })
			}
			if err != nil {
				t.Fatal(err)
			}

			const size = 64 << 20
			rate := map[string]float64{}
			for _, target := range []struct {
				name string
				addr netip.Addr
			}{{"xstack", r.StackAddr4}, {"xstack", r.StackAddr6}, {"kernel", r.KernelAddr4}} {
				var c net.Conn
				if err := netns.Do(r.PeerNS, func() (err error) {
					c, err = net.DialTimeout("tcp", netip.AddrPortFrom(target.addr, 7).String(), 10*time.Second)
					return err
				}); err != nil {
					t.Fatalf("dial %s: %v", target.addr, err)
				}
				c.SetDeadline(time.Now().Add(120 * time.Second))
				start := time.Now()
				err := rigtest.EchoBulk(c.(*net.TCPConn), size, 1, 0, nil)
				d := time.Since(start)
				c.Close()
				if err != nil {
					t.Fatalf("echo of %d bytes over %s (%s): %v", size, target.addr, target.name, err)
				}
				if target.addr.Is4() {
					// Bytes each way: the stream goes there and back.
					rate[target.name] = float64(size) * 8 / d.Seconds() / 1e9
				}
			}
			cs := p.Counters(t)
			t.Logf("%s, echo of %d MiB each way over IPv4, one core: xstack %.2f Gbit/s, kernel %.2f Gbit/s (ratio %.2f); xstack's frames: %d sent (%d bytes on average), %d received (%d bytes on average)",
				name, size>>20, rate["xstack"], rate["kernel"], rate["xstack"]/rate["kernel"],
				cs["nic.tx_frames"], cs["nic.tx_bytes"]/max(cs["nic.tx_frames"], 1), cs["nic.rx_frames"], cs["nic.rx_bytes"]/max(cs["nic.rx_frames"], 1))
			for _, name := range []string{"link.rx_bad_checksum", "link.rx_malformed", "link.tx_dropped", "nic.tx_dropped"} {
				if cs[name] != 0 {
					t.Errorf("%s %d", name, cs[name])
				}
			}
			if tc.csum && cs["nic.tx_csum_offload"] == 0 {
				t.Errorf("no frame sent with a checksum request (nic.tx_csum_offload 0) with tx_checksum=on")
			}
			if tc.gso && cs["link.gso_packets"] == 0 {
				t.Errorf("no packet cut by GSO (link.gso_packets 0) with net.inet.tcp.gso=1")
			}
			if mtu > 1500 {
				// A frame of the MTU spans 5 lent buffers; the stream's
				// frames are nearly all full-sized.
				if avg := cs["nic.tx_bytes"] / max(cs["nic.tx_frames"], 1); avg <= 2048 {
					t.Errorf("xstack's frames average %d bytes at MTU %d: no jumbo frames sent", avg, mtu)
				}
				if avg := cs["nic.rx_bytes"] / max(cs["nic.rx_frames"], 1); avg <= 2048 {
					t.Errorf("xstack's received frames average %d bytes at MTU %d: no jumbo frames received", avg, mtu)
				}
			}
		})
	}
}

// kernelAtLeast reports whether the running kernel is major.minor or later.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	var ma, mi int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi)
	return ma > major || ma == major && mi >= minor
}

// TestJumboRigLcores runs the echo example on two lcores (a process each,
// through tools/launch) of a two-queue veth rig at MTU 9000: with a
// hand-off between the lcores, the loops join each frame's buffers before
// steering, and the hand-off rings hold frames of the MTU. Four TCP streams of 16 MiB from the peer's
// kernel, over IPv4 and IPv6, which veth spreads over the two queues, must
// come back whole, and both lcores must have received jumbo frames.
func TestJumboRigLcores(t *testing.T) {
	rigtest.RequireRoot(t)
	bin := rigtest.Build(t, "./examples/echo")
	r := rigtest.New(t, rig.Options{Queues: 2})
	for _, e := range [][2]string{{r.StackNS, r.StackIf}, {r.PeerNS, r.PeerIf}} {
		if _, err := r.Run(e[0], "ip", "link", "set", "dev", e[1], "mtu", "9000"); err != nil {
			t.Fatal(err)
		}
	}
	launch := rigtest.Build(t, "./tools/launch")
	p, err := rigtest.StartProc("echoing", 20*time.Second, launch, "-c", rigtest.ConfigLcores(t, r, 3, "process", "zerocopy=off"), "--", bin)
	if p != nil {
		t.Cleanup(func() { p.Stop(5 * time.Second) })
	}
	if err != nil {
		if strings.Contains(err.Error(), "multi-buffer") && strings.Contains(err.Error(), "not supported") {
			t.Skipf("the kernel refuses AF_XDP multi-buffer on veth: %v", err)
		}
		t.Fatal(err)
	}
	if _, err := p.WaitLines("echoing", 2, 20*time.Second); err != nil {
		t.Fatalf("second lcore: %v\n%s", err, p.Output())
	}
	const size, streams = 16 << 20, 4
	errs := make(chan error, streams)
	for i := range streams {
		addr := r.StackAddr4
		if i%2 == 1 {
			addr = r.StackAddr6
		}
		go func() {
			var c net.Conn
			if err := netns.Do(r.PeerNS, func() (err error) {
				c, err = net.DialTimeout("tcp", netip.AddrPortFrom(addr, 7).String(), 10*time.Second)
				return err
			}); err != nil {
				errs <- fmt.Errorf("dial %s: %w", addr, err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(120 * time.Second))
			if err := rigtest.EchoBulk(c.(*net.TCPConn), size, uint64(i+1), 0, nil); err != nil {
				errs <- fmt.Errorf("stream %d over %s: %w", i, addr, err)
				return
			}
			errs <- nil
		}()
	}
	for range streams {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, lc := range p.CountersAll(t, 2) {
		cs := lc.Counters
		t.Logf("lcore %d: %d frames received (%d bytes on average), %d sent, %d handed out, %d in", lc.Lcore,
			cs["nic.rx_frames"], cs["nic.rx_bytes"]/max(cs["nic.rx_frames"], 1), cs["nic.tx_frames"], cs["steer.handed_out"], cs["steer.handed_in"])
		for _, name := range []string{"link.rx_bad_checksum", "link.rx_malformed", "link.tx_dropped", "nic.tx_dropped"} {
			if cs[name] != 0 {
				t.Errorf("lcore %d: %s %d", lc.Lcore, name, cs[name])
			}
		}
		if avg := cs["nic.rx_bytes"] / max(cs["nic.rx_frames"], 1); avg <= 2048 {
			t.Errorf("lcore %d: received frames average %d bytes: no jumbo frames", lc.Lcore, avg)
		}
	}
}
