package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/xstack/xstack/internal/ctl"
)

// What a measurement cost in CPU: every sample that measures a rate also
// carries the CPU time spent over its window, read at the window's edges:
//
//   - /proc/stat of the server CPU and of the client CPU: the non-idle time
//     (user + nice + system + irq + softirq; steal is the hypervisor's and
//     counts as neither busy nor idle);
//   - for xstack, the loop's busy and idle time (the control plane's stats
//     op: core.LoopStats), and the process's user and system CPU.
//
// The server's cost per unit of work is then, for the kernel, the server
// CPU's non-idle time over the units done in the window, and for xstack
// the loop's busy time over them: a busy-polling loop keeps its CPU 100%
// non-idle whatever the load, so /proc/stat alone would charge xstack its
// idle spinning. The /proc/stat figure of xstack's CPU is kept as a
// cross-check row.

// userHZ is the unit of /proc/stat's CPU times (USER_HZ, fixed at 100 in
// the kernel's ABI on every architecture Linux builds xstack for).
const userHZ = 100

// cpuTimes are one CPU's cumulative times from /proc/stat, in nanoseconds.
type cpuTimes struct {
	User    uint64 `json:"user_ns"`
	Nice    uint64 `json:"nice_ns"`
	System  uint64 `json:"system_ns"`
	Idle    uint64 `json:"idle_ns"`
	Iowait  uint64 `json:"iowait_ns"`
	Irq     uint64 `json:"irq_ns"`
	Softirq uint64 `json:"softirq_ns"`
	Steal   uint64 `json:"steal_ns"`
}

// busy is the non-idle time: user, nice, system, irq and softirq (guest
// time is part of user already).
func (c cpuTimes) busy() uint64 { return c.User + c.Nice + c.System + c.Irq + c.Softirq }

// util is the share of the time the CPU ran that it was busy: steal, when
// the CPU did not run at all, is left out of both.
func (c cpuTimes) util() float64 {
	t := c.busy() + c.Idle + c.Iowait
	if t == 0 {
		return math.NaN()
	}
	return float64(c.busy()) / float64(t)
}

func (c cpuTimes) sub(o cpuTimes) cpuTimes {
	return cpuTimes{
		User: c.User - o.User, Nice: c.Nice - o.Nice, System: c.System - o.System, Idle: c.Idle - o.Idle,
		Iowait: c.Iowait - o.Iowait, Irq: c.Irq - o.Irq, Softirq: c.Softirq - o.Softirq, Steal: c.Steal - o.Steal,
	}
}

// parseProcStat reads the per-CPU lines ("cpuN user nice system idle
// iowait irq softirq steal ...") of /proc/stat's text. Kernels before 2.6.11
// had fewer fields; the first seven are required.
func parseProcStat(text string) (map[int]cpuTimes, error) {
	out := map[int]cpuTimes{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		cpu, err := strconv.Atoi(f[0][3:])
		if err != nil {
			return nil, fmt.Errorf("/proc/stat: bad CPU line %q", sc.Text())
		}
		if len(f) < 8 {
			return nil, fmt.Errorf("/proc/stat: %s has %d fields, want at least 7", f[0], len(f)-1)
		}
		var v [8]uint64
		for i := range v {
			if 1+i >= len(f) {
				break
			}
			n, err := strconv.ParseUint(f[1+i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("/proc/stat: %s field %d: %w", f[0], i+1, err)
			}
			v[i] = n * (1e9 / userHZ)
		}
		out[cpu] = cpuTimes{User: v[0], Nice: v[1], System: v[2], Idle: v[3], Iowait: v[4], Irq: v[5], Softirq: v[6], Steal: v[7]}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("/proc/stat: no per-CPU line")
	}
	return out, nil
}

// cpuSnap is the CPU figures at one edge of a window.
type cpuSnap struct {
	mono           int64 // monotonic clock, ns
	server, client cpuTimes
	loop           *ctl.Stats // xstack's loop, nil for the kernel
	// napiStack and napiPeer are the run time of the NAPI kthreads of
	// the stack side's and the peer's veth end (nic rig mode), ns.
	napiStack, napiPeer uint64
	napi                bool
}

// CPUWindow is what a measurement window cost, the raw figures the cost
// rows are computed from (nanoseconds over the window).
type CPUWindow struct {
	WindowNs int64    `json:"window_ns"`
	Server   cpuTimes `json:"server_cpu"` // /proc/stat of the server CPU
	Client   cpuTimes `json:"client_cpu"` // /proc/stat of the client CPU
	// The xstack loop's busy and idle time, and its process's CPU time
	// (getrusage), over the window; absent for the kernel target.
	LoopBusyNs *uint64 `json:"loop_busy_ns,omitempty"`
	LoopIdleNs *uint64 `json:"loop_idle_ns,omitempty"`
	ProcUserNs *uint64 `json:"proc_user_ns,omitempty"`
	ProcSysNs  *uint64 `json:"proc_sys_ns,omitempty"`
	// LoopStalls counts the loop's working passes of at least 100 µs,
	// 1 ms and 10 ms in the window (ctl.Stats.LongPasses).
	LoopStalls *[3]uint64 `json:"loop_stalls,omitempty"`
	// The loop's passes and the frames it received and sent in the
	// window: frames per unit of work each way, and how much work a pass
	// held.
	LoopPasses   *uint64 `json:"loop_passes,omitempty"`
	LoopRxFrames *uint64 `json:"loop_rx_frames,omitempty"`
	LoopTxFrames *uint64 `json:"loop_tx_frames,omitempty"`
	// The run time of the NAPI kthreads of the stack side's veth end (on
	// the server CPU) and of the peer's (on the client CPU) in the nic rig
	// mode: where the receive work of each side landed.
	NAPIStackNs *uint64 `json:"napi_stack_ns,omitempty"`
	NAPIPeerNs  *uint64 `json:"napi_peer_ns,omitempty"`
	// Units is the work done in the window (requests, connections, bytes,
	// echoes), Unit its name.
	Units float64 `json:"units"`
	Unit  string  `json:"unit"`
	// ClientBound is true when the client CPU was at least
	// clientBoundUtil busy: the rate is then the client's, not the
	// server's.
	ClientBound bool `json:"client_bound"`
}

// clientBoundUtil is the client CPU utilisation from which a measurement
// counts as limited by the client.
const clientBoundUtil = 0.90

// window returns the figures between snapshots a and b for units of work.
func window(a, b cpuSnap, units float64, unit string) CPUWindow {
	w := CPUWindow{WindowNs: b.mono - a.mono, Server: b.server.sub(a.server), Client: b.client.sub(a.client), Units: units, Unit: unit}
	d := func(x, y uint64) *uint64 { v := x - y; return &v }
	if a.napi && b.napi {
		w.NAPIStackNs, w.NAPIPeerNs = d(b.napiStack, a.napiStack), d(b.napiPeer, a.napiPeer)
	}
	if a.loop != nil && b.loop != nil {
		w.LoopBusyNs, w.LoopIdleNs = d(b.loop.BusyNs, a.loop.BusyNs), d(b.loop.IdleNs, a.loop.IdleNs)
		w.ProcUserNs, w.ProcSysNs = d(b.loop.UserNs, a.loop.UserNs), d(b.loop.SysNs, a.loop.SysNs)
		var st [3]uint64
		for i := range st {
			st[i] = b.loop.LongPasses[i] - a.loop.LongPasses[i]
		}
		w.LoopStalls = &st
		w.LoopPasses = d(b.loop.Passes, a.loop.Passes)
		w.LoopRxFrames, w.LoopTxFrames = d(b.loop.RxPackets, a.loop.RxPackets), d(b.loop.TxPackets, a.loop.TxPackets)
	}
	w.ClientBound = w.Client.util() >= clientBoundUtil
	return w
}

// serverNs is the server's CPU time for the work: the loop's busy time
// for xstack, the server CPU's non-idle time for the kernel.
func (w CPUWindow) serverNs() uint64 {
	if w.LoopBusyNs != nil {
		return *w.LoopBusyNs
	}
	return w.Server.busy()
}

// costPer returns the server's CPU time per unit, and the server CPU's
// non-idle time per unit (/proc/stat, the cross-check), both in
// nanoseconds; NaN without units.
func (w CPUWindow) costPer() (server, procStat float64) {
	if w.Units <= 0 {
		return math.NaN(), math.NaN()
	}
	return float64(w.serverNs()) / w.Units, float64(w.Server.busy()) / w.Units
}

// readProcStat returns the times of the server and client CPUs now.
func readProcStat(server, client int) (cpuTimes, cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, cpuTimes{}, err
	}
	m, err := parseProcStat(string(b))
	if err != nil {
		return cpuTimes{}, cpuTimes{}, err
	}
	s, ok1 := m[server]
	c, ok2 := m[client]
	if !ok1 || !ok2 {
		return cpuTimes{}, cpuTimes{}, fmt.Errorf("/proc/stat has no line for CPU %d or %d", server, client)
	}
	return s, c, nil
}

// snap takes the CPU figures now: /proc/stat, and the loop's stats when
// an xstack server runs.
func (b *bench) snap() (cpuSnap, error) {
	var s cpuSnap
	var err error
	if b.ctl != nil {
		var st ctl.Stats
		if err := b.ctl.Call(ctl.OpStats, nil, &st); err != nil {
			return s, fmt.Errorf("xstack stats: %w", err)
		}
		s.loop = &st
	}
	s.mono = monotonic()
	if s.server, s.client, err = readProcStat(b.o.serverCPU, b.o.clientCPU); err != nil {
		return s, err
	}
	if len(b.napi) > 0 {
		s.napi = true
		for _, t := range b.napi {
			ns, err := runTimeNs(t.PID)
			if err != nil {
				return s, fmt.Errorf("NAPI kthread of %s: %w", t.Ifname, err)
			}
			if t.Ifname == b.r.StackIf {
				s.napiStack += ns
			} else {
				s.napiPeer += ns
			}
		}
	}
	return s, nil
}

// runTimeNs is how long task pid has run on a CPU (the first field of
// /proc/<pid>/schedstat, in ns).
func runTimeNs(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return 0, err
	}
	return parseSchedstat(string(b))
}

func parseSchedstat(s string) (uint64, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0, fmt.Errorf("empty schedstat")
	}
	n, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("schedstat %q: %w", strings.TrimSpace(s), err)
	}
	return n, nil
}
