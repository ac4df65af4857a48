package nic

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rigtest"
	"github.com/xstack/xstack/internal/xstest"
)

// TestXDPProgramClassifies runs the program's classifier on crafted frames
// with BPF_PROG_TEST_RUN: XDP_TX stands for "redirect to the stack".
func TestXDPProgramClassifies(t *testing.T) {
	rigtest.RequireRoot(t)
	const redirect, pass = xdpTx, xdpPass
	addr4 := netip.MustParseAddr("198.18.0.1")
	other4 := netip.MustParseAddr("198.18.0.2")
	addr6 := netip.MustParseAddr("2001:2::1")
	other6 := netip.MustParseAddr("2001:2::2")
	snm6 := netip.MustParseAddr("ff02::1:ff00:1") // solicited-node of addr6
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}

	a4, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 1, MaxEntries: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer a4.Close()
	a6, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 16, ValueSize: 1, MaxEntries: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer a6.Close()
	if err := a4.Put(addr4.AsSlice(), uint8(1)); err != nil {
		t.Fatal(err)
	}
	if err := a6.Put(addr6.AsSlice(), uint8(1)); err != nil {
		t.Fatal(err)
	}

	udp4 := udp4Frame(mac, mac, other4, addr4, []byte("x"))
	tests := []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"ipv4 to stack", udp4, redirect},
		{"ipv4 to other", udp4Frame(mac, mac, addr4, other4, []byte("x")), pass},
		{"ipv4 truncated header", udp4[:14+19], pass},
		{"arp for stack", arpRequest(mac, other4, addr4), redirect},
		{"arp for other", arpRequest(mac, addr4, other4), pass},
		{"arp truncated", arpRequest(mac, other4, addr4)[:41], pass},
		{"ipv6 to stack", ipv6Frame(mac, mac, other6, addr6, 17, make([]byte, 8)), redirect},
		{"ipv6 to other", ipv6Frame(mac, mac, addr6, other6, 17, make([]byte, 8)), pass},
		{"ipv6 truncated", ipv6Frame(mac, mac, other6, addr6, 17, nil)[:53], pass},
		{"neighbor solicitation for stack", ndFrame(mac, other6, snm6, addr6, 135), redirect},
		{"neighbor advertisement for stack", ndFrame(mac, other6, netip.MustParseAddr("ff02::1"), addr6, 136), redirect},
		{"neighbor solicitation for other", ndFrame(mac, addr6, snm6, other6, 135), pass},
		{"router solicitation", ndFrame(mac, other6, netip.MustParseAddr("ff02::2"), addr6, 133), pass},
		{"neighbor solicitation truncated", ndFrame(mac, other6, snm6, addr6, 135)[:77], pass},
		{"other ethertype", ethFrame(mac, mac, 0x88b5, make([]byte, 46)), pass},
		{"ethernet header only", ethFrame(mac, mac, 0x0800, nil), pass},
	}

	load := func(what string, passToKernel bool) *ebpf.Program {
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
			Type: ebpf.XDP, License: "Dual MIT/GPL",
			Instructions: xdpProgram(-1, a4.FD(), a6.FD(), passToKernel, mac),
		})
		if err != nil {
			t.Fatalf("load %s: %v", what, err)
		}
		t.Cleanup(func() { prog.Close() })
		return prog
	}
	prog := load("classifier", true)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := prog.Run(&ebpf.RunOptions{Data: tc.frame})
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("verdict = %d, want %d (2 pass, 3 redirect)", got, tc.want)
			}
		})
	}

	all := load("take-all program", false)
	for _, tc := range tests {
		if got, err := all.Run(&ebpf.RunOptions{Data: tc.frame}); err != nil || got != redirect {
			t.Errorf("PassToKernel=false: %s: verdict %d, %v; want %d", tc.name, got, err, redirect)
		}
	}
}

// rxUntil busy-polls q until match accepts a frame or the timeout passes.
func rxUntil(t *testing.T, q *XSKQueue, timeout time.Duration, match func([]byte) bool) bool {
	t.Helper()
	frames := make([][]byte, 64)
	return xstest.Until(timeout, func() error {
		if err := q.Wait(50 * time.Millisecond); err != nil {
			t.Fatalf("Wait: %v", err)
		}
		n, err := q.Rx(frames)
		if err != nil {
			t.Fatalf("Rx: %v", err)
		}
		for _, f := range frames[:n] {
			if match(f) {
				return nil
			}
		}
		return errNoFrame
	}) == nil
}

func TestXSKVeth(t *testing.T) {
	r := newRig(t)
	p, q := r.openPort(t, "auto")
	t.Logf("XDP mode %s, xsk mode %s", p.Mode(), q.Mode())
	if !r.xdpAttached(t) {
		t.Fatal("no XDP program on the interface after OpenPort")
	}
	if !bytes.Equal(q.HardwareAddr(), r.StackMAC) || q.MTU() != 1500 {
		t.Errorf("HardwareAddr %v MTU %d, want %v 1500", q.HardwareAddr(), q.MTU(), r.StackMAC)
	}
	peer := r.peerSocket(t)

	t.Run("rx arp and ipv4 for the stack", func(t *testing.T) {
		arp := arpRequest(r.PeerMAC, r.PeerAddr4, r.StackAddr4)
		peer.send(t, arp)
		if !rxUntil(t, q, 2*time.Second, func(f []byte) bool { return bytes.Equal(f, arp) }) {
			t.Fatal("ARP request for the stack address did not reach the xsk")
		}
		udp := udp4Frame(r.StackMAC, r.PeerMAC, r.PeerAddr4, r.StackAddr4, []byte("to-the-stack"))
		peer.send(t, udp)
		if !rxUntil(t, q, 2*time.Second, func(f []byte) bool { return bytes.Equal(f, udp) }) {
			t.Fatal("IPv4 frame for the stack address did not reach the xsk")
		}
	})

	t.Run("tx reaches the peer", func(t *testing.T) {
		marker := []byte("xstack-tx-marker")
		frame := ethFrame(r.PeerMAC, r.StackMAC, 0x88b5, append(marker, make([]byte, 40)...))
		n, err := q.Tx([][]byte{frame})
		if err != nil || n != 1 {
			t.Fatalf("Tx = %d, %v", n, err)
		}
		got := peer.recvMatching(t, 2*time.Second, hasPayload(marker))
		if !bytes.Equal(got, frame) {
			t.Fatalf("peer received %x, want %x", got, frame)
		}
		st := q.Stats()
		t.Logf("stats %+v", st)
		if st.TxFrames < 1 || st.RxFrames < 2 {
			t.Errorf("stats %+v: want TxFrames>=1 RxFrames>=2", st)
		}
	})

	t.Run("tx built in UMEM reaches the peer", func(t *testing.T) {
		marker := []byte("xstack-tx-in-umem")
		frame := ethFrame(r.PeerMAC, r.StackMAC, 0x88b5, append(marker, make([]byte, 40)...))
		bufs := make([][]byte, 3)
		if n := q.TxReserve(bufs); n != 3 {
			t.Fatalf("TxReserve lent %d, want 3", n)
		}
		if st := q.Stats(); st.UMEMTxLent != 3 {
			t.Errorf("UMEMTxLent %d with 3 buffers lent", st.UMEMTxLent)
		}
		for i, b := range bufs {
			if want := 2048 - int(q.txMeta); len(b) != 0 || cap(b) != want {
				t.Fatalf("buffer %d: len %d cap %d, want 0 and %d (the frame size less the TX metadata)", i, len(b), cap(b), want)
			}
		}
		bufs[0] = append(bufs[0], frame...)
		if n, err := q.TxSubmit(bufs[:1]); n != 1 || err != nil {
			t.Fatalf("TxSubmit = %d, %v", n, err)
		}
		if err := q.TxRelease(bufs[1:]); err != nil {
			t.Fatal(err)
		}
		got := peer.recvMatching(t, 2*time.Second, hasPayload(marker))
		if !bytes.Equal(got, frame) {
			t.Fatalf("peer received %x, want %x", got, frame)
		}
		st := q.Stats()
		checkUMEM(t, st)
		if st.UMEMTxLent != 0 {
			t.Errorf("UMEMTxLent %d after every buffer came back", st.UMEMTxLent)
		}
		// Given back twice, or not the queue's: refused, not sent.
		if err := q.TxRelease(bufs[1:2]); err == nil {
			t.Error("TxRelease of a buffer given back already: no error")
		}
		if n, err := q.TxSubmit([][]byte{frame}); n != 0 || err == nil {
			t.Errorf("TxSubmit of the caller's own buffer = %d, %v; want 0 and an error", n, err)
		}
		checkUMEM(t, q.Stats())
	})

	t.Run("tx budget", func(t *testing.T) {
		// XDP_MAX_TX_SKB_BUDGET is in Linux 6.17 and later.
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			t.Fatal(err)
		}
		var major, minor int
		fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor)
		want := uint64(kernelTxBatch)
		if major > 6 || major == 6 && minor >= 17 {
			want = 1024 // the TX ring of openPort
		}
		if st := q.Stats(); st.TxBudget != want {
			t.Errorf("TxBudget %d on Linux %d.%d, want %d", st.TxBudget, major, minor, want)
		}
	})

	t.Run("other traffic reaches the kernel", func(t *testing.T) {
		out, err := exec.Command("ip", "netns", "exec", r.PeerNS, "ping", "-c", "1", "-W", "2", r.KernelAddr4.String()).CombinedOutput()
		if err != nil {
			t.Fatalf("ping %v (kernel address on the XDP interface): %v\n%s", r.KernelAddr4, err, out)
		}
	})

	t.Run("allocations", func(t *testing.T) {
		frames := make([][]byte, 64)
		tx := [][]byte{ethFrame(r.PeerMAC, r.StackMAC, 0x88b5, make([]byte, 46))}
		if a := testing.AllocsPerRun(1000, func() { q.Rx(frames) }); a != 0 {
			t.Errorf("Rx allocates %v times per call", a)
		}
		if a := testing.AllocsPerRun(1000, func() { q.Tx(tx) }); a != 0 {
			t.Errorf("Tx allocates %v times per call", a)
		}
		bufs := make([][]byte, 2)
		if a := testing.AllocsPerRun(1000, func() {
			n := q.TxReserve(bufs)
			for i := range n {
				bufs[i] = append(bufs[i], tx[0]...)
			}
			q.TxSubmit(bufs[:n-1])
			q.TxRelease(bufs[n-1 : n])
		}); a != 0 {
			t.Errorf("TxReserve+TxSubmit+TxRelease allocate %v times per call", a)
		}
	})

	t.Run("close", func(t *testing.T) {
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		if err := q.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if _, err := q.Rx(make([][]byte, 1)); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Rx after Close = %v, want net.ErrClosed", err)
		}
		if _, err := q.Tx([][]byte{{1}}); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Tx after Close = %v, want net.ErrClosed", err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		if r.xdpAttached(t) {
			t.Fatal("XDP program still attached after Port.Close")
		}
	})
}

func TestXSKZeroCopyOnNotSupported(t *testing.T) {
	r := newRig(t)
	err := netns.Do(r.StackNS, func() error {
		q, err := Open(r.StackIf, QueueConfig{ZeroCopy: "on"})
		if err == nil {
			q.Close()
		}
		return err
	})
	if err == nil {
		t.Skip("veth here supports zero-copy")
	}
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "veth") || !strings.Contains(err.Error(), r.StackIf) {
		t.Fatalf("zerocopy=on on veth: %v; want ErrNotSupported naming the driver and interface", err)
	}
	t.Log(err)
}

func TestXDPModes(t *testing.T) {
	r := newRig(t)
	for _, mode := range []XDPMode{XDPNative, XDPGeneric} {
		t.Run(string(mode), func(t *testing.T) {
			var p *Port
			err := netns.Do(r.StackNS, func() (err error) {
				p, err = OpenPort(PortConfig{Ifname: r.StackIf, XDPMode: mode, PassToKernel: true})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if p.Mode() != mode {
				t.Errorf("Mode() = %q, want %q", p.Mode(), mode)
			}
			if !r.xdpAttached(t) {
				t.Error("no XDP program attached")
			}
			p.Close()
			if r.xdpAttached(t) {
				t.Error("XDP program left after Close")
			}
		})
	}
	err := netns.Do(r.StackNS, func() error {
		_, err := OpenPort(PortConfig{Ifname: "xsnnosuchif", XDPMode: "auto"})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "xsnnosuchif") {
		t.Errorf("OpenPort on a missing interface: %v, want an error naming it", err)
	}
}

const crashEnv = "XSTACK_NIC_CRASH_HELPER"

// TestCrashHelper is the subprocess of TestCrashDetaches: it attaches the
// program, says so and waits to be killed.
func TestCrashHelper(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("subprocess of TestCrashDetaches")
	}
	ns, ifname, _ := strings.Cut(spec, ":")
	err := netns.Do(ns, func() error {
		p, err := OpenPort(PortConfig{Ifname: ifname, PassToKernel: true})
		if err != nil {
			return err
		}
		_, err = p.OpenQueue(QueueConfig{Frames: 256, RxRing: 64, TxRing: 64})
		return err
	})
	if err != nil {
		os.Stdout.WriteString("error: " + err.Error() + "\n")
		os.Exit(1)
	}
	os.Stdout.WriteString("ready\n")
	time.Sleep(time.Minute)
	os.Exit(2)
}

func TestCrashDetaches(t *testing.T) {
	r := newRig(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+r.StackNS+":"+r.StackIf)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		t.Fatalf("helper: %q %v", line, err)
	}
	if !r.xdpAttached(t) {
		t.Fatal("helper reported ready but no XDP program is attached")
	}
	cmd.Process.Signal(os.Kill)
	cmd.Wait()
	// The link is released with the last fd; that happens as the process
	// is reaped, but give the kernel a moment.
	rigtest.WaitDetached(t, r.Rig, time.Second, "after its process was killed")
}

// TestXSKNoHandoff: a queue whose waits and kicks are raw system calls
// (QueueConfig.NoHandoff) receives, sends, times its waits out, and is
// woken from a wait without a deadline by Close.
func TestXSKNoHandoff(t *testing.T) {
	r := newRig(t)
	_, q := r.openPortConfig(t, "auto", QueueConfig{Queue: 0, Frames: 4096, RxRing: 1024, TxRing: 1024, NoHandoff: true})
	peer := r.peerSocket(t)
	udp := udp4Frame(r.StackMAC, r.PeerMAC, r.PeerAddr4, r.StackAddr4, []byte("no-handoff"))
	peer.send(t, udp)
	if !rxUntil(t, q, 2*time.Second, func(f []byte) bool { return bytes.Equal(f, udp) }) {
		t.Fatal("the frame for the stack did not reach the xsk")
	}
	marker := []byte("no-handoff-tx")
	frame := ethFrame(r.PeerMAC, r.StackMAC, 0x88b5, append(marker, make([]byte, 40)...))
	if n, err := q.Tx([][]byte{frame}); err != nil || n != 1 {
		t.Fatalf("Tx = %d, %v", n, err)
	}
	if got := peer.recvMatching(t, 2*time.Second, hasPayload(marker)); !bytes.Equal(got, frame) {
		t.Fatalf("peer received %x, want %x", got, frame)
	}
	if err := q.Wait(time.Millisecond); err != nil {
		t.Fatalf("Wait with nothing to receive: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		var err error
		for err == nil {
			err = q.Wait(-1) // a signal may end it early: wait again
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Wait ended by Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end a Wait without a deadline")
	}
}

// TestXDPProgramAnswersARPOnOrphanedQueue runs the full program with an
// empty XSKMAP, as on a queue whose lcore process died: an ARP request for
// the stack comes back as the stack's reply (XDP_TX); anything else for the
// stack, and requests for other addresses or malformed ones, go to the
// kernel unchanged.
func TestXDPProgramAnswersARPOnOrphanedQueue(t *testing.T) {
	rigtest.RequireRoot(t)
	addr4 := netip.MustParseAddr("198.18.0.1")
	peer4 := netip.MustParseAddr("198.18.0.2")
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	peerMAC := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	newMap := func(spec *ebpf.MapSpec) *ebpf.Map {
		m, err := ebpf.NewMap(spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	xsks := newMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 4})
	a4 := newMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 1, MaxEntries: 4})
	a6 := newMap(&ebpf.MapSpec{Type: ebpf.Hash, KeySize: 16, ValueSize: 1, MaxEntries: 4})
	if err := a4.Put(addr4.AsSlice(), uint8(1)); err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP, License: "Dual MIT/GPL",
		Instructions: xdpProgram(xsks.FD(), a4.FD(), a6.FD(), true, mac),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()

	run := func(frame []byte) (uint32, []byte) {
		t.Helper()
		out := make([]byte, len(frame)+256)
		got, err := prog.Run(&ebpf.RunOptions{Data: frame, DataOut: out})
		if err != nil {
			t.Fatal(err)
		}
		return got, out
	}

	req := arpRequest(peerMAC, peer4, addr4)
	req = append(req, make([]byte, 60-len(req))...) // padded as on the wire
	got, out := run(req)
	if got != xdpTx {
		t.Fatalf("ARP request for the stack on an orphaned queue: verdict %d, want %d (XDP_TX)", got, xdpTx)
	}
	want := ethFrame(peerMAC, mac, 0x0806, []byte{0, 1, 8, 0, 6, 4, 0, 2})
	want = append(want, mac...)
	want = append(want, addr4.AsSlice()...)
	want = append(want, peerMAC...)
	want = append(want, peer4.AsSlice()...)
	want = append(want, make([]byte, 60-len(want))...)
	if !bytes.Equal(out[:len(want)], want) {
		t.Errorf("reply\n got %x\nwant %x", out[:len(want)], want)
	}

	reply := append([]byte(nil), want...)
	badHType := append([]byte(nil), req...)
	badHType[15] = 6
	badLens := append([]byte(nil), req...)
	badLens[19] = 16
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"ARP request for another address", arpRequest(peerMAC, peer4, netip.MustParseAddr("198.18.0.9"))},
		{"ARP reply to the stack", reply},
		{"ARP request with another hardware type", badHType},
		{"ARP request with other address lengths", badLens},
		{"ARP request truncated", req[:41]},
		{"IPv4 to the stack", udp4Frame(mac, peerMAC, peer4, addr4, []byte("x"))},
	} {
		got, out := run(tc.frame)
		if got != xdpPass || !bytes.Equal(out[:len(tc.frame)], tc.frame) {
			t.Errorf("%s: verdict %d, frame changed %v; want %d (XDP_PASS) and the frame as it came", tc.name, got, !bytes.Equal(out[:len(tc.frame)], tc.frame), xdpPass)
		}
	}
}
