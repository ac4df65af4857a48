package soak

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
	"github.com/xstack/xstack/internal/xstest"
	"github.com/xstack/xstack/stack"
)

const (
	idleConns  = 10000 // long-lived connections held through the soak
	churnRate  = 2000  // short connections per second asked for
	churnConns = 16    // goroutines making them
	soakMSL    = 500   // net.inet.tcp.msl of the soak's stack (ms): TIME-WAIT lasts 1 s
	pcapSnap   = 64
)

// soakDuration is $XSTACK_SOAK, or 30s.
func soakDuration(t *testing.T) time.Duration {
	t.Helper()
	s := os.Getenv("XSTACK_SOAK")
	if s == "" {
		return 30 * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 10*time.Second {
		t.Fatalf("XSTACK_SOAK=%q: expected a Go duration of at least 10s, such as 10m or 1h", s)
	}
	return d
}

// figures is one measurement of the stack process.
type figures struct {
	rssKB      uint64 // VmRSS, the median of a few samples
	goroutines uint64 // the go.goroutines counter
	fds        int    // /proc/<pid>/fd entries
	umem       map[string]uint64
	states     map[string]int // TCP sockets by state
}

func (f figures) String() string {
	return fmt.Sprintf("RSS %.1f MiB, %d goroutines, %d fds, umem %v, sockets %v", float64(f.rssKB)/1024, f.goroutines, f.fds, f.umem, f.states)
}

// probe measures the stack process pid through its control socket in
// runDir, taking the median RSS of samples samples 200 ms apart. It dials
// each time: the control plane closes connections idle for minutes.
func probe(t *testing.T, pid int, runDir string, samples int) figures {
	t.Helper()
	c, err := ctl.Dial(runDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var rss []uint64
	for i := 0; i < samples; i++ {
		if i > 0 {
			time.Sleep(200 * time.Millisecond)
		}
		kb, err := procStatus(pid, "VmRSS")
		if err != nil {
			t.Fatal(err)
		}
		rss = append(rss, kb)
	}
	slices.Sort(rss)
	f := figures{rssKB: rss[len(rss)/2], umem: map[string]uint64{}, states: map[string]int{}}
	var cs map[string]uint64
	if err := c.Call(ctl.OpCounters, nil, &cs); err != nil {
		t.Fatal(err)
	}
	g, ok := cs["go.goroutines"]
	if !ok {
		t.Fatal("the counters have no go.goroutines")
	}
	f.goroutines = g
	for k, v := range cs {
		if strings.HasPrefix(k, "umem.") {
			f.umem[strings.TrimPrefix(k, "umem.")] = v
		}
	}
	if f.fds, err = procFDs(pid); err != nil {
		t.Fatal(err)
	}
	var socks []stack.Socket
	if err := c.Call(ctl.OpSockets, nil, &socks); err != nil {
		t.Fatal(err)
	}
	for _, s := range socks {
		if strings.HasPrefix(s.Proto, "tcp") {
			f.states[s.State]++
		}
	}
	return f
}

// umemProblem says what is wrong with the UMEM accounting at rest, or "".
func umemProblem(u map[string]uint64) string {
	if _, ok := u["frames"]; !ok {
		return "no umem.frames counter"
	}
	if sum := u["rx_user"] + u["rx_kernel"] + u["tx_free"] + u["tx_kernel"]; sum != u["frames"] || u["tx_kernel"] != 0 {
		return fmt.Sprintf("rx_user %d + rx_kernel %d + tx_free %d + tx_kernel %d = %d, want frames %d with tx_kernel 0",
			u["rx_user"], u["rx_kernel"], u["tx_free"], u["tx_kernel"], sum, u["frames"])
	}
	return ""
}

// TestSoak: helloworld under churn (short connections at a steady rate),
// with 10,000 idle connections held throughout, pcap switched on and off
// through the control plane and the tools polled. After a warm-up and at
// the end: resident memory within 10%; once the clients have gone, the
// goroutines and file descriptors back to their start-up numbers, every
// UMEM frame accounted for, no socket left but the listeners (TIME-WAIT
// ended after 2*MSL, nothing in CLOSE-WAIT, FIN-WAIT or SYN-RCVD), and
// gVisor's reference leak check clean at exit.
func TestSoak(t *testing.T) {
	d := soakDuration(t)
	r := rigtest.New(t, rig.Options{})
	raiseNoFile(t, idleConns+4096)
	// Room for the churn's ports and the idle connections' on the peer.
	if out, err := r.Run(r.PeerNS, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	hw := rigtest.Build(t, "./examples/helloworld")
	tools := map[string]string{}
	for _, name := range []string{"netstat", "top", "ifconfig"} {
		tools[name] = rigtest.Build(t, "./tools/"+name)
	}
	pcapDir := t.TempDir()
	runDir := filepath.Join(t.TempDir(), "run")
	t.Setenv("XSTACK_RUN_DIR", runDir)
	t.Setenv("XSTACK_LEAK_CHECK", "1")
	// The collector's trace gives the live heap after each collection:
	// what resident memory cannot tell apart from garbage not yet
	// returned to the system.
	t.Setenv("GODEBUG", "gctrace=1")
	conf := rigtest.Config(t, r,
		"[pcap]", "enable=0", fmt.Sprintf("snaplen=%d", pcapSnap), "savelen=1048576", "savepath="+pcapDir,
		"[sysctl]", fmt.Sprintf("net.inet.tcp.msl=%d", soakMSL))
	p := rigtest.Start(t, "serving on port", hw, "-c", conf)
	pid := p.Cmd.Process.Pid
	time.Sleep(time.Second)
	base := probe(t, pid, runDir, 3)
	t.Logf("start: %v", base)

	// The idle connections, on IPv6; the churn uses IPv4.
	opened := time.Now()
	idle, err := openIdle(r.PeerNS, netip.AddrPortFrom(r.StackAddr6, 80), idleConns, 32)
	defer func() {
		for _, c := range idle {
			if c != nil {
				c.Close()
			}
		}
	}()
	if err != nil {
		t.Fatalf("opening %d idle connections: %v", idleConns, err)
	}
	t.Logf("%d idle connections open in %v", idleConns, time.Since(opened).Round(time.Millisecond))

	start := time.Now()
	ch := startChurn(r.PeerNS, netip.AddrPortFrom(r.StackAddr4, 80), churnConns, churnRate)
	stopBg := make(chan struct{})
	var bg sync.WaitGroup
	var (
		pcapCycles, pcapFrames, toolRuns atomic.Uint64
		toolSlow                         atomic.Uint64 // runs the loop answered too late
		bgMu                             sync.Mutex
		bgErrs                           []string
	)
	bgFail := func(format string, args ...any) {
		bgMu.Lock()
		if len(bgErrs) < 10 {
			bgErrs = append(bgErrs, fmt.Sprintf(format, args...))
		}
		bgMu.Unlock()
	}
	// pcap on for a second, off for a second, through the control plane;
	// each finished capture is read back and removed.
	bg.Add(1)
	go func() {
		defer bg.Done()
		pc, err := ctl.Dial(runDir, 0)
		if err != nil {
			bgFail("pcap: %v", err)
			return
		}
		defer pc.Close()
		for {
			select {
			case <-stopBg:
				return
			case <-time.After(time.Second):
			}
			var st stack.PcapStatus
			if err := pc.Call(ctl.OpPcapOn, ctl.PcapArgs{}, &st); err != nil || !st.Enabled {
				bgFail("pcap on: %+v, %v", st, err)
				return
			}
			time.Sleep(time.Second)
			if err := pc.Call(ctl.OpPcapOff, nil, &st); err != nil || st.Enabled {
				bgFail("pcap off: %+v, %v", st, err)
				return
			}
			n, err := checkPcapDir(pcapDir, pcapSnap)
			if err != nil {
				bgFail("pcap files: %v", err)
				return
			}
			if uint64(n) != st.Frames {
				bgFail("pcap: %d frames in the files, the capture counted %d (%d dropped)", n, st.Frames, st.Dropped)
			}
			pcapCycles.Add(1)
			pcapFrames.Add(uint64(n))
		}
	}()
	// The figures over time, ten times in the run.
	bg.Add(1)
	go func() {
		defer bg.Done()
		every := max(d/10, 5*time.Second)
		lastRun, lastWait, _ := schedTimes(pid)
		var lastPasses uint64
		for {
			select {
			case <-stopBg:
				return
			case <-time.After(every):
			}
			kb, _ := procStatus(pid, "VmRSS")
			// CPU time against time spent runnable but waiting for a
			// CPU: on a shared machine, a slow stack may be a starved one.
			run, wait, _ := schedTimes(pid)
			// The loop's progress, read by the signal handler's
			// goroutine rather than the loop (SIGUSR1), so that a loop
			// that stalls shows as passes that stop.
			passes := "?"
			if cs, err := p.CountersErr(); err != nil {
				bgFail("counters by SIGUSR1: %v", err)
			} else {
				passes = fmt.Sprint(cs["loop.passes"] - lastPasses)
				if cs["loop.passes"] == lastPasses {
					bgFail("the loop ran no pass in %v", every)
				}
				lastPasses = cs["loop.passes"]
			}
			t.Logf("%v: RSS %.1f MiB, live heap %d MB after the last collection, %d connections made; %s loop passes; stack on CPU %v, waiting for a CPU %v in the last %v",
				time.Since(start).Round(time.Second), float64(kb)/1024, liveHeapMB(p.Output()), ch.made.Load(), passes,
				(run - lastRun).Round(time.Millisecond), (wait - lastWait).Round(time.Millisecond), every)
			lastRun, lastWait = run, wait
		}
	}()
	// The tools, one every 300 ms.
	bg.Add(1)
	go func() {
		defer bg.Done()
		runs := [][]string{
			{"netstat", "-an"}, {"top", "-n", "1", "-d", "0.1"}, {"ifconfig"},
			{"netstat", "-s"}, {"netstat", "-an", "--json"}, {"top", "--json", "-n", "1", "-d", "0.1"},
		}
		for i := 0; ; i++ {
			select {
			case <-stopBg:
				return
			case <-time.After(300 * time.Millisecond):
			}
			run := runs[i%len(runs)]
			out, err := exec.Command(tools[run[0]], append([]string{"--run-dir", runDir}, run[1:]...)...).CombinedOutput()
			toolRuns.Add(1)
			if err != nil && strings.Contains(string(out), "did not run the request within") {
				// A loop starved of CPU by other work on the machine;
				// a loop that stopped shows in the passes above.
				toolSlow.Add(1)
				continue
			}
			if err != nil || len(out) == 0 {
				bgFail("%s: %v\n%.500s", strings.Join(run, " "), err, out)
			}
		}
	}()

	// The heap reaches its steady size (the collector's goal, about twice
	// the live heap) in the first quarter minute or so; resident memory
	// follows it.
	warmup := min(max(d/3, 15*time.Second), d/2, 5*time.Minute)
	time.Sleep(warmup)
	warm := probe(t, pid, runDir, 5)
	warmHeap := liveHeapMB(p.Output())
	warmMade := ch.made.Load()
	t.Logf("after the %v warm-up (%d connections made): %v", warmup, warmMade, warm)
	time.Sleep(time.Until(start.Add(d)))
	end := probe(t, pid, runDir, 5)
	endHeap := liveHeapMB(p.Output())
	elapsed := time.Since(start)
	made := ch.made.Load()
	t.Logf("at the end (%v, %d connections made): %v", elapsed.Round(time.Second), made, end)
	close(stopBg)
	bg.Wait()
	churnErr := ch.halt()
	made, failed := ch.made.Load(), ch.failed.Load()

	// The idle connections lived through it all.
	if err := parallel(len(idle), 32, func(i int) error {
		if err := get(idle[i], bufio.NewReader(idle[i]), false); err != nil {
			return fmt.Errorf("idle connection %d after the soak: %w", i, err)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	for i, c := range idle {
		c.Close()
		idle[i] = nil
	}

	// Quiescence: every connection gone (TIME-WAIT lasts 2*MSL), and
	// with them their goroutines, descriptors and frames.
	closed := time.Now()
	var after figures
	var settled time.Duration
	xstest.Until(30*time.Second, func() error {
		after = probe(t, pid, runDir, 1)
		busy := 0
		for st, n := range after.states {
			if st != "LISTEN" {
				busy += n
			}
		}
		if busy != 0 || after.goroutines != base.goroutines || after.fds != base.fds || umemProblem(after.umem) != "" {
			return errors.New("not quiet")
		}
		settled = time.Since(closed)
		return nil
	})
	t.Logf("after the clients closed: %v", after)
	for st, n := range after.states {
		if st != "LISTEN" {
			t.Errorf("%d sockets still in %s %v after the clients closed (TIME-WAIT lasts %d ms)", n, st, time.Since(closed).Round(time.Millisecond), 2*soakMSL)
		}
	}
	if after.goroutines != base.goroutines {
		t.Errorf("%d goroutines after the clients closed, %d at start", after.goroutines, base.goroutines)
	}
	if after.fds != base.fds {
		t.Errorf("%d file descriptors after the clients closed, %d at start", after.fds, base.fds)
	}
	if s := umemProblem(after.umem); s != "" {
		t.Errorf("UMEM frames after the clients closed: %s", s)
	}
	if growth := float64(end.rssKB)/float64(warm.rssKB) - 1; growth > 0.10 || growth < -0.10 {
		t.Errorf("resident memory %.1f MiB at the end, %.1f MiB after the warm-up: %+.1f%%, want within 10%%",
			float64(end.rssKB)/1024, float64(warm.rssKB)/1024, 100*growth)
	}
	// Refused, reset or wrong answers are failures; a few connections
	// that only timed out are a stack starved of CPU by other work.
	if timedOut := ch.timedOut.Load(); failed > timedOut || timedOut > made/100 {
		t.Errorf("%d of %d short connections failed, %d of them timed out; first other error: %v", failed, made, timedOut, churnErr)
	}
	bgMu.Lock()
	for _, e := range bgErrs {
		t.Error(e)
	}
	bgMu.Unlock()
	if pcapFrames.Load() == 0 || toolRuns.Load() == 0 {
		t.Errorf("%d pcap cycles capturing %d frames and %d tool runs: the soak did not exercise them", pcapCycles.Load(), pcapFrames.Load(), toolRuns.Load())
	}
	if toolSlow.Load() > toolRuns.Load()/10 {
		t.Errorf("%d of %d tool runs were not answered within the control plane's 10 s", toolSlow.Load(), toolRuns.Load())
	}

	if err := p.Stop(10 * time.Second); err != nil {
		t.Errorf("stop: %v", err)
	}
	leak := "no leak check line"
	for _, line := range strings.Split(p.Output(), "\n") {
		if strings.HasPrefix(line, "xstack: leak check: ") {
			leak = strings.TrimPrefix(line, "xstack: leak check: ")
		}
	}
	if leak != "clean" {
		t.Errorf("leak check at exit: %s\n%s", leak, tail(p.Output(), 40))
	}
	rate := float64(made) / elapsed.Seconds()
	// One line with the figures, for the README and the issue.
	t.Logf("soak figures: %v under load, %d short connections (%.0f/s, %d failed, %d of them timed out), %d idle; RSS start %.1f MiB, warm %.1f MiB, end %.1f MiB (%+.1f%%), after close %.1f MiB; live heap warm %d MB, end %d MB; goroutines start %d, warm %d, end %d, after close %d; fds start %d, warm %d, end %d, after close %d; umem after close %v; settled %v after the clients closed; pcap %d cycles, %d frames; %d tool runs (%d answered too late); leak check %s",
		elapsed.Round(time.Second), made, rate, failed, ch.timedOut.Load(), idleConns,
		float64(base.rssKB)/1024, float64(warm.rssKB)/1024, float64(end.rssKB)/1024, 100*(float64(end.rssKB)/float64(warm.rssKB)-1), float64(after.rssKB)/1024,
		warmHeap, endHeap,
		base.goroutines, warm.goroutines, end.goroutines, after.goroutines,
		base.fds, warm.fds, end.fds, after.fds, after.umem, settled.Round(time.Millisecond),
		pcapCycles.Load(), pcapFrames.Load(), toolRuns.Load(), toolSlow.Load(), leak)
}

var gcLine = regexp.MustCompile(`^gc \d+ @.* (\d+)->(\d+)->(\d+) MB`)

// liveHeapMB returns the live heap after the last collection the process's
// gctrace reported, or -1.
func liveHeapMB(out string) int {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if m := gcLine.FindStringSubmatch(lines[i]); m != nil {
			n, _ := strconv.Atoi(m[3])
			return n
		}
	}
	return -1
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// checkPcapDir reads back every capture file in dir, checks that it is a
// complete classic pcap file, removes it, and returns the frames counted
// (a capture that saw no frame has written no file).
func checkPcapDir(dir string, snaplen int) (int, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.pcap"))
	if err != nil {
		return 0, err
	}
	sort.Strings(names)
	total := 0
	for _, name := range names {
		recs, err := rigtest.ReadPcap(name, snaplen)
		total += len(recs)
		if err != nil {
			return total, err
		}
		if err := os.Remove(name); err != nil {
			return total, err
		}
	}
	return total, nil
}

// TestKillUnderLoad: a stack killed with SIGKILL at a random moment under
// load, several times, alternately a thread-mode process with two lcores
// and two lcore processes under tools/launch (killed one after the other).
// Each time the kernel gets the NIC back: no XDP program stays attached,
// and kernel-to-kernel ping and TCP over the same veth work. The next stack
// then starts on the same interface.
func TestKillUnderLoad(t *testing.T) {
	rounds := 4
	if os.Getenv("XSTACK_SOAK") != "" {
		rounds = max(rounds, int(soakDuration(t)/(15*time.Second)))
	}
	r := rigtest.New(t, rig.Options{Queues: 2})
	hw := rigtest.Build(t, "./examples/helloworld")
	launch := rigtest.Build(t, "./tools/launch")
	rigtest.KernelEcho(t, r.StackNS, netip.AddrPortFrom(r.KernelAddr4, 9000), netip.AddrPortFrom(r.KernelAddr6, 9000))
	for i := 0; i < rounds; i++ {
		mode := []string{"thread", "process"}[i%2]
		conf := rigtest.ConfigLcores(t, r, 3, mode)
		var p *rigtest.Proc
		var err error
		if mode == "thread" {
			p, err = rigtest.StartProc("serving on port", 20*time.Second, hw, "-c", conf)
		} else {
			p, err = rigtest.StartProc("serving on port", 20*time.Second, launch, "-c", conf, "--", hw)
			if err == nil {
				_, err = p.WaitLines("serving on port", 2, 20*time.Second)
			}
		}
		if p != nil {
			t.Cleanup(func() { p.Cmd.Process.Kill(); p.Wait(10 * time.Second) })
		}
		if err != nil {
			t.Fatalf("round %d (%s): %v", i, mode, err)
		}
		pids := []int{p.Cmd.Process.Pid}
		if mode == "process" {
			pids = nil
			for _, lc := range p.CountersAll(t, 2) {
				pids = append(pids, lc.Pid)
			}
		}
		idle, err := openIdle(r.PeerNS, netip.AddrPortFrom(r.StackAddr6, 80), 200, 16)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		ch := startChurn(r.PeerNS, netip.AddrPortFrom(r.StackAddr4, 80), 8, 1000)
		time.Sleep(time.Duration(200+rand.IntN(1800)) * time.Millisecond)
		made := ch.made.Load()
		rand.Shuffle(len(pids), func(a, b int) { pids[a], pids[b] = pids[b], pids[a] })
		for j, pid := range pids {
			if j > 0 {
				time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatalf("round %d: kill %d: %v", i, pid, err)
			}
		}
		ch.halt()
		for _, c := range idle {
			if c != nil {
				c.Close()
			}
		}
		if err := p.Wait(10 * time.Second); err == nil {
			t.Errorf("round %d: the killed stack exited cleanly?", i)
		}
		if made == 0 {
			t.Errorf("round %d: no connection was made before the kill: no load", i)
		}
		// The kernel detaches the program when its last link fd goes.
		rigtest.WaitDetached(t, r, 5*time.Second, fmt.Sprintf("in round %d (%s) after SIGKILL", i, mode))
		for _, a := range []netip.Addr{r.KernelAddr4, r.KernelAddr6} {
			if out, err := r.Run(r.PeerNS, "ping", "-c", "1", "-W", "2", a.String()); err != nil {
				t.Errorf("round %d (%s): ping %s after SIGKILL: %v\n%s", i, mode, a, err, out)
			}
			if err := echoOnce(r.PeerNS, netip.AddrPortFrom(a, 9000)); err != nil {
				t.Errorf("round %d (%s): TCP to the kernel at %s after SIGKILL: %v", i, mode, a, err)
			}
		}
		t.Logf("round %d (%s): killed after %d connections; XDP detached, kernel ping and TCP work", i, mode, made)
	}
}
