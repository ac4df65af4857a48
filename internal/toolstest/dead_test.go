package toolstest

import (
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/internal/ctl/ctltest"
	"github.com/xstack/xstack/stack/stackinfo"
)

// TestTopRounds runs top for several rounds: with --json each round is one
// line holding one JSON object with the rates and the raw counters, and
// the busy % of a round is the one its raw counters give.
func TestTopRounds(t *testing.T) {
	e := start(t)
	out := e.ok(t, "top", "--json", "-n", "3", "-d", "0.2")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("top --json -n 3 printed %d lines, want 3:\n%s", len(lines), out)
	}
	type lcore struct {
		ProcID     int     `json:"proc_id"`
		BusyPct    float64 `json:"busy_pct"`
		UserPct    float64 `json:"user_pct"`
		SysPct     float64 `json:"sys_pct"`
		BusyNs     uint64  `json:"busy_ns"`
		IdleNs     uint64  `json:"idle_ns"`
		UserNs     uint64  `json:"user_ns"`
		SysNs      uint64  `json:"sys_ns"`
		TimeNs     int64   `json:"time_ns"`
		IntervalNs int64   `json:"interval_ns"`
	}
	fields := []string{"proc_id", "lcore", "busy_pct", "user_pct", "sys_pct", "passes_per_sec", "rx_pps", "rx_bps",
		"tx_pps", "tx_bps", "conns", "busy_ns", "idle_ns", "user_ns", "sys_ns", "time_ns", "interval_ns", "passes", "rx_bytes"}
	var prev *lcore
	for i, l := range lines {
		var raw struct {
			TimeNs int64             `json:"time_ns"`
			Lcores []json.RawMessage `json:"lcores"`
		}
		dec := json.NewDecoder(strings.NewReader(l))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&raw); err != nil || dec.More() || raw.TimeNs == 0 || len(raw.Lcores) != 1 {
			t.Fatalf("round %d: %q is not one object {time_ns, lcores} with one lcore (%v)", i, l, err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw.Lcores[0], &m); err != nil {
			t.Fatal(err)
		}
		for _, f := range fields {
			if _, ok := m[f]; !ok {
				t.Errorf("round %d: lcore lacks %q: %s", i, f, raw.Lcores[0])
			}
		}
		var c lcore
		if err := json.Unmarshal(raw.Lcores[0], &c); err != nil {
			t.Fatal(err)
		}
		if c.BusyPct < 0 || c.BusyPct > 100 || c.UserPct < 0 || c.SysPct < 0 || c.UserNs+c.SysNs == 0 || c.IntervalNs <= 0 {
			t.Errorf("round %d: %+v", i, c)
		}
		if prev != nil {
			busy, idle := float64(c.BusyNs-prev.BusyNs), float64(c.IdleNs-prev.IdleNs)
			if c.TimeNs-prev.TimeNs != c.IntervalNs || busy+idle <= 0 || math.Abs(100*busy/(busy+idle)-c.BusyPct) > 1e-6 {
				t.Errorf("round %d: %+v after %+v: busy %% and interval do not follow from the raw counters", i, c, *prev)
			}
		}
		prev = &c
	}

	text := e.ok(t, "top", "-n", "2", "-d", "0.1")
	if strings.Count(text, "busy%  user%   sys%") != 2 {
		t.Fatalf("top -n 2 has not two tables with busy%%, user%%, sys%%:\n%s", text)
	}
}

// TestToolsSkipDeadProcess leaves the socket of a dead proc-id 1 beside
// the live proc-id 0: every tool, reading or changing, reports the dead
// one in one line on standard error, prints what the live one answered
// and exits 0; named with -p, the dead one is an error; and a run dir of
// dead processes only is an error for every tool.
func TestToolsSkipDeadProcess(t *testing.T) {
	e := start(t)
	ctltest.Stale(t, e.runDir, 1)
	capture := t.TempDir()
	peer := e.r.PeerAddr4.String()
	cmds := [][]string{
		{"ifconfig"},
		{"ifconfig", "--json"},
		{"ifconfig", e.r.StackIf, "mtu", "1400"},
		{"sysctl", "net.inet.tcp.sack"},
		{"sysctl", "-w", "net.inet.tcp.recvspace=65536"},
		{"netstat", "-an"},
		{"netstat", "-s"},
		{"netstat", "-i"},
		{"netstat", "-r"},
		{"route", "show"},
		{"route", "add", "-net", "198.19.0.0/24", peer},
		{"route", "get", "198.19.0.7"},
		{"route", "delete", "198.19.0.0/24"},
		{"arp", "-s", "198.18.0.50", "02:00:00:00:00:50"},
		{"arp", "-a"},
		{"arp", "-d", "198.18.0.50"},
		{"ndp", "-a"},
		{"ndp", "--json", "-a"},
		{"top", "-n", "2", "-d", "0.1"},
		{"top", "--json", "-n", "1", "-d", "0.1"},
		{"pcap", "on", "-w", capture},
		{"pcap", "status"},
		{"pcap", "off"},
	}
	for _, cmd := range cmds {
		t.Run(strings.Join(cmd, " "), func(t *testing.T) {
			out, errOut, code := e.run(t, cmd[0], cmd[1:]...)
			lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
			// top reports the dead process once, at the connect.
			if code != 0 || len(lines) != 1 || !strings.HasPrefix(lines[0], cmd[0]+": proc-id 1: not answering") ||
				!strings.Contains(lines[0], "stale socket "+ctl.SocketPath(e.runDir, 1)) {
				t.Fatalf("exit %d, stderr %q; want exit 0 and one line %q", code, errOut, cmd[0]+": proc-id 1: not answering ... stale socket ...")
			}
			if out == "" && cmd[0] != "arp" {
				t.Fatal("printed nothing of what the live process answered")
			}
			if cmd[0] == "pcap" && cmd[1] == "on" && !strings.Contains(out, "proc 0: capture on, "+capture+"/") {
				t.Fatalf("pcap on printed %q; want proc 0's capture on in %s", out, capture)
			}
		})
	}
	// The changes reached the live process.
	var ifc ctl.Interface
	e.json(t, &ifc, "ifconfig", "-p", "0")
	if ifc.MTU != 1400 {
		t.Errorf("MTU %d after ifconfig mtu 1400 with a dead process beside", ifc.MTU)
	}
	var routes []stackinfo.Route
	e.json(t, &routes, "route", "-p", "0", "show")
	for _, r := range routes {
		if r.Dst.String() == "198.19.0.0/24" {
			t.Errorf("route still there after route delete: %+v", routes)
		}
	}

	// Named with -p, the dead process is an error; the live one is not.
	for _, cmd := range cmds {
		if cmd[0] == "top" {
			cmd = []string{"top", "-n", "1", "-d", "0.1"}
		}
		args := append([]string{"-p", "1"}, cmd[1:]...)
		e.fails(t, 1, cmd[0]+": proc-id 1: not answering", cmd[0], args...)
	}
	if _, errOut, code := e.run(t, "netstat", "-p", "0", "-an"); code != 0 || errOut != "" {
		t.Fatalf("netstat -p 0: exit %d, stderr %q", code, errOut)
	}

	// Only dead processes: every tool fails, after reporting each.
	dead := filepath.Join(t.TempDir(), "run")
	ctltest.Stale(t, dead, 0)
	ctltest.Stale(t, dead, 1)
	for _, cmd := range cmds {
		_, errOut, code := runIn(t, dead, cmd[0], cmd[1:]...)
		if code != 1 || strings.Count(errOut, ": not answering") != 2 || !strings.Contains(errOut, "no xstack process answered") {
			t.Errorf("%s with only dead processes: exit %d, stderr %q; want exit 1, both reported, and no process answered", strings.Join(cmd, " "), code, errOut)
		}
	}
}
