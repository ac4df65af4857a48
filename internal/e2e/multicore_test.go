package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"

	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
	"github.com/xstack/xstack/internal/xstest"
)

// startMulti runs helloworld on two lcores of a two-queue rig, in mode:
// directly in thread mode, through tools/launch in process mode.
func startMulti(t *testing.T, r *rig.Rig, mode string) (*rigtest.Proc, string) {
	t.Helper()
	hw := rigtest.Build(t, "./examples/helloworld")
	conf := rigtest.ConfigLcores(t, r, 3, mode)
	var p *rigtest.Proc
	if mode == "thread" {
		p = rigtest.Start(t, "serving on port", hw, "-c", conf)
	} else {
		launch := rigtest.Build(t, "./tools/launch")
		p = rigtest.Start(t, "serving on port", launch, "-c", conf, "--", hw)
		if _, err := p.WaitLines("serving on port", 2, 20*time.Second); err != nil {
			t.Fatalf("second lcore: %v\n%s", err, p.Output())
		}
	}
	// veth exposes no RSS key: active connections steer by port.
	if want := "steering: " + r.StackIf + ": port-encoded"; !strings.Contains(p.Output(), want) {
		t.Errorf("start-up does not say %q:\n%s", want, p.Output())
	}
	return p, conf
}

// passive opens n short connections from the peer to helloworld, workers
// at a time, and checks every response.
func passive(t *testing.T, r *rig.Rig, n, workers int) (failed int) {
	t.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	jobs := make(chan int)
	var firstErr error
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				addr := r.StackAddr4
				if i%2 == 1 {
					addr = r.StackAddr6
				}
				err := func() error {
					c, err := dial(r.PeerNS, netip.AddrPortFrom(addr, 80))
					if err != nil {
						return err
					}
					defer c.Close()
					resp, err := fetch(c, bufio.NewReader(c), true)
					if err != nil {
						return err
					}
					if !strings.Contains(string(resp), "Hello from xstack") {
						return fmt.Errorf("wrong response %q", resp)
					}
					return nil
				}()
				if err != nil {
					mu.Lock()
					failed++
					if firstErr == nil {
						firstErr = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		t.Logf("%d of %d connections failed; first: %v", failed, n, firstErr)
	}
	return failed
}

func sum(cs []rigtest.LcoreCounters, name string) (total uint64) {
	for _, c := range cs {
		total += c.Counters[name]
	}
	return total
}

func TestMultiCore(t *testing.T) {
	for _, mode := range []string{"thread", "process"} {
		t.Run(mode, func(t *testing.T) {
			r := rigtest.New(t, rig.Options{Queues: 2})
			p, _ := startMulti(t, r, mode)

			// Passive connections: each lands on the queue the peer's
			// flow hash picks and is served there.
			const n = 2000
			if failed := passive(t, r, n, 16); failed != 0 {
				t.Fatalf("%d of %d passive connections failed", failed, n)
			}
			cs := p.CountersAll(t, 2)
			for _, c := range cs {
				if c.Counters["tcp.passive_connection_openings"] == 0 {
					t.Errorf("lcore %d served no connection", c.Lcore)
				}
			}
			if got := sum(cs, "tcp.passive_connection_openings"); got != n {
				t.Errorf("the lcores opened %d passive connections in all, want exactly %d (no connection seen twice)", got, n)
			}
			for _, c := range cs {
				t.Logf("lcore %d (pid %d): %d passive connections, steer local %d, handed out %d, handed in %d, broadcasts %d",
					c.Lcore, c.Pid, c.Counters["tcp.passive_connection_openings"], c.Counters["steer.local"],
					c.Counters["steer.handed_out"], c.Counters["steer.handed_in"], c.Counters["steer.broadcasts"])
			}
			local, out := sum(cs, "steer.local"), sum(cs, "steer.handed_out")
			if pct := 100 * float64(local) / float64(local+out); pct < 99 {
				t.Errorf("passive locality %.2f%% (local %d, handed off %d), want >= 99%%", pct, local, out)
			}
			if d := sum(cs, "steer.dropped"); d != 0 {
				t.Errorf("%d frames dropped on hand-off", d)
			}

			// Active connections from both lcores to a kernel server.
			rigtest.KernelEcho(t, r.PeerNS, netip.AddrPortFrom(r.PeerAddr4, 7))
			client := rigtest.Build(t, "./examples/client")
			cconf := rigtest.ConfigLcores(t, r, 3, mode)
			p.Stop(10 * time.Second) // the client takes the interface
			args := []string{"-addr", netip.AddrPortFrom(r.PeerAddr4, 7).String(), "-bytes", "2048", "-conns", "1000", "-parallel", "32", "-counters", "-timeout", "100s"}
			var cp *rigtest.Proc
			var err error
			if mode == "thread" {
				args[5] = "2000"
				cp, err = rigtest.StartProc("ok:", 120*time.Second, client, append([]string{"-c", cconf}, args...)...)
			} else {
				// Each process keeps its lcore running after its own
				// connections are done, until both are: the other's
				// replies that land on its queue are handed over.
				launch := rigtest.Build(t, "./tools/launch")
				cp, err = rigtest.StartProc("ok:", 120*time.Second, launch, append([]string{"-c", cconf, "--", client, "-linger"}, args...)...)
				if err == nil {
					_, err = cp.WaitLines("ok:", 2, 120*time.Second)
				}
				if err == nil {
					// Both have printed their counters with "ok:".
					_, err = cp.WaitLines("xstack-counters ", 2, 10*time.Second)
				}
				if err == nil {
					cp.Cmd.Process.Signal(syscall.SIGTERM)
				}
			}
			if err != nil {
				out := ""
				if cp != nil {
					cp.Stop(5 * time.Second)
					out = cp.Output()
				}
				t.Fatalf("%v\n%s", err, out)
			}
			if err := cp.Wait(30 * time.Second); err != nil {
				t.Fatalf("client: %v\n%s", err, cp.Output())
			}
			// Every active connection was opened by one lcore, and the
			// replies that arrived on the other lcore's queue were handed
			// over to it.
			lines, err := cp.WaitLines("xstack-counters ", 2, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var opened, handed, dropped, resets uint64
			for _, line := range lines {
				c, err := rigtest.ParseCounters(line)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("client lcore %d: %d active connections, steer local %d, handed out %d, handed in %d, dropped %d, broadcast copies dropped %d",
					c.Lcore, c.Counters["tcp.active_connection_openings"], c.Counters["steer.local"],
					c.Counters["steer.handed_out"], c.Counters["steer.handed_in"],
					c.Counters["steer.dropped"], c.Counters["steer.copies_dropped"])
				if c.Counters["tcp.active_connection_openings"] == 0 {
					t.Errorf("client lcore %d opened no connection", c.Lcore)
				}
				opened += c.Counters["tcp.active_connection_openings"]
				handed += c.Counters["steer.handed_in"]
				dropped += c.Counters["steer.dropped"]
				resets += c.Counters["tcp.established_resets"]
			}
			if opened != 2000 || dropped != 0 || resets != 0 {
				t.Errorf("active: %d connections opened (want 2000), %d frames dropped on hand-off, %d resets", opened, dropped, resets)
			}
			if handed == 0 {
				t.Error("no reply was handed over between lcores: the port-encoded steering was not exercised")
			}
		})
	}
}

// TestLcoresQueuesMismatch: start-up refuses more lcores than queues, and
// fewer (a queue without an lcore would hand its flows to the kernel),
// before anything is attached.
func TestLcoresQueuesMismatch(t *testing.T) {
	hw := rigtest.Build(t, "./examples/helloworld")
	for _, tc := range []struct {
		queues, mask int
		want         string
	}{
		{1, 3, "lcore_mask: 2 lcore(s) need exactly 2 receive queue(s), but xs0 has 1: add queues"},
		{2, 1, "lcore_mask: 1 lcore(s) need exactly 1 receive queue(s), but xs0 has 2: remove queues"},
	} {
		r := rigtest.New(t, rig.Options{Queues: tc.queues})
		conf := rigtest.ConfigLcores(t, r, tc.mask, "thread")
		p, err := rigtest.StartProc("serving on port", 20*time.Second, hw, "-c", conf)
		if err == nil {
			p.Stop(5 * time.Second)
			t.Fatalf("lcore_mask %x started on a %d-queue interface", tc.mask, tc.queues)
		}
		p.Wait(10 * time.Second)
		if !strings.Contains(p.Output(), tc.want) {
			t.Errorf("lcore_mask %x on %d queues: unclear error:\n%s", tc.mask, tc.queues, p.Output())
		}
		if ok, _ := r.XDPAttached(); ok {
			t.Error("an XDP program was left attached")
		}
	}
}

// TestSecondaryKilled: in process mode, a secondary killed with SIGKILL
// takes only its own connections with it; the primary keeps serving, the
// XDP program stays attached, and a restarted secondary rejoins.
func TestSecondaryKilled(t *testing.T) {
	r := rigtest.New(t, rig.Options{Queues: 2})
	hw := rigtest.Build(t, "./examples/helloworld")
	p, conf := startMulti(t, r, "process")
	var secondary rigtest.LcoreCounters
	for _, c := range p.CountersAll(t, 2) {
		if c.Lcore == 1 {
			secondary = c
		}
	}
	if secondary.Pid == 0 {
		t.Fatal("no counters from lcore 1")
	}
	// Keep-alive connections on both lcores, opened before the kill.
	type kept struct {
		c  net.Conn
		br *bufio.Reader
	}
	var conns []kept
	for i := 0; i < 16; i++ {
		c, err := dial(r.PeerNS, netip.AddrPortFrom(r.StackAddr4, 80))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := fetch(c, br, false); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, kept{c, br})
	}
	// The stack's XDP program answers ARP on the dead lcore's queue with
	// XDP_TX; veth forwards such frames only to a peer that has an XDP
	// program of its own (veth_xdp_flush), where a NIC's wire takes them
	// always.
	peerXDPPass(t, r)
	if err := syscall.Kill(secondary.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Once the secondary is dead (a zombie or reaped), its descriptors are
	// closed: had the XDP program depended on them, it would be gone.
	xstest.WaitFor(t, 5*time.Second, "the killed secondary to exit", func() error {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", secondary.Pid))
		if err != nil || bytes.Contains(st, []byte("\nState:\tZ")) {
			return nil
		}
		return errors.New("still running")
	})
	if ok, _ := r.XDPAttached(); !ok {
		t.Fatal("the XDP program went with the secondary")
	}
	// Each kept connection either still works (it lives on the primary) or
	// fails (it lived on the secondary): never wrong data.
	alive := 0
	for i, k := range conns {
		resp, err := rigtest.HTTPGet(k.c, k.br, "/", false, time.Second)
		if err != nil {
			continue
		}
		if !strings.Contains(string(resp), "Hello from xstack") {
			t.Fatalf("connection %d after the kill: wrong data %q", i, resp)
		}
		alive++
	}
	if alive == 0 || alive == len(conns) {
		t.Errorf("%d of %d connections survived the secondary's death; want those of the primary only", alive, len(conns))
	}

	// The peer still learns the stack's address when its requests land
	// on the dead lcore's queue: the XDP program answers them. Without
	// that, a peer whose ARP hashes to that queue would lose the stack
	// for every lcore once its neighbor entry aged.
	// Transmit packet steering on the peer's end picks its transmit
	// queue, and so the stack's receive queue: queue 1 from every CPU.
	xps := func(queue int, mask string) {
		t.Helper()
		f := fmt.Sprintf("/sys/class/net/%s/queues/tx-%d/xps_cpus", r.PeerIf, queue)
		if out, err := r.Run(r.PeerNS, "sh", "-c", fmt.Sprintf("echo %s > %s", mask, f)); err != nil {
			t.Fatalf("%s: %v\n%s", f, err, out)
		}
	}
	xps(1, fmt.Sprintf("%x", uint64(1)<<runtime.NumCPU()-1))
	if out, err := r.Run(r.PeerNS, "ip", "neigh", "flush", "dev", r.PeerIf); err != nil {
		t.Fatalf("ip neigh flush: %v\n%s", err, out)
	}
	xstest.WaitFor(t, 5*time.Second, "the peer to resolve the stack's address through the dead queue", func() error {
		r.Run(r.PeerNS, "ping", "-c", "1", "-W", "1", r.StackAddr4.String())
		out, _ := r.Run(r.PeerNS, "ip", "neigh", "show", r.StackAddr4.String(), "dev", r.PeerIf)
		if !strings.Contains(out, r.StackMAC.String()) {
			return fmt.Errorf("neighbor entry %q", strings.TrimSpace(out))
		}
		return nil
	})
	xps(1, "0")

	// A new secondary joins the running primary (through the primary's
	// run directory).
	t.Setenv("XSTACK_RUN_DIR", p.RunDir)
	s2 := rigtest.Start(t, "serving on port", hw, "-c", conf, "-p", "1", "-t", "secondary")
	if failed := passive(t, r, 200, 16); failed != 0 {
		t.Fatalf("%d of 200 connections failed after the secondary rejoined", failed)
	}
	// The program stays while any process lives, and goes with the last.
	p.Stop(10 * time.Second)
	if ok, _ := r.XDPAttached(); !ok {
		t.Fatal("the XDP program went with the primary while the new secondary lives")
	}
	s2.Cmd.Process.Kill()
	s2.Wait(10 * time.Second)
	rigtest.WaitDetached(t, r, 5*time.Second, "after the last lcore process died")
}

// TestPeerMACChange: after the peer's MAC address changes, every lcore
// learns the new one (the peer asks again for the stack's address, and the
// request reaches every lcore), and connections on every lcore go on.
func TestPeerMACChange(t *testing.T) {
	r := rigtest.New(t, rig.Options{Queues: 2})
	p, _ := startMulti(t, r, "thread")
	if failed := passive(t, r, 200, 16); failed != 0 {
		t.Fatalf("%d of 200 connections failed before the change", failed)
	}
	before := p.CountersAll(t, 2)
	if out, err := r.Run(r.PeerNS, "ip", "link", "set", "dev", r.PeerIf, "address", "02:00:5e:10:00:99"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if failed := passive(t, r, 400, 16); failed != 0 {
		t.Fatalf("%d of 400 connections failed after the peer's MAC address changed", failed)
	}
	after := p.CountersAll(t, 2)
	for i := range after {
		for _, b := range before {
			if b.Lcore != after[i].Lcore {
				continue
			}
			if d := after[i].Counters["tcp.passive_connection_openings"] - b.Counters["tcp.passive_connection_openings"]; d == 0 {
				t.Errorf("lcore %d served no connection after the change", b.Lcore)
			}
		}
	}
}

// peerXDPPass attaches a program that passes every frame to the peer's end
// of the rig until the test ends.
func peerXDPPass(t *testing.T, r *rig.Rig) {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP, License: "Dual MIT/GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}, // XDP_PASS
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prog.Close() })
	var l link.Link
	if err := r.Do(r.PeerNS, func() error {
		ifi, err := net.InterfaceByName(r.PeerIf)
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: link.XDPDriverMode})
		return err
	}); err != nil {
		t.Fatalf("XDP on the peer's end: %v", err)
	}
	t.Cleanup(func() { l.Close() })
}
