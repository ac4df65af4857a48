// Command bench runs the same server logic on the Linux kernel's stack and
// on xstack, side by side in one run, and reports the ratio.
//
//	go run ./tools/bench -scenario rps,cps,udp,latency,bulk,conns,loss,ceiling [-quick]
//	go run ./tools/bench -scenario all   (the same: every scenario, the default)
//
// It creates a rig of its own (internal/rig; a unique name, removed at the
// end, also on an error or SIGINT), and for every scenario alternates
// rounds between the two targets: kernel, xstack, kernel, xstack, ... Each
// round starts the target's server afresh:
//
//   - kernel: examples/helloworld -kernel (for udp, this program's hidden
//     kernel echo; for bulk and conns, examples/echo -kernel) in the
//     stack-side namespace, pinned to the server CPU, answering on the
//     stack side's kernel address 198.18.0.3;
//   - xstack: examples/helloworld (or examples/echo) with a config.ini for
//     the rig (lcore_mask for the server CPU, busy_poll=1, idle_sleep=0),
//     answering on 198.18.0.1.
//
// Clients run in the peer namespace on the client CPU: wrk (rps, and cps
// with "Connection: close") and Go thread-per-worker clients (cps, udp,
// latency, bulk, conns, loss).
//
// Every scenario runs in each rig mode of -rig (default veth,nic), on a rig
// made for the mode and removed after it:
//
//   - veth: the pair as Linux makes it, where a frame's receive path runs
//     on the sender's CPU. With -steer (default) the kernel's receive work
//     is steered with RPS so that each side's stack work runs on its own
//     CPU; every xstack transmit still runs the peer's receive path on the
//     xstack core.
//   - nic: each veth end's receive work runs in a threaded-NAPI kthread
//     pinned to its side's CPU (internal/rig's RxReceiver), as on a NIC.
//
// Every rate measurement also reads the CPU times at its window's edges
// (cpu.go) and adds rows: the server's CPU per unit of work (the server
// CPU's non-idle time in /proc/stat for the kernel, the loop's busy time
// for xstack), the server CPU's non-idle time per unit for both, and the
// client CPU's utilisation; a target whose client CPU was 90% busy or more
// is marked client-bound.
//
// Scenarios:
//
//	rps      HTTP/1.1 keep-alive, wrk -t1 at 1, 16, 64, 256 connections
//	cps      short connections (connect, request with Connection: close,
//	         response, close) per second: wrk -H 'Connection: close' with N
//	         connections, and the Go client with N workers
//	udp      UDP echo datagrams per second (examples/echo vs a kernel echo)
//	latency  open-loop fixed-rate keep-alive requests, p50/p99/p99.9 from
//	         each request's scheduled send time (coordinated-omission safe)
//	bulk     TCP throughput (Gbit/s) with 1 and 4 flows, upload (the peer
//	         writes to examples/echo's discard service, port 9) and
//	         download (the peer reads from its chargen service, port 19);
//	         once with the veth offloads as they are, once with TSO, GSO
//	         and GRO off on both ends (MTU-sized frames on the wire both
//	         ways), restored after; the offloads in effect while each
//	         target ran (ethtool -k) go to the notes
//	conns    memory per idle established connection at 10,000 and 100,000
//	         connections to the discard service: the server's VmRSS
//	         growth, plus for the kernel its slab growth net of the
//	         client's share (conns.go explains the arithmetic); the client
//	         binds extra peer addresses (198.18.1.x) for the port space
//	loss     TCP throughput (MiB/s) of one flow, upload and download as in
//	         bulk, while BPF programs on the peer's veth end drop 0%, 1%,
//	         5% and 20% of the TCP/UDP frames each way (internal/lossy);
//	         TSO, GSO and GRO off on both ends, both servers on Reno
//	ceiling  the rig's raw AF_XDP receive rate: the peer blasts 60-byte
//	         and 1514-byte frames with AF_PACKET, an xsk on the stack side
//	         only counts (frames/s, and Gbit/s of IP beside bulk's)
//
// It prints a Markdown table (scenario, rig mode, client, point, metric;
// median, min–max over rounds, xstack/kernel ratio of the medians) and
// writes every raw sample with its CPU figures to a JSON file (-out), the
// table next to it (.md), and PNG plots per rig mode: requests/s against
// connections, the latency CDF, bulk throughput and memory per connection.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/internal/affinity"
	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
)

// scenarios in the order they run, with the method that runs each.
var scenarios = []struct {
	name string
	run  func(*bench) error
}{
	{"rps", (*bench).rps}, {"cps", (*bench).cps}, {"udp", (*bench).udp}, {"latency", (*bench).latency},
	{"bulk", (*bench).bulk}, {"conns", (*bench).conns}, {"loss", (*bench).loss}, {"ceiling", (*bench).ceiling},
}

// allScenarios names the scenarios in the order they run.
var allScenarios = func() []string {
	names := make([]string, len(scenarios))
	for i, s := range scenarios {
		names[i] = s.name
	}
	return names
}()

type options struct {
	scenarios  []string
	rounds     int
	duration   time.Duration
	quick      bool
	out        string
	name       string
	serverCPU  int
	clientCPU  int
	steer      bool
	rigModes   []string
	rpsConns   []int
	cpsWorkers []int
	udpFlows   int
	udpWindow  int
	udpSize    int
	latConns   int
	rate       float64
	bulkFlows  []int
	idleConns  []int
	root       string
	binDir     string
	mtu        int       // both ends of the veth and xstack's port; 0 leaves the rig's
	sysctls    []string  // name=value lines of xstack's [sysctl] section
	lossRates  []float64 // loss: shares of frames dropped each way
	clients    []string  // the HTTP clients of rps, cps and latency: clientWrk, clientGo, clientXload
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == udpEchoCmd {
		os.Exit(udpEchoMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == idleConnsCmd {
		os.Exit(idleConnsMain(os.Args[2:]))
	}
	log.SetFlags(0)
	log.SetPrefix("bench: ")
	var o options
	scen := flag.String("scenario", "all", "comma-separated scenarios: "+strings.Join(allScenarios, ", ")+", or all")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds per target and scenario (alternating kernel, xstack)")
	flag.DurationVar(&o.duration, "d", 4*time.Second, "duration of one measurement (wrk rounds it to whole seconds)")
	flag.BoolVar(&o.quick, "quick", false, "one round of 1s measurements (a few minutes in all with both rig modes)")
	flag.StringVar(&o.out, "out", "", "JSON results file (default bench-results/<date>.json); the table and plots go next to it")
	flag.StringVar(&o.name, "name", "", "rig name (default: a random xb name)")
	flag.IntVar(&o.serverCPU, "server-cpu", 0, "CPU of the server (the kernel server's pin and xstack's lcore_mask)")
	flag.IntVar(&o.clientCPU, "client-cpu", 1, "CPU of the clients")
	flag.BoolVar(&o.steer, "steer", true, "veth rig: steer the kernel's receive work with RPS: stack side on the server CPU, peer side on the client CPU")
	rigModes := flag.String("rig", "veth,nic", "rig receive modes to run every scenario in: veth (receive work on the sender's CPU, as veth does), nic (threaded NAPI pinned to the receiver's CPU, as a NIC)")
	conns := flag.String("conns", "1,16,64,256", "rps: connection counts")
	workers := flag.String("cps-workers", "16", "cps: concurrent workers (comma-separated to sweep)")
	flag.IntVar(&o.udpFlows, "udp-flows", 4, "udp: client sockets (flows)")
	flag.IntVar(&o.udpWindow, "udp-window", 16, "udp: datagrams in flight per flow")
	flag.IntVar(&o.udpSize, "udp-size", 64, "udp: payload bytes")
	flag.IntVar(&o.latConns, "latency-conns", 16, "latency: keep-alive connections")
	bulkFlows := flag.String("bulk-flows", "1,4", "bulk: TCP flow counts (-quick: 1)")
	idleConns := flag.String("idle-conns", "10000,100000", "conns: idle connection counts (-quick: 2000)")
	flag.Float64Var(&o.rate, "rate", 0, "latency: requests/s (0: a quarter of the lower of the two targets' keep-alive rate at 16 connections)")
	flag.StringVar(&o.root, "root", "", "module root to build the examples from (default: found from the working directory)")
	flag.IntVar(&o.mtu, "mtu", 0, "MTU of both veth ends and of xstack's port, for every target (0: the rig's 1500), up to 9000; above 1778 xstack uses frame_size=4096, and above 3826 frames span several buffers (multi_buffer)")
	flag.Func("sysctl", "name=value for xstack's config.ini [sysctl] section (repeatable), e.g. net.inet.tcp.gso=1", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("want name=value, got %q", v)
		}
		o.sysctls = append(o.sysctls, v)
		return nil
	})
	lossPct := flag.String("loss-rates", "0,1,5,20", "loss: percentages of frames dropped each way")
	flag.StringVar(&o.binDir, "bin", "", "use prebuilt helloworld, echo (and xload) from this directory instead of building them")
	clients := flag.String("client", "wrk,Go,xload", "rps, cps and latency: the clients to measure with (rps runs wrk and xload; cps all three; latency Go and xload)")
	flag.Parse()

	var err error
	if o.scenarios, err = parseScenarios(*scen); err != nil {
		log.Fatal(err)
	}
	if o.rpsConns, err = parseInts(*conns); err != nil {
		log.Fatalf("-conns: %v", err)
	}
	if o.cpsWorkers, err = parseInts(*workers); err != nil {
		log.Fatalf("-cps-workers: %v", err)
	}
	if o.rigModes, err = parseRigModes(*rigModes); err != nil {
		log.Fatalf("-rig: %v", err)
	}
	if o.lossRates, err = parseLossRates(*lossPct); err != nil {
		log.Fatalf("-loss-rates: %v", err)
	}
	if o.clients, err = parseClients(*clients); err != nil {
		log.Fatalf("-client: %v", err)
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		o.rounds, o.duration = 1, time.Second
		if !set["bulk-flows"] {
			*bulkFlows = "1"
		}
		if !set["idle-conns"] {
			*idleConns = "2000"
		}
	}
	if o.bulkFlows, err = parseInts(*bulkFlows); err != nil {
		log.Fatalf("-bulk-flows: %v", err)
	}
	if o.idleConns, err = parseInts(*idleConns); err != nil {
		log.Fatalf("-idle-conns: %v", err)
	}
	if o.rounds < 1 || o.duration < time.Second/2 {
		log.Fatal("-rounds must be at least 1 and -d at least 500ms")
	}
	if err := run(o, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func parseScenarios(s string) ([]string, error) {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if f == "all" {
			for _, a := range allScenarios {
				if !slices.Contains(out, a) {
					out = append(out, a)
				}
			}
			continue
		}
		if !slices.Contains(allScenarios, f) {
			return nil, fmt.Errorf("unknown scenario %q (have %s)", f, strings.Join(allScenarios, ", "))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no scenario given")
	}
	// Run in the canonical order: latency's default rate comes from rps.
	slices.SortFunc(out, func(a, b string) int { return slices.Index(allScenarios, a) - slices.Index(allScenarios, b) })
	return out, nil
}

// Rig modes (-rig) and the rig's receive mode each stands for.
var rigModes = map[string]rig.RxCPU{"veth": rig.RxSender, "nic": rig.RxReceiver}

func parseRigModes(s string) ([]string, error) {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if _, ok := rigModes[f]; !ok {
			return nil, fmt.Errorf("unknown rig mode %q (have veth, nic)", f)
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

// parseClients reads -client: a comma-separated subset of wrk, Go and
// xload, case-insensitive, in the table's spelling.
func parseClients(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		i := slices.IndexFunc([]string{clientWrk, clientGo, clientXload}, func(c string) bool { return strings.EqualFold(c, f) })
		if i < 0 {
			return nil, fmt.Errorf("unknown client %q (want wrk, Go or xload)", f)
		}
		c := []string{clientWrk, clientGo, clientXload}[i]
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// uses reports whether -client has c.
func (o options) uses(c string) bool { return slices.Contains(o.clients, c) }

// needXload reports whether a scenario of the run measures with xload.
func (o options) needXload() bool {
	return o.uses(clientXload) && (slices.Contains(o.scenarios, "rps") || slices.Contains(o.scenarios, "cps") ||
		slices.Contains(o.scenarios, "latency"))
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseLossRates turns comma-separated percentages into shares.
func parseLossRates(s string) ([]float64, error) {
	var out []float64
	for f := range strings.SplitSeq(s, ",") {
		p, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || p < 0 || p >= 100 {
			return nil, fmt.Errorf("%q is not a percentage in [0, 100)", f)
		}
		out = append(out, p/100)
	}
	return out, nil
}

// bench is one run.
type bench struct {
	ctx  context.Context
	o    options
	r    *rig.Rig
	res  *Results
	bins binaries
	tmp  string        // the run's scratch directory
	conf string        // xstack's config.ini
	cur  *rigtest.Proc // the server running now, if any
	mode string        // the rig mode the scenarios run in now (-rig)
	// runDir is the control sockets' directory of the xstack servers
	// (XSTACK_RUN_DIR), the bench's own; ctl is the control connection
	// to the xstack server running now, nil for the kernel's.
	runDir string
	ctl    *ctl.Client
	// napi are the nic rig mode's NAPI kthreads, as last pinned.
	napi []rig.NAPIThread
}

type binaries struct {
	helloworld, echo, self string
	xload                  string // tools/xload, when -client has it
}

// run does the whole run and writes the table to w.
func run(o options, w io.Writer) (err error) {
	if os.Geteuid() != 0 {
		return rig.ErrNotRoot
	}
	if n := runtime.NumCPU(); o.serverCPU >= n || o.clientCPU >= n || o.serverCPU == o.clientCPU {
		return fmt.Errorf("need distinct server and client CPUs below %d (have -server-cpu %d -client-cpu %d)", n, o.serverCPU, o.clientCPU)
	}
	for _, tool := range []string{"ip", "ethtool", "taskset"} {
		if _, err := lookPath(tool); err != nil {
			return err
		}
	}
	if slices.Contains(o.scenarios, "rps") || slices.Contains(o.scenarios, "cps") || (slices.Contains(o.scenarios, "latency") && o.rate == 0) {
		if err := ensureWrk(); err != nil {
			return err
		}
	}

	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer cancel()

	tmp, err := os.MkdirTemp("", "xstack-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	b := &bench{ctx: ctx, o: o, res: &Results{Started: time.Now()}}
	if b.bins, err = build(o.root, o.binDir, tmp, o.needXload()); err != nil {
		return err
	}

	if o.name == "" {
		var r [3]byte
		rand.Read(r[:])
		o.name = "xb" + hex.EncodeToString(r[:])
		b.o.name = o.name
	}
	// The xstack servers' control sockets go to a directory of the
	// bench's own: a user's XSTACK_RUN_DIR or running instance must not
	// meet them, and the bench reads the loop's figures from there.
	b.tmp, b.runDir = tmp, filepath.Join(tmp, "run")
	if err := os.Setenv("XSTACK_RUN_DIR", b.runDir); err != nil {
		return err
	}

	// Everything this process does from here is client work: keep it on
	// the client CPU. Servers pin themselves to the server CPU.
	if err := affinity.PinProcess(o.clientCPU); err != nil {
		return err
	}
	runtime.GOMAXPROCS(1)

	b.res.Host = hostInfo()
	b.res.Settings = Settings{Scenarios: o.scenarios, Rounds: o.rounds, Duration: o.duration, Quick: o.quick,
		Steer: o.steer, RigModes: o.rigModes, ServerCPU: o.serverCPU, ClientCPU: o.clientCPU, Rig: o.name}
	var failed []string
	for _, mode := range o.rigModes {
		if ctx.Err() != nil {
			break
		}
		f, merr := b.runMode(mode)
		for _, s := range f {
			failed = append(failed, mode+"/"+s)
		}
		if merr != nil {
			// The rig could not be made or removed: print what the
			// modes before measured, and stop.
			err = errors.Join(err, fmt.Errorf("rig mode %s: %w", mode, merr))
			break
		}
	}
	b.res.Finished = time.Now()

	fmt.Fprintf(w, "\nxstack vs Linux kernel, %s, %s, %d CPUs, server CPU %d, client CPU %d, %d round(s) of %v, rig %s, steer=%v\n\n",
		b.res.Host.Kernel, b.res.Host.CPU, b.res.Host.CPUs, o.serverCPU, o.clientCPU, o.rounds, o.duration, strings.Join(o.rigModes, ","), o.steer)
	b.res.writeTable(w)
	for _, n := range b.res.Notes {
		fmt.Fprintln(w, "\nnote:", n)
	}
	if werr := b.writeOutputs(w); werr != nil {
		err = errors.Join(err, werr)
	}
	if ctx.Err() != nil {
		return errors.Join(err, fmt.Errorf("interrupted: %w", context.Cause(ctx)))
	}
	if len(failed) > 0 {
		return errors.Join(err, fmt.Errorf("scenarios failed: %s", strings.Join(failed, ", ")))
	}
	return err
}

// runMode runs every scenario on a rig of mode, created for it and removed
// after (with it go the NAPI settings of the nic mode). It returns the
// scenarios that failed; an error is one that ends the run.
func (b *bench) runMode(mode string) (failed []string, err error) {
	o := b.o
	b.mode = mode
	log.Printf("rig %s (%s): up (if the bench is killed hard, remove it with: go run ./tools/rig down -name %s)", o.name, mode, o.name)
	if b.r, err = rig.Up(rig.Options{Name: o.name, RxCPU: rigModes[mode], StackCPU: o.serverCPU, PeerCPU: o.clientCPU}); err != nil {
		return nil, err
	}
	defer func() {
		if b.cur != nil {
			b.stopServer()
		}
		if derr := b.r.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("rig %s down: %w", o.name, derr))
		}
		log.Printf("rig %s (%s): removed", o.name, mode)
	}()
	if err := b.setupRig(); err != nil {
		return nil, err
	}
	if b.conf, err = b.writeConfig(b.tmp); err != nil {
		return nil, err
	}
	for _, s := range o.scenarios {
		if b.ctx.Err() != nil {
			break
		}
		log.Printf("scenario %s, rig %s", s, mode)
		if err := b.scenario(s); err != nil {
			if b.ctx.Err() != nil {
				break
			}
			// A working subset beats nothing: report and go on.
			log.Printf("scenario %s (rig %s) failed: %v", s, mode, err)
			b.res.Notes = append(b.res.Notes, fmt.Sprintf("scenario %s, rig %s, failed: %v", s, mode, err))
			failed = append(failed, s)
		}
	}
	return failed, nil
}

func (b *bench) writeOutputs(w io.Writer) error {
	out := b.o.out
	if out == "" {
		out = filepath.Join("bench-results", b.res.Started.Format("2006-01-02T15-04-05")+".json")
	}
	if err := b.res.writeJSON(out); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	base := strings.TrimSuffix(out, ".json")
	md, err := os.Create(base + ".md")
	if err != nil {
		return err
	}
	b.res.writeTable(md)
	if err := md.Close(); err != nil {
		return err
	}
	plots, err := writePlots(b.res, base)
	fmt.Fprintf(w, "\nraw samples: %s\ntable: %s\n", out, base+".md")
	for _, p := range plots {
		fmt.Fprintf(w, "plot: %s\n", p)
	}
	return err
}

func (b *bench) scenario(name string) error {
	for _, s := range scenarios {
		if s.name == name {
			return s.run(b)
		}
	}
	return fmt.Errorf("unknown scenario %q", name)
}

// setupRig makes the rig ready for measurements: a wide ephemeral port
// range on the peer (the cps client opens many connections), and in the
// veth mode RPS steering. The nic mode needs none: its NAPI kthreads
// already run each side's receive work on that side's CPU.
func (b *bench) setupRig() error {
	r := b.r
	if _, err := r.Run(r.PeerNS, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65535"); err != nil {
		return err
	}
	if m := b.o.mtu; m != 0 {
		for _, e := range [][2]string{{r.StackNS, r.StackIf}, {r.PeerNS, r.PeerIf}} {
			if _, err := r.Run(e[0], "ip", "link", "set", "dev", e[1], "mtu", strconv.Itoa(m)); err != nil {
				return fmt.Errorf("-mtu %d: %w", m, err)
			}
		}
		b.res.note(fmt.Sprintf("MTU %d on both veth ends and xstack's port, for both targets", m))
	}
	if !b.o.steer || r.RxCPU == rig.RxReceiver {
		return nil
	}
	for _, s := range []struct {
		ns, ifname string
		cpu        int
	}{{r.StackNS, r.StackIf, b.o.serverCPU}, {r.PeerNS, r.PeerIf, b.o.clientCPU}} {
		mask := strconv.FormatUint(1<<s.cpu, 16)
		for q := range r.Queues {
			path := fmt.Sprintf("/sys/class/net/%s/queues/rx-%d/rps_cpus", s.ifname, q)
			if _, err := r.Run(s.ns, "sh", "-c", "echo "+mask+" > "+path); err != nil {
				return fmt.Errorf("steer %s: %w", s.ifname, err)
			}
		}
	}
	return nil
}

// writeConfig writes xstack's config.ini for the rig: one lcore on the
// server CPU, busy polling without sleeps.
func (b *bench) writeConfig(dir string) (string, error) {
	conf := fmt.Sprintf(`[xstack]
lcore_mask=%x
busy_poll=1
idle_sleep=0
`, 1<<b.o.serverCPU) + b.r.PortConfig()
	if m := b.o.mtu; m != 0 {
		conf += fmt.Sprintf("mtu=%d\n", m)
		if m+header.EthernetMinimumSize > 2048-256 {
			conf += "frame_size=4096\n"
		}
	}
	// The [sysctl] section comes last, so that a scenario can add to it
	// (loss sets the congestion control).
	conf += "[sysctl]\n"
	for _, s := range b.o.sysctls {
		conf += s + "\n"
	}
	if len(b.o.sysctls) > 0 {
		b.res.note("xstack's sysctls: " + strings.Join(b.o.sysctls, ", "))
	}
	p := filepath.Join(dir, "config.ini")
	return p, os.WriteFile(p, []byte(conf), 0o644)
}

// build compiles the examples the targets run (and tools/xload, with
// withXload) into dir, or finds them in binDir.
func build(root, binDir, dir string, withXload bool) (binaries, error) {
	var bins binaries
	self, err := os.Executable()
	if err != nil {
		return bins, err
	}
	bins.self = self
	progs := []struct {
		pkg string
		out *string
	}{{"./examples/helloworld", &bins.helloworld}, {"./examples/echo", &bins.echo}}
	if withXload {
		progs = append(progs, struct {
			pkg string
			out *string
		}{"./tools/xload", &bins.xload})
	}
	if binDir != "" {
		for _, p := range progs {
			*p.out = filepath.Join(binDir, filepath.Base(p.pkg))
			if _, err := os.Stat(*p.out); err != nil {
				return bins, fmt.Errorf("-bin: %w", err)
			}
		}
		return bins, nil
	}
	if root == "" {
		var err error
		if root, err = moduleRoot(); err != nil {
			return bins, err
		}
	}
	for _, p := range progs {
		*p.out = filepath.Join(dir, filepath.Base(p.pkg))
		cmd := osCommand("go", "build", "-o", *p.out, p.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return bins, fmt.Errorf("go build %s: %w\n%s", p.pkg, err, out)
		}
	}
	return bins, nil
}

// moduleRoot finds the xstack module above the working directory.
func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/xstack/xstack\n") {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("run from inside the xstack module, or give -root")
		}
		d = parent
	}
}

func hostInfo() Host {
	h := Host{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = "Linux " + unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return h
}
