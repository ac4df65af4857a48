package main

import (
	"bytes"
	"math"
	"net"
	"net/netip"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/internal/ctl"
)

func TestParseProcStat(t *testing.T) {
	const ms = 1e7 // one USER_HZ tick in ns
	for _, tc := range []struct {
		name string
		text string
		want map[int]cpuTimes
		err  string
	}{
		{
			name: "current kernel",
			text: "cpu  10 0 20 300 4 0 1 0 0 0\n" +
				"cpu0 1 2 3 4 5 6 7 8 9 10\n" +
				"cpu1 100 0 50 1000 0 10 40 5 0 0\n" +
				"intr 12345 0 0\nctxt 999\nbtime 1700000000\n",
			want: map[int]cpuTimes{
				0: {User: 1 * ms, Nice: 2 * ms, System: 3 * ms, Idle: 4 * ms, Iowait: 5 * ms, Irq: 6 * ms, Softirq: 7 * ms, Steal: 8 * ms},
				1: {User: 100 * ms, System: 50 * ms, Idle: 1000 * ms, Irq: 10 * ms, Softirq: 40 * ms, Steal: 5 * ms},
			},
		},
		{
			name: "no steal field",
			text: "cpu3 1 1 1 1 1 1 1\n",
			want: map[int]cpuTimes{3: {User: ms, Nice: ms, System: ms, Idle: ms, Iowait: ms, Irq: ms, Softirq: ms}},
		},
		{name: "too few fields", text: "cpu0 1 2 3 4\n", err: "has 4 fields"},
		{name: "not a number", text: "cpu0 1 2 x 4 5 6 7 8\n", err: "field 3"},
		{name: "bad cpu", text: "cpuX 1 2 3 4 5 6 7 8\n", err: "bad CPU line"},
		{name: "no cpu lines", text: "cpu  1 2 3 4 5 6 7 8\nintr 1\n", err: "no per-CPU line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcStat(tc.text)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d CPUs, want %d: %+v", len(got), len(tc.want), got)
			}
			for cpu, w := range tc.want {
				if got[cpu] != w {
					t.Errorf("cpu%d = %+v, want %+v", cpu, got[cpu], w)
				}
			}
		})
	}
}

func TestCPUTimes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		c          cpuTimes
		busy       uint64
		util       float64
		clientBnd  bool
		nanWithout bool
	}{
		// Busy: user + nice + system + irq + softirq; iowait counts as
		// idle; steal is neither.
		{name: "half busy", c: cpuTimes{User: 10, Nice: 5, System: 20, Irq: 5, Softirq: 10, Idle: 40, Iowait: 10, Steal: 900}, busy: 50, util: 0.5},
		{name: "stolen but never idle", c: cpuTimes{User: 80, System: 20, Steal: 300}, busy: 100, util: 1, clientBnd: true},
		{name: "at the line", c: cpuTimes{User: 90, Idle: 10}, busy: 90, util: 0.9, clientBnd: true},
		{name: "just below", c: cpuTimes{User: 89, Idle: 11}, busy: 89, util: 0.89},
		{name: "no time", c: cpuTimes{Steal: 5}, busy: 0, nanWithout: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if b := tc.c.busy(); b != tc.busy {
				t.Errorf("busy = %d, want %d", b, tc.busy)
			}
			u := tc.c.util()
			if tc.nanWithout {
				if !math.IsNaN(u) {
					t.Errorf("util = %v, want NaN", u)
				}
				return
			}
			if math.Abs(u-tc.util) > 1e-9 {
				t.Errorf("util = %v, want %v", u, tc.util)
			}
			w := window(cpuSnap{}, cpuSnap{client: tc.c}, 1, "x")
			if w.ClientBound != tc.clientBnd {
				t.Errorf("client-bound = %v, want %v", w.ClientBound, tc.clientBnd)
			}
		})
	}
}

func TestWindowCost(t *testing.T) {
	at := func(mono int64, serverBusy, serverIdle, clientBusy, clientIdle uint64, loop *ctl.Stats) cpuSnap {
		return cpuSnap{mono: mono, server: cpuTimes{System: serverBusy, Idle: serverIdle},
			client: cpuTimes{User: clientBusy, Idle: clientIdle}, loop: loop}
	}
	for _, tc := range []struct {
		name           string
		a, b           cpuSnap
		units          float64
		server, whole  float64 // ns per unit
		loop, clientBd bool
	}{
		{
			// 1 s window: the kernel's server CPU 0.5 s busy for 25,000
			// requests = 20 µs each.
			name: "kernel", a: at(0, 1e9, 1e9, 0, 0, nil), b: at(1e9, 1.5e9, 1.5e9, 0.95e9, 0.05e9, nil),
			units: 25000, server: 20e3, whole: 20e3, clientBd: true,
		},
		{
			// xstack: the CPU is fully busy (spinning) but the loop
			// was busy 0.25 s: 10 µs per request from the loop, 40 µs
			// per request from /proc/stat.
			name: "xstack",
			a: at(0, 0, 0, 0, 0, &ctl.Stats{BusyNs: 5e9, IdleNs: 7e9, UserNs: 1, SysNs: 2,
				Passes: 100, RxPackets: 1000, TxPackets: 2000, LongPasses: [3]uint64{4, 2, 1}}),
			b: at(1e9, 1e9, 0, 0.5e9, 0.5e9, &ctl.Stats{BusyNs: 5.25e9, IdleNs: 7.75e9, UserNs: 3, SysNs: 5,
				Passes: 150, RxPackets: 1100, TxPackets: 2300, LongPasses: [3]uint64{7, 2, 1}}),
			units: 25000, server: 10e3, whole: 40e3, loop: true,
		},
		{
			name: "bytes", a: at(0, 0, 0, 0, 0, nil), b: at(2e9, 1e9, 1e9, 1e9, 1e9, nil),
			units: 2e9, server: 0.5, whole: 0.5, // 0.5 ns/byte = 0.5 CPU-s/GB
		},
		{name: "no units", a: at(0, 0, 0, 0, 0, nil), b: at(1e9, 1e9, 0, 0, 1e9, nil), units: 0, server: math.NaN(), whole: math.NaN()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := window(tc.a, tc.b, tc.units, "u")
			server, whole := w.costPer()
			same := func(x, y float64) bool { return (math.IsNaN(x) && math.IsNaN(y)) || math.Abs(x-y) < 1e-6*math.Abs(y) }
			if !same(server, tc.server) || !same(whole, tc.whole) {
				t.Errorf("cost = %v server, %v whole CPU ns/unit; want %v, %v", server, whole, tc.server, tc.whole)
			}
			if (w.LoopBusyNs != nil) != tc.loop {
				t.Errorf("loop figures present = %v, want %v", w.LoopBusyNs != nil, tc.loop)
			}
			if tc.loop && (*w.LoopIdleNs != 0.75e9 || *w.ProcUserNs != 2 || *w.ProcSysNs != 3) {
				t.Errorf("loop idle %d, user %d, sys %d: want 0.75e9, 2, 3", *w.LoopIdleNs, *w.ProcUserNs, *w.ProcSysNs)
			}
			if tc.loop && (*w.LoopPasses != 50 || *w.LoopRxFrames != 100 || *w.LoopTxFrames != 300 || *w.LoopStalls != [3]uint64{3, 0, 0}) {
				t.Errorf("loop passes %d, frames in %d, out %d, stalls %v: want 50, 100, 300, [3 0 0]",
					*w.LoopPasses, *w.LoopRxFrames, *w.LoopTxFrames, *w.LoopStalls)
			}
			if w.ClientBound != tc.clientBd {
				t.Errorf("client-bound = %v, want %v", w.ClientBound, tc.clientBd)
			}
			if w.WindowNs != tc.b.mono-tc.a.mono {
				t.Errorf("window %d ns", w.WindowNs)
			}
		})
	}
}

// TestCostRows checks the rows addCost makes and how the table marks a
// client-bound target: on the rate row and the client CPU row, not on the
// cost rows, and a client CPU row has no ratio.
func TestCostRows(t *testing.T) {
	r := &Results{}
	rate := r.point(Point{Scenario: "rps", Rig: "nic", Client: clientWrk, Label: "16 conns", Param: 16, Metric: "requests/s", Unit: "req/s"})
	other := r.point(Point{Scenario: "rps", Rig: "veth", Client: clientWrk, Label: "16 conns", Param: 16, Metric: "requests/s", Unit: "req/s"})
	loopBusy := uint64(0.25e9)
	for round := 1; round <= 3; round++ {
		kw := CPUWindow{Server: cpuTimes{System: 0.5e9, Idle: 0.5e9}, Client: cpuTimes{User: 0.95e9, Idle: 0.05e9}, Units: 25000}
		xw := CPUWindow{Server: cpuTimes{System: 1e9}, Client: cpuTimes{User: 0.5e9, Idle: 0.5e9}, Units: 25000, LoopBusyNs: &loopBusy}
		rate.Samples = append(rate.Samples, &Sample{Target: kernel, Round: round, Value: 25000}, &Sample{Target: xstack, Round: round, Value: 25000})
		other.Samples = append(other.Samples, &Sample{Target: kernel, Round: round, Value: 1}, &Sample{Target: xstack, Round: round, Value: 1})
		r.addCost(rate, kernel, round, kw, "request")
		r.addCost(rate, xstack, round, xw, "request")
	}
	bytes := r.point(Point{Scenario: "bulk", Rig: "nic", Client: clientGo, Label: "1 flow", Param: 1, Metric: "throughput", Unit: "Gbit/s"})
	r.addCost(bytes, kernel, 1, CPUWindow{Server: cpuTimes{System: 1e9}, Client: cpuTimes{User: 1e9}, Units: 1.25e9}, "byte")
	r.addCost(bytes, xstack, 1, CPUWindow{Server: cpuTimes{System: 1e9}, Client: cpuTimes{User: 1e9}, Units: 0.5e9}, "byte")

	var b strings.Builder
	r.writeTable(&b)
	out := b.String()
	for _, want := range []string{
		"| rps | nic | wrk | 16 conns | requests/s (req/s) | 25.0k client-bound | 25.0k–25.0k | 25.0k | 25.0k–25.0k | 1.00 |",
		"| rps | nic | wrk | 16 conns | server CPU/request (µs) | 20.0 | 20.0–20.0 | 10.0 | 10.0–10.0 | 0.50 (lower is better) |",
		"| rps | nic | wrk | 16 conns | server CPU/request" + procStatSuffix + " (µs) | 20.0 | 20.0–20.0 | 40.0 | 40.0–40.0 | 2.00 (lower is better) |",
		"| rps | nic | wrk | 16 conns | client CPU (%) | 95.0 client-bound | 95.0–95.0 | 50.0 | 50.0–50.0 | — |",
		// The same point in the other rig mode has no client CPU row:
		// nothing marks it.
		"| rps | veth | wrk | 16 conns | requests/s (req/s) | 1 | 1–1 | 1 | 1–1 | 1.00 |",
		"| bulk | nic | Go | 1 flow | server CPU (CPU-s/GB) | 0.80 | 0.80–0.80 | 2.00 | 2.00–2.00 | 2.50 (lower is better) |",
		"| bulk | nic | Go | 1 flow | throughput (Gbit/s) | — | — | — | — | — |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks\n%s\nin\n%s", want, out)
		}
	}
	if strings.Contains(out, "server CPU/request (µs) | 20.0 client-bound") {
		t.Errorf("a cost row is marked client-bound:\n%s", out)
	}
}

func TestParseSchedstat(t *testing.T) {
	if n, err := parseSchedstat("123456789 2000 17\n"); err != nil || n != 123456789 {
		t.Errorf("parseSchedstat = %d, %v", n, err)
	}
	for _, bad := range []string{"", "x 1 2"} {
		if _, err := parseSchedstat(bad); err == nil {
			t.Errorf("parseSchedstat(%q) accepted", bad)
		}
	}
}

func TestParseRigModes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		ok   bool
	}{
		{"veth,nic", []string{"veth", "nic"}, true},
		{"nic, veth, nic", []string{"nic", "veth"}, true},
		{"nic", []string{"nic"}, true},
		{"veth,pci", nil, false},
		{"", nil, false},
	} {
		got, err := parseRigModes(tc.in)
		if (err == nil) != tc.ok || strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("parseRigModes(%q) = %v, %v", tc.in, got, err)
		}
	}
}

// TestUDP4Frame checks the ceiling's frame with gVisor's parsers: the
// addresses and ports it was given, and both checksums valid.
func TestUDP4Frame(t *testing.T) {
	dst, _ := net.ParseMAC("02:00:00:00:00:01")
	src, _ := net.ParseMAC("02:00:00:00:00:02")
	payload := []byte("eighteen bytes!!!!")
	f := udp4Frame(dst, src, netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.0.1"), 40000, 9, payload)
	if len(f) != 60 {
		t.Fatalf("frame is %d bytes, want 60", len(f))
	}
	eth := header.Ethernet(f)
	if eth.DestinationAddress() != tcpip.LinkAddress(dst) || eth.SourceAddress() != tcpip.LinkAddress(src) || eth.Type() != header.IPv4ProtocolNumber {
		t.Fatalf("ethernet header %x", f[:14])
	}
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	if !ip.IsValid(len(ip)) || !ip.IsChecksumValid() || ip.TransportProtocol() != header.UDPProtocolNumber {
		t.Fatalf("bad IPv4 header %x", ip[:20])
	}
	if ip.SourceAddress() != tcpip.AddrFrom4([4]byte{198, 18, 0, 2}) || ip.DestinationAddress() != tcpip.AddrFrom4([4]byte{198, 18, 0, 1}) {
		t.Errorf("addresses %v -> %v", ip.SourceAddress(), ip.DestinationAddress())
	}
	u := header.UDP(ip.Payload())
	if u.SourcePort() != 40000 || u.DestinationPort() != 9 || int(u.Length()) != 8+len(payload) || !bytes.Equal(u.Payload(), payload) {
		t.Errorf("udp header %x", u[:8])
	}
	if u.Checksum() == 0 || !u.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), checksum.Checksum(u.Payload(), 0)) {
		t.Errorf("UDP checksum %#04x is not valid", u.Checksum())
	}
}
