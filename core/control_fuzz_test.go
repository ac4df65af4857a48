package core

import (
	"bytes"
	"encoding/json"
	"log"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/internal/fuzzcorpus"
	"github.com/xstack/xstack/stack"
	"github.com/xstack/xstack/stack/stacktest"
)

// FuzzControlRequest runs up to eight request lines, one after the other,
// against an lcore's control plane as its loop runs them: parsed and
// checked by ctl.ParseRequest, then executed by execControl on a stack
// over an in-memory queue. Every address, prefix, gateway, Ethernet
// address, MTU and sysctl value in the args reaches the parsers that turn
// them into stack calls. It checks that no handler panics (execControl
// would turn a panic into an error reply and a log line: either is a bug
// here), that every reply is version 1 with exactly one of an error or a
// result and encodes as JSON, and that a sysctl value read back after a
// set is accepted again and reads back the same.
//
// The harness has no XDP port and no AF_XDP queue, so it leaves out what
// needs them: ifconfig.set with an address to add or delete (the parsing
// is the one route.add uses), counters (the queue's counters), and the
// pcap ops, which write files where the args say (FuzzPcapCapture covers
// the capture).
func FuzzControlRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, script []byte) {
		logs := &syncBuffer{}
		st, q := stacktest.NewStack(t, stack.Config{
			Name:  "t0",
			Addr4: netip.MustParsePrefix("198.18.0.1/16"),
			Addr6: netip.MustParsePrefix("2001:2::1/64"),
		})
		l := &Lcore{Conf: &Config{File: "fuzz.ini"}, Port: &PortConfig{Ifname: "t0"}, Stack: st, log: log.New(logs, "", 0)}
		l.Loop = NewLoop(q, st, LoopConfig{})

		lines := bytes.SplitN(script, []byte("\n"), 9)
		for _, line := range lines[:min(len(lines), 8)] {
			req, err := ctl.ParseRequest(line)
			if err != nil || !slices.Contains(loopOps, req.Op) || req.Op == ctl.OpCounters {
				continue
			}
			if req.Op == ctl.OpIfconfigSet {
				var a ctl.IfconfigArgs
				if ctl.DecodeArgs(req.Args, &a) == nil && (a.AddAddr != "" || a.DelAddr != "") {
					continue
				}
			}
			rep := l.execControl(req)
			if strings.Contains(logs.String(), "panicked") {
				t.Fatalf("%s panicked:\n%s", line, logs)
			}
			if rep.V != ctl.Version || (rep.Error == "") == (len(rep.Result) == 0) {
				t.Fatalf("%s: reply %+v", line, rep)
			}
			if b, err := json.Marshal(rep); err != nil || !json.Valid(b) {
				t.Fatalf("%s: reply does not encode: %v", line, err)
			}
			if req.Op == ctl.OpSysctlSet && rep.Error == "" {
				var v ctl.SysctlValue
				if err := json.Unmarshal(rep.Result, &v); err != nil {
					t.Fatal(err)
				}
				if err := stack.CheckSysctl(v.Name, v.Value); err != nil {
					t.Fatalf("%s: read back %q, which the config layer refuses: %v", line, v.Value, err)
				}
				if err := st.SetSysctl(v.Name, v.Value); err != nil {
					t.Fatalf("%s: read back %q, which the stack refuses: %v", line, v.Value, err)
				}
				if again, err := st.Sysctl(v.Name); err != nil || again != v.Value {
					t.Fatalf("%s: read back %q, set it, read back %q (%v)", line, v.Value, again, err)
				}
			}
		}
	})
}

func controlSeeds() []fuzzcorpus.Seed {
	req := func(op, args string) string {
		if args == "" {
			return `{"v":1,"op":"` + op + `"}`
		}
		return `{"v":1,"op":"` + op + `","args":` + args + `}`
	}
	script := func(lines ...string) []any { return []any{[]byte(strings.Join(lines, "\n"))} }
	return []fuzzcorpus.Seed{
		{Name: "show", Args: script(req("info", ""), req("stats", ""), req("ifconfig", ""), req("netstat.sockets", ""), req("route.show", ""))},
		{Name: "ifconfig", Args: script(req("ifconfig.set", `{"mtu":1280}`), req("ifconfig.set", `{"mtu":70000}`), req("ifconfig.set", `{"up":false}`), req("ifconfig.set", `{"up":true}`))},
		{Name: "sysctl", Args: script(req("sysctl.get", `{"names":["net.inet.tcp.sack"]}`), req("sysctl.set", `{"name":"net.inet.tcp.sendspace","value":"262144"}`),
			req("sysctl.set", `{"name":"net.inet.tcp.cc","value":"reno"}`), req("sysctl.set", `{"name":"net.inet.tcp.sack","value":"yes"}`), req("sysctl.get", ""),
			req("sysctl.check", `{"name":"net.inet.tcp.recvspace","value":"131072"}`), req("sysctl.check", `{"name":"net.inet.tcp.sack","value":"2"}`))},
		{Name: "routes", Args: script(req("route.add", `{"dst":"198.19.0.0/24","gateway":"198.18.0.2"}`), req("route.add", `{"dst":"2001:3::/64","gateway":"2001:2::2"}`),
			req("route.get", `{"dst":"198.19.0.9"}`), req("route.add", `{"dst":"10.1.2.3"}`), req("route.delete", `{"dst":"198.19.0.0/24","gateway":"198.18.0.2"}`),
			req("route.add", `{"dst":"0.0.0.0/0","gateway":"::ffff:198.18.0.2"}`), req("route.get", `{"dst":"fe80::1%eth0"}`), req("route.show", ""))},
		{Name: "neighbours", Args: script(req("neigh.add", `{"addr":"198.18.0.2","mac":"02:00:00:00:00:02"}`), req("neigh.add", `{"ipv6":true,"addr":"2001:2::2","mac":"0200.0000.0002"}`),
			req("neigh.show", ""), req("neigh.show", `{"ipv6":true}`), req("neigh.delete", `{"addr":"198.18.0.2"}`),
			req("neigh.add", `{"addr":"198.18.0.3","mac":"00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"}`), req("neigh.delete", `{"ipv6":true,"addr":"::ffff:1.2.3.4"}`))},
		{Name: "bad", Args: script(req("route.add", `{"dst":"198.19.0.0/33"}`), req("neigh.add", `{"addr":"198.18.0.2","mac":"zz"}`), req("sysctl.get", `{"names":["x"]}`), `{"v":1,"op":"route.add","args":{"dst":1}}`)},
	}
}

func TestControlRequestSeeds(t *testing.T) {
	fuzzcorpus.Sync(t, "FuzzControlRequest", controlSeeds())
}
