package rig_test

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
	"github.com/xstack/xstack/internal/xstest"
)

func TestUpDown(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	// The two kernels reach each other over the veth.
	if out, err := r.Run(r.PeerNS, "ping", "-c1", "-W2", r.KernelAddr4.String()); err != nil {
		t.Fatalf("ping kernel side: %v\n%s", err, out)
	}
	if out, err := r.Run(r.PeerNS, "ping", "-6", "-c1", "-W2", r.KernelAddr6.String()); err != nil {
		t.Fatalf("ping6 kernel side: %v\n%s", err, out)
	}
	out, err := r.Run(r.PeerNS, "ethtool", "-k", r.PeerIf)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "tx-checksumming: off") {
		t.Errorf("peer tx checksumming not off:\n%s", out)
	}
	if err := r.Down(); err != nil {
		t.Fatal(err)
	}
	if netns.Exists(r.StackNS) || netns.Exists(r.PeerNS) {
		t.Fatal("namespaces left after Down")
	}
}

// TestReceiverRx checks the NIC-like mode: threaded NAPI on both veth ends,
// each kthread pinned to its side's CPU at SCHED_FIFO, GRO on both, TSO off on the stack
// side, and traffic both ways going through both kthreads (each is woken
// by the frames its end receives). Down removes the kthreads with the
// veth pair.
func TestReceiverRx(t *testing.T) {
	rigtest.RequireRoot(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs")
	}
	r := rigtest.New(t, rig.Options{RxCPU: rig.RxReceiver, StackCPU: 0, PeerCPU: 1})
	ts, err := r.PinNAPI()
	if err != nil {
		t.Fatal(err)
	}
	cpus := map[string]int{r.StackIf: 0, r.PeerIf: 1}
	seen := map[string]bool{}
	for _, th := range ts {
		seen[th.Ifname] = true
		if th.CPU != cpus[th.Ifname] {
			t.Errorf("%+v: pinned to CPU %d, want %d", th, th.CPU, cpus[th.Ifname])
		}
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(th.PID, &set); err != nil || set.Count() != 1 || !set.IsSet(cpus[th.Ifname]) {
			t.Errorf("%+v: affinity %v (%v)", th, set, err)
		}
		if a, err := unix.SchedGetAttr(th.PID, 0); err != nil || a.Policy != unix.SCHED_FIFO || a.Priority == 0 {
			t.Errorf("%+v: scheduling %+v (%v), want SCHED_FIFO", th, a, err)
		}
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", th.PID))
		if want := fmt.Sprintf("napi/%s-%d", th.Ifname, th.ID); err != nil || strings.TrimSpace(string(comm)) != want {
			t.Errorf("kthread %d is %q (%v), want %s", th.PID, comm, err, want)
		}
	}
	if !seen[r.StackIf] || !seen[r.PeerIf] {
		t.Fatalf("NAPI kthreads %+v: want both %s and %s", ts, r.StackIf, r.PeerIf)
	}
	for _, e := range []struct{ ns, ifname, want string }{
		{r.StackNS, r.StackIf, "generic-receive-offload: on"},
		{r.StackNS, r.StackIf, "tx-tcp-segmentation: off"},
		{r.PeerNS, r.PeerIf, "generic-receive-offload: on"},
	} {
		out, err := r.Run(e.ns, "ethtool", "-k", e.ifname)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, e.want) {
			t.Errorf("%s: no %q in ethtool -k", e.ifname, e.want)
		}
	}

	switches := func(pid int) int {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for l := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				c, _ := strconv.Atoi(strings.TrimSpace(v))
				n += c
			}
		}
		return n
	}
	before := map[int]int{}
	for _, th := range ts {
		before[th.PID] = switches(th.PID)
	}
	if out, err := r.Run(r.PeerNS, "ping", "-c20", "-i0.01", "-W2", r.KernelAddr4.String()); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	for _, th := range ts {
		if n := switches(th.PID); n <= before[th.PID] {
			t.Errorf("%s's NAPI kthread %d was not woken by 20 pings (%d context switches before and after)", th.Ifname, th.PID, n)
		}
	}

	if err := r.Down(); err != nil {
		t.Fatal(err)
	}
	// Namespaces are freed asynchronously: wait for the kthreads to go.
	for _, th := range ts {
		err := xstest.Until(10*time.Second, func() error {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d", th.PID)); !errors.Is(err, os.ErrNotExist) {
				return errors.New("still runs")
			}
			return nil
		})
		if err != nil {
			t.Errorf("NAPI kthread %d of %s still runs after Down", th.PID, th.Ifname)
		}
	}
}

func TestParseRxCPU(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want rig.RxCPU
		ok   bool
	}{{"", rig.RxSender, true}, {"sender", rig.RxSender, true}, {"receiver", rig.RxReceiver, true}, {"nic", "", false}} {
		got, err := rig.ParseRxCPU(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseRxCPU(%q) = %q, %v", tc.in, got, err)
		}
	}
}
