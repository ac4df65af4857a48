package main

import (
	"errors"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rigtest"
)

func lookPath(tool string) (string, error) {
	p, err := exec.LookPath(tool)
	if err != nil {
		return "", fmt.Errorf("%s not found in PATH (Debian: apt-get install -y iproute2 ethtool util-linux)", tool)
	}
	return p, nil
}

func osCommand(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }

// ensureWrk installs wrk with apt-get if it is missing, and says so.
func ensureWrk() error {
	if _, err := exec.LookPath("wrk"); err == nil {
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return errors.New("wrk not found in PATH, and no apt-get to install it: install wrk")
	}
	log.Printf("wrk not found: installing it with apt-get install -y wrk")
	cmd := exec.Command("apt-get", "install", "-y", "wrk")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get install -y wrk: %w\n%s", err, out)
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk still not found after apt-get install -y wrk")
	}
	log.Printf("installed wrk")
	return nil
}

// Server kinds.
const (
	httpServer   = "http"   // examples/helloworld
	udpServer    = "udp"    // examples/echo, or the kernel echo in this program
	streamServer = "stream" // examples/echo's discard and chargen (-kernel for the kernel)
)

// startServer starts target's server of the given kind and returns the
// address it serves on, once it answers.
func (b *bench) startServer(kind, target string) (*rigtest.Proc, netip.AddrPort, error) {
	r := b.r
	cpu := strconv.Itoa(b.o.serverCPU)
	var argv []string
	var ready string
	var addr netip.AddrPort
	switch {
	case kind == httpServer && target == kernel:
		argv = []string{"ip", "netns", "exec", r.StackNS, b.bins.helloworld, "-kernel", "-cpu", cpu, "-port", "80"}
		ready, addr = "serving on port", netip.AddrPortFrom(r.KernelAddr4, 80)
	case kind == httpServer && target == xstack:
		argv = []string{b.bins.helloworld, "-c", b.conf}
		ready, addr = "serving on port", netip.AddrPortFrom(r.StackAddr4, 80)
	case kind == udpServer && target == kernel:
		argv = []string{"ip", "netns", "exec", r.StackNS, b.bins.self, udpEchoCmd, "-cpu", cpu, "-port", "7"}
		ready, addr = udpEchoReady, netip.AddrPortFrom(r.KernelAddr4, 7)
	case kind == udpServer && target == xstack:
		argv = []string{b.bins.echo, "-c", b.conf}
		ready, addr = "echoing: ", netip.AddrPortFrom(r.StackAddr4, 7)
	case kind == streamServer && target == kernel:
		argv = []string{"ip", "netns", "exec", r.StackNS, b.bins.echo, "-kernel", "-cpu", cpu}
		ready, addr = "echoing: ", netip.AddrPortFrom(r.KernelAddr4, discardPort)
	case kind == streamServer && target == xstack:
		argv = []string{b.bins.echo, "-c", b.conf}
		ready, addr = "echoing: ", netip.AddrPortFrom(r.StackAddr4, discardPort)
	default:
		return nil, addr, fmt.Errorf("no %s server for %s", kind, target)
	}
	// The bench itself is pinned to the client CPU and children inherit
	// that; start servers on the server CPU instead (xstack refuses an
	// lcore outside its allowed CPUs; the kernel servers pin themselves
	// to the same CPU anyway).
	argv = append([]string{"taskset", "-c", cpu}, argv...)
	p, err := rigtest.StartProc(ready, 20*time.Second, argv[0], argv[1:]...)
	if err != nil {
		if p != nil {
			p.Stop(5 * time.Second)
		}
		return nil, addr, fmt.Errorf("%s %s server: %w", target, kind, err)
	}
	b.cur = p
	if err := b.checkPinned(p); err != nil {
		b.stopServer()
		return nil, addr, fmt.Errorf("%s %s server: %w", target, kind, err)
	}
	// The nic mode's NAPI kthreads are made anew when a NAPI is
	// (re)enabled, as an XDP program's attachment may do: pin them again.
	if b.napi, err = b.r.PinNAPI(); err != nil {
		b.stopServer()
		return nil, addr, fmt.Errorf("%s %s server: %w", target, kind, err)
	}
	if target == xstack {
		// The loop's busy time comes from the control plane of the
		// single lcore (proc-id 0), in the bench's run directory.
		c, err := ctl.Dial(b.runDir, 0)
		if err != nil {
			b.stopServer()
			return nil, addr, fmt.Errorf("%s %s server: control plane: %w", target, kind, err)
		}
		b.ctl = c
	}
	if err := b.probe(kind, addr); err != nil {
		b.stopServer()
		return nil, addr, fmt.Errorf("%s %s server on %v does not answer: %w\noutput:\n%s", target, kind, addr, err, p.Output())
	}
	return p, addr, nil
}

func (b *bench) stopServer() error {
	if b.cur == nil {
		return nil
	}
	p := b.cur
	b.cur = nil
	if b.ctl != nil {
		b.ctl.Close()
		b.ctl = nil
	}
	crashed := p.Exited()
	err := p.Stop(5 * time.Second)
	if crashed {
		return fmt.Errorf("%s exited during the measurement:\n%s", filepath.Base(p.Cmd.Path), p.Output())
	}
	return err
}

// checkPinned verifies that every thread of the server may run only on the
// server CPU: a measurement with a stray thread on the client's core would
// not compare one core with one core.
func (b *bench) checkPinned(p *rigtest.Proc) error {
	pid := p.Cmd.Process.Pid
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &set); err != nil {
			continue // exited
		}
		if set.Count() != 1 || !set.IsSet(b.o.serverCPU) {
			return fmt.Errorf("thread %d of pid %d may run on %d CPUs, not only on CPU %d", tid, pid, set.Count(), b.o.serverCPU)
		}
	}
	return nil
}

// probe waits until the server answers one request (or datagram) from the
// peer: the first one also resolves the neighbours.
func (b *bench) probe(kind string, addr netip.AddrPort) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := netns.Do(b.r.PeerNS, func() error {
			if kind == httpServer {
				return oneShort(addr, make([]byte, 4096))
			}
			if kind == streamServer {
				return probeChargen(netip.AddrPortFrom(addr.Addr(), chargenPort))
			}
			fd, err := dialBlocking(unix.SOCK_DGRAM, addr, 200*time.Millisecond)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			if _, err := unix.Write(fd, []byte("probe")); err != nil {
				return err
			}
			buf := make([]byte, 64)
			n, err := unix.Read(fd, buf)
			if err == nil && string(buf[:n]) != "probe" {
				err = fmt.Errorf("echo returned %q", buf[:n])
			}
			return err
		})
		if err == nil || time.Now().After(deadline) || b.ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// eachRound runs measure for every round and target, alternating targets,
// with a fresh server each time.
func (b *bench) eachRound(kind string, targets []string, measure func(round int, target string, addr netip.AddrPort) error) error {
	for round := 1; round <= b.o.rounds; round++ {
		for _, tg := range targets {
			if err := b.ctx.Err(); err != nil {
				return err
			}
			_, addr, err := b.startServer(kind, tg)
			if err != nil {
				return err
			}
			merr := measure(round, tg, addr)
			serr := b.stopServer()
			if merr != nil || serr != nil {
				return fmt.Errorf("%s round %d: %w", tg, round, errors.Join(merr, serr))
			}
		}
	}
	return nil
}

var bothTargets = []string{kernel, xstack}

// Clients, as the table's client column names them.
const (
	clientWrk   = "wrk"
	clientGo    = "Go"    // the bench's thread-per-worker clients
	clientBlast = "blast" // ceiling's AF_PACKET sender
	clientXload = "xload" // tools/xload, on its own AF_XDP socket
)

// point returns the point of the current rig mode with the given identity.
func (b *bench) point(scenario, client, label string, param int, metric, unit string, lower bool) *Point {
	return b.res.point(Point{Scenario: scenario, Rig: b.mode, Client: client, Label: label, Param: param, Metric: metric, Unit: unit, Lower: lower})
}

// measure runs f between two CPU snapshots and returns the window's
// figures for the units of work f reports.
func (b *bench) measure(unit string, f func() (float64, error)) (CPUWindow, error) {
	s0, err := b.snap()
	if err != nil {
		return CPUWindow{}, err
	}
	units, err := f()
	if err != nil {
		return CPUWindow{}, err
	}
	s1, err := b.snap()
	if err != nil {
		return CPUWindow{}, err
	}
	return window(s0, s1, units, unit), nil
}

func (b *bench) rps() error {
	warm := 2 * time.Second
	if b.o.quick {
		warm = 0
	}
	if !b.o.uses(clientWrk) && !b.o.uses(clientXload) {
		return errors.New("rps measures with wrk or xload, and -client has neither")
	}
	return b.eachRound(httpServer, bothTargets, func(round int, tg string, addr netip.AddrPort) error {
		if warm > 0 {
			if _, out, err := runWrk(b.ctx, b.r.PeerNS, b.o.clientCPU, addr, 16, warm); err != nil {
				return fmt.Errorf("warm-up: %w\n%s", err, out)
			}
		}
		for _, c := range b.o.rpsConns {
			label := fmt.Sprintf("%d conns", c)
			if b.o.uses(clientXload) {
				if err := b.xloadRound("rps", label, c, round, tg, addr, false); err != nil {
					return err
				}
			}
			if !b.o.uses(clientWrk) {
				continue
			}
			var wr wrkResult
			w, err := b.measure("requests", func() (float64, error) {
				var err error
				wr, _, err = runWrk(b.ctx, b.r.PeerNS, b.o.clientCPU, addr, c, b.o.duration)
				return float64(wr.Requests), err
			})
			if err != nil {
				return err
			}
			detail := map[string]float64{"requests": float64(wr.Requests)}
			for k, v := range wr.Latency {
				detail["latency_"+k+"_us"] = v
			}
			pt := b.point("rps", clientWrk, label, c, "requests/s", "req/s", false)
			pt.Samples = append(pt.Samples, &Sample{Target: tg, Round: round, Value: wr.RequestsPerSec, Errors: wr.Errors, Detail: detail, CPU: &w})
			if p99, ok := wr.Latency["p99"]; ok {
				pt := b.point("rps", clientWrk, label, c, "wrk p99", "µs", true)
				pt.Samples = append(pt.Samples, &Sample{Target: tg, Round: round, Value: p99})
			}
			b.res.addCost(pt, tg, round, w, "request")
			log.Printf("  rps %s %s round %d %d conns: %.0f req/s, p99 %.0fµs, %d errors; %s", b.mode, tg, round, c, wr.RequestsPerSec, wr.Latency["p99"], wr.Errors, costLog(w, "req"))
		}
		return nil
	})
}

// xloadRound measures target with tools/xload at conns connections,
// keep-alive (rps) or one request per connection (cps, short), and adds
// the rate, xload's p99 and the cost rows.
func (b *bench) xloadRound(scenario, label string, conns, round int, tg string, addr netip.AddrPort, short bool) error {
	unit, metric, rateUnit, per := "requests", "requests/s", "req/s", "request"
	if short {
		unit, metric, rateUnit, per = "connections", "connections/s", "conn/s", "connection"
	}
	var xr xloadResult
	w, err := b.measure(unit, func() (float64, error) {
		var err error
		xr, err = b.runXload(addr, conns, b.o.duration, short, 0)
		return float64(xr.Done()), err
	})
	if err != nil {
		return err
	}
	if xr.Done() == 0 {
		return fmt.Errorf("xload completed no %s (%d reset, %d timed out)", strings.TrimSuffix(unit, "s"), xr.Counts.Reset, xr.Counts.Timeout)
	}
	pt := b.point(scenario, clientXload, label, conns, metric, rateUnit, false)
	pt.Samples = append(pt.Samples, &Sample{Target: tg, Round: round, Value: xr.Rate, Errors: xr.Counts.Errors(), Detail: xloadDetail(xr, unit), CPU: &w})
	p99 := b.point(scenario, clientXload, label, conns, "xload p99", "µs", true)
	p99.Samples = append(p99.Samples, &Sample{Target: tg, Round: round, Value: xr.P99us})
	b.res.addCost(pt, tg, round, w, per)
	log.Printf("  %s %s %s round %d xload %d conns: %.0f %s, p99 %.0fµs, %d errors, %d retransmits, xload busy %.0f%%; %s",
		scenario, b.mode, tg, round, conns, xr.Rate, rateUnit, xr.P99us, xr.Counts.Errors(), xr.Counts.Retransmits, xr.CPUBusyPct, costLog(w, strings.TrimSuffix(rateUnit, "/s")))
	return nil
}

// costLog is a log line's account of a window's CPU cost.
func costLog(w CPUWindow, unit string) string {
	server, procStat := w.costPer()
	s := fmt.Sprintf("server %.1fµs/%s", server/1e3, unit)
	if w.LoopBusyNs != nil {
		s += fmt.Sprintf(" (loop busy), %.1fµs/%s (/proc/stat)", procStat/1e3, unit)
	}
	if st := w.LoopStalls; st != nil {
		s += fmt.Sprintf(", loop passes ≥100µs/≥1ms/≥10ms: %d/%d/%d", st[0], st[1], st[2])
	}
	if w.LoopRxFrames != nil && w.Units > 0 {
		s += fmt.Sprintf(", frames in/out per %s %.2f/%.2f", unit, float64(*w.LoopRxFrames)/w.Units, float64(*w.LoopTxFrames)/w.Units)
	}
	if w.NAPIStackNs != nil && w.Units > 0 {
		s += fmt.Sprintf(", NAPI kthreads %.1fµs/%s stack side, %.1fµs/%s peer side",
			float64(*w.NAPIStackNs)/w.Units/1e3, unit, float64(*w.NAPIPeerNs)/w.Units/1e3, unit)
	}
	s += fmt.Sprintf(", client CPU %.0f%%", 100*w.Client.util())
	if w.ClientBound {
		s += " (client-bound)"
	}
	return s
}

// cps measures short connections per second with two clients: wrk with
// "Connection: close" (it reconnects after every response, so each request
// is one connection) and the bench's Go client, at each worker count.
func (b *bench) cps() error {
	return b.eachRound(httpServer, bothTargets, func(round int, tg string, addr netip.AddrPort) error {
		for _, n := range b.o.cpsWorkers {
			if b.o.uses(clientXload) {
				if err := b.xloadRound("cps", fmt.Sprintf("%d conns", n), n, round, tg, addr, true); err != nil {
					return err
				}
			}
			if b.o.uses(clientWrk) {
				if err := b.cpsWrk(n, round, tg, addr); err != nil {
					return err
				}
			}
			if b.o.uses(clientGo) {
				if err := b.cpsGo(n, round, tg, addr); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// cpsWrk measures short connections with wrk and "Connection: close": it
// reconnects after every response, so each request is one connection.
func (b *bench) cpsWrk(n, round int, tg string, addr netip.AddrPort) error {
	var wr wrkResult
	w, err := b.measure("connections", func() (float64, error) {
		var err error
		wr, _, err = runWrk(b.ctx, b.r.PeerNS, b.o.clientCPU, addr, n, b.o.duration, "Connection: close")
		return float64(wr.Requests), err
	})
	if err != nil {
		return err
	}
	pt := b.point("cps", clientWrk, fmt.Sprintf("%d conns", n), n, "connections/s", "conn/s", false)
	pt.Samples = append(pt.Samples, &Sample{Target: tg, Round: round, Value: wr.RequestsPerSec, Errors: wr.Errors,
		Detail: map[string]float64{"connections": float64(wr.Requests)}, CPU: &w})
	b.res.addCost(pt, tg, round, w, "connection")
	log.Printf("  cps %s %s round %d wrk %d conns: %.0f conn/s, %d errors; %s", b.mode, tg, round, n, wr.RequestsPerSec, wr.Errors, costLog(w, "conn"))
	if wr.Requests == 0 {
		return errors.New("wrk completed no connection")
	}
	return nil
}

// cpsGo measures short connections with the bench's Go client of n
// workers.
func (b *bench) cpsGo(n, round int, tg string, addr netip.AddrPort) error {
	var cr cpsResult
	w, err := b.measure("connections", func() (float64, error) {
		var err error
		cr, err = runCPS(b.ctx, b.r.PeerNS, addr, n, b.o.duration)
		return float64(cr.conns), err
	})
	if err != nil {
		return err
	}
	v := float64(cr.conns) / cr.elapsed.Seconds()
	s := &Sample{Target: tg, Round: round, Value: v, Errors: cr.errors,
		Detail: map[string]float64{"connections": float64(cr.conns), "seconds": cr.elapsed.Seconds()}, CPU: &w}
	pt := b.point("cps", clientGo, fmt.Sprintf("%d workers", n), n, "connections/s", "conn/s", false)
	pt.Samples = append(pt.Samples, s)
	b.res.addCost(pt, tg, round, w, "connection")
	msg := ""
	if cr.lastErr != nil {
		msg = fmt.Sprintf(" (last error: %v)", cr.lastErr)
	}
	log.Printf("  cps %s %s round %d Go %d workers: %.0f conn/s, %d errors%s; %s", b.mode, tg, round, n, v, cr.errors, msg, costLog(w, "conn"))
	if cr.conns == 0 {
		return fmt.Errorf("no connection completed%s", msg)
	}
	return nil
}

func (b *bench) udp() error {
	return b.eachRound(udpServer, bothTargets, func(round int, tg string, addr netip.AddrPort) error {
		var ur udpResult
		w, err := b.measure("echoes", func() (float64, error) {
			var err error
			ur, err = runUDP(b.ctx, b.r.PeerNS, addr, b.o.udpFlows, b.o.udpWindow, b.o.udpSize, b.o.duration)
			return float64(ur.echoed), err
		})
		if err != nil {
			return err
		}
		v := float64(ur.echoed) / ur.elapsed.Seconds()
		label := fmt.Sprintf("%dB, %d flows x %d", b.o.udpSize, b.o.udpFlows, b.o.udpWindow)
		pt := b.point("udp", clientGo, label, b.o.udpFlows, "echoes/s", "pkt/s", false)
		pt.Samples = append(pt.Samples, &Sample{Target: tg, Round: round, Value: v, Errors: ur.timeouts,
			Detail: map[string]float64{"sent": float64(ur.sent), "echoed": float64(ur.echoed), "seconds": ur.elapsed.Seconds()}, CPU: &w})
		b.res.addCost(pt, tg, round, w, "echo")
		log.Printf("  udp %s %s round %d: %.0f echoes/s (%d sent, %d echoed, %d window timeouts); %s", b.mode, tg, round, v, ur.sent, ur.echoed, ur.timeouts, costLog(w, "echo"))
		if ur.echoed == 0 {
			return errors.New("no datagram came back")
		}
		return nil
	})
}

// latencyRate picks the open-loop rate: -rate, else a quarter of the lower
// of the two targets' keep-alive requests/s at 16 connections (from rps, or
// a short wrk calibration), so that both servers run well below saturation.
// A quarter, not a half: the thread-per-worker client costs more CPU per
// request than wrk, and at half of wrk's rate it saturates the client CPU
// and measures its own queueing.
func (b *bench) latencyRate() (float64, error) {
	if b.o.rate > 0 {
		return b.o.rate, nil
	}
	lowest := 0.0
	for _, p := range b.res.Points {
		if p.Scenario == "rps" && p.Rig == b.mode && p.Metric == "requests/s" && p.Param == 16 {
			k, ok1 := p.summary(kernel)
			x, ok2 := p.summary(xstack)
			if ok1 && ok2 {
				lowest = min(k.median, x.median)
			}
		}
	}
	source := "rps at 16 connections"
	if lowest == 0 {
		source = "a wrk calibration at 16 connections"
		rates := map[string]float64{}
		for _, tg := range bothTargets {
			_, addr, err := b.startServer(httpServer, tg)
			if err != nil {
				return 0, err
			}
			wr, _, err := runWrk(b.ctx, b.r.PeerNS, b.o.clientCPU, addr, 16, b.o.duration)
			if serr := b.stopServer(); err == nil {
				err = serr
			}
			if err != nil {
				return 0, fmt.Errorf("calibration: %w", err)
			}
			rates[tg] = wr.RequestsPerSec
		}
		lowest = min(rates[kernel], rates[xstack])
	}
	rate := float64(int(lowest / 4))
	if rate < 1 {
		return 0, fmt.Errorf("calibration found no throughput (%v req/s)", lowest)
	}
	b.res.note(fmt.Sprintf("latency, rig %s: %.0f requests/s = a quarter of the lower target's keep-alive rate (from %s)", b.mode, rate, source))
	return rate, nil
}

func (b *bench) latency() error {
	if !b.o.uses(clientGo) && !b.o.uses(clientXload) {
		return errors.New("latency measures with the Go client or xload, and -client has neither")
	}
	rate, err := b.latencyRate()
	if err != nil {
		return err
	}
	label := fmt.Sprintf("%s req/s, %d conns", formatValue(rate, "req/s"), b.o.latConns)
	return b.eachRound(httpServer, bothTargets, func(round int, tg string, addr netip.AddrPort) error {
		if b.o.uses(clientGo) {
			if err := b.goLatency(round, tg, addr, rate, label); err != nil {
				return err
			}
		}
		if b.o.uses(clientXload) {
			return b.xloadLatency(round, tg, addr, rate, label)
		}
		return nil
	})
}

// goLatency measures one round's latency with the Go open-loop client.
func (b *bench) goLatency(round int, tg string, addr netip.AddrPort, rate float64, label string) error {
	lr, err := runLatency(b.ctx, b.r.PeerNS, addr, b.o.latConns, rate, b.o.duration, b.snap)
	if err != nil {
		return err
	}
	w := window(lr.cpu[0], lr.cpu[1], float64(len(lr.sorted)), "requests")
	if len(lr.sorted) == 0 {
		return fmt.Errorf("no request completed (last error: %v)", lr.lastErr)
	}
	detail := map[string]float64{
		"rate": rate, "sent": float64(lr.sent), "completed": float64(len(lr.sorted)),
		"missed": float64(lr.missed), "seconds": lr.elapsed.Seconds(),
	}
	b.latencyRows(clientGo, label, round, tg, w, [3]float64{quantile(lr.sorted, 0.5), quantile(lr.sorted, 0.99), quantile(lr.sorted, 0.999)},
		lr.errors+lr.missed, detail, cdfOf(lr.sorted))
	log.Printf("  latency %s %s round %d: p50 %.0fµs p99 %.0fµs p99.9 %.0fµs max %.0fµs (%d requests, %d errors, %d not sent); %s",
		b.mode, tg, round, quantile(lr.sorted, 0.5), quantile(lr.sorted, 0.99), quantile(lr.sorted, 0.999), lr.sorted[len(lr.sorted)-1],
		len(lr.sorted), lr.errors, lr.missed, costLog(w, "req"))
	return nil
}

// xloadLatency measures one round's latency with xload's open loop at the
// same rate and connections: the same schedule, from a client that costs
// a fraction of the Go one per request, so less of the tail is the
// client's own queueing.
func (b *bench) xloadLatency(round int, tg string, addr netip.AddrPort, rate float64, label string) error {
	var xr xloadResult
	w, err := b.measure("requests", func() (float64, error) {
		var err error
		xr, err = b.runXload(addr, b.o.latConns, b.o.duration, false, rate)
		return float64(xr.Done()), err
	})
	if err != nil {
		return err
	}
	if xr.Done() == 0 {
		return fmt.Errorf("xload completed no request (%d reset, %d timed out)", xr.Counts.Reset, xr.Counts.Timeout)
	}
	detail := xloadDetail(xr, "requests")
	detail["rate"] = rate
	detail["late"], detail["missed"] = float64(xr.Counts.Late), float64(xr.Counts.Unsent)
	b.latencyRows(clientXload, label, round, tg, w, [3]float64{xr.P50us, xr.P99us, xr.P999us},
		xr.Counts.Errors()+xr.Counts.Unsent, detail, nil)
	log.Printf("  latency %s %s round %d xload: p50 %.0fµs p99 %.0fµs p99.9 %.0fµs (%d requests of %d scheduled, %d late, %d not sent, %d errors, xload busy %.0f%%); %s",
		b.mode, tg, round, xr.P50us, xr.P99us, xr.P999us, xr.Done(), xr.Counts.Scheduled, xr.Counts.Late,
		xr.Counts.Unsent, xr.Counts.Errors(), xr.CPUBusyPct, costLog(w, "req"))
	return nil
}

// latencyRows adds one round's p50, p99 and p99.9 (µs) of a latency
// client to the table, with the window's cost on the p50 row, and the
// latency distribution (cdf, when the client gives one) for the plot.
func (b *bench) latencyRows(client, label string, round int, tg string, w CPUWindow, q [3]float64,
	errs uint64, detail map[string]float64, cdf *CDF) {
	var p50 *Point
	for i, metric := range []string{"p50", "p99", "p99.9"} {
		s := &Sample{Target: tg, Round: round, Value: q[i], Errors: errs, Detail: detail}
		if i == 0 {
			s.CDF, s.CPU = cdf, &w
		}
		pt := b.point("latency", client, label, b.o.latConns, metric, "µs", true)
		pt.Samples = append(pt.Samples, s)
		if i == 0 {
			p50 = pt
		}
	}
	b.res.addCost(p50, tg, round, w, "request")
}

// ceilingFrames are the frame sizes of the ceiling scenario: the least
// Ethernet frame (the packet-rate limit) and a full 1500-byte MTU frame
// (the limit bulk transfer meets).
var ceilingFrames = []int{60, 1514}

func (b *bench) ceiling() error {
	for round := 1; round <= b.o.rounds; round++ {
		for _, size := range ceilingFrames {
			if err := b.ctx.Err(); err != nil {
				return err
			}
			cr, err := runCeiling(b.ctx, b.r, b.o.serverCPU, b.o.clientCPU, size, b.o.duration)
			if err != nil {
				return err
			}
			v := float64(cr.received) / cr.elapsed.Seconds()
			label := fmt.Sprintf("%dB frames, %s", size, cr.mode)
			pt := b.point("ceiling", clientBlast, label, size, "xsk rx frames/s", "frames/s", false)
			pt.Samples = append(pt.Samples, &Sample{Target: xstack, Round: round, Value: v,
				Detail: map[string]float64{"received": float64(cr.received), "peer_sent": float64(cr.sent),
					"peer_sent_per_s": float64(cr.sent) / cr.elapsed.Seconds(), "seconds": cr.elapsed.Seconds(),
					"kernel_rx_dropped": float64(cr.stats.RxDropped), "rx_ring_full": float64(cr.stats.RxRingFull)}})
			// The IP bytes those frames carry, in the unit bulk reports.
			ip := size - header.EthernetMinimumSize
			gb := b.point("ceiling", clientBlast, label, size, "xsk rx IP throughput", "Gbit/s", false)
			gb.Samples = append(gb.Samples, &Sample{Target: xstack, Round: round, Value: v * float64(ip) * 8 / 1e9})
			log.Printf("  ceiling round %d, %dB frames: %.0f frames/s received, %.2f Gbit/s of IP (peer sent %.0f/s; %s)",
				round, size, v, v*float64(ip)*8/1e9, float64(cr.sent)/cr.elapsed.Seconds(), strings.TrimSpace(cr.mode))
		}
	}
	b.res.note("ceiling: no kernel counterpart; it is the most frames/s the rig's AF_XDP path delivers to one core, an upper bound for xstack's packet rates above; its 1514-byte row, in Gbit/s of IP, is the bound for bulk with MTU-sized frames")
	return nil
}
