package core

import (
	"bufio"
	"bytes"
	"errors"
	"log"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/nic/nictest"
	"github.com/xstack/xstack/stack"
)

// syncBuffer is a log destination safe for the loop and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newControlLcore runs an lcore over an in-memory queue with its control
// plane serving in a temporary run dir, which it returns.
func newControlLcore(t *testing.T) (*Lcore, string, *syncBuffer) {
	t.Helper()
	runDir := filepath.Join(t.TempDir(), "run", "inst")
	t.Setenv("XSTACK_RUN_DIR", runDir)
	q := nictest.New(1500)
	st, err := stack.New(q, stack.Config{Name: "t0", Addr4: netip.MustParsePrefix("198.18.0.1/16")})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	l := &Lcore{
		ID:    0,
		Conf:  &Config{File: "test.ini", Pcap: PcapConfig{Snaplen: 96, Savelen: 1 << 20, Savepath: t.TempDir()}},
		Port:  &PortConfig{Ifname: "t0"},
		Stack: st,
		log:   log.New(logs, "", 0),
	}
	l.Loop = NewLoop(q, st, LoopConfig{IdleSleep: 100 * time.Microsecond, BusyPoll: true})
	if err := l.startControlPlane(); err != nil {
		t.Fatal(err)
	}
	if l.ctl == nil {
		t.Fatalf("no control server: %s", logs)
	}
	done := make(chan error, 1)
	go func() { done <- l.Loop.Run(nil) }()
	t.Cleanup(func() {
		l.Loop.Stop()
		<-done
		l.Close()
		q.Close()
	})
	return l, runDir, logs
}

func TestControlServes(t *testing.T) {
	l, runDir, logs := newControlLcore(t)
	if fi, err := os.Stat(runDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("run dir: %v, %v; want mode 0700", fi.Mode(), err)
	}
	if fi, err := os.Stat(ctl.SocketPath(runDir, 0)); err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket: %v, %v; want a socket with mode 0600", fi.Mode(), err)
	}
	if ids, err := ctl.Procs(runDir); err != nil || len(ids) != 1 || ids[0] != 0 {
		t.Fatalf("Procs = %v, %v", ids, err)
	}
	c, err := ctl.Dial(runDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	var info ctl.Info
	if err := c.Call(ctl.OpInfo, nil, &info); err != nil || info.Pid != os.Getpid() || info.Ifname != "t0" {
		t.Fatalf("info: %+v, %v", info, err)
	}
	var v ctl.SysctlValue
	if err := c.Call(ctl.OpSysctlSet, ctl.SysctlValue{Name: "net.inet.tcp.recvspace", Value: "65536"}, &v); err != nil || v.Value != "65536" {
		t.Fatalf("sysctl set: %+v, %v", v, err)
	}
	if got, _ := l.Stack.Sysctl("net.inet.tcp.recvspace"); got != "65536" {
		t.Fatalf("stack recvspace %s after a set through the control plane", got)
	}
	// A check changes nothing, and refuses what a set refuses.
	if err := c.Call(ctl.OpSysctlCheck, ctl.SysctlValue{Name: "net.inet.tcp.recvspace", Value: "131072"}, nil); err != nil {
		t.Fatalf("sysctl check: %v", err)
	}
	if got, _ := l.Stack.Sysctl("net.inet.tcp.recvspace"); got != "65536" {
		t.Fatalf("stack recvspace %s after a check of 131072, want 65536 as set before", got)
	}
	var all []ctl.SysctlValue
	if err := c.Call(ctl.OpSysctlGet, nil, &all); err != nil || len(all) != len(stack.SysctlNames()) {
		t.Fatalf("sysctl get all: %d values, %v", len(all), err)
	}
	for i, n := range stack.SysctlNames() {
		if want, _ := l.Stack.Sysctl(n); all[i] != (ctl.SysctlValue{Name: n, Value: want}) {
			t.Errorf("sysctl get all: value %d is %+v, want %s=%s", i, all[i], n, want)
		}
	}
	// net.inet.tcp.mem_limit is the socket layer's: the stack keeps it
	// for posix to read.
	if err := c.Call(ctl.OpSysctlSet, ctl.SysctlValue{Name: "net.inet.tcp.mem_limit", Value: "1099511627776"}, &v); err != nil || v.Value != "1099511627776" {
		t.Fatalf("sysctl set mem_limit: %+v, %v", v, err)
	}
	if got := l.Stack.SocketDefaults().MemLimit; got != 1<<40 {
		t.Fatalf("SocketDefaults().MemLimit = %d after a set through the control plane", got)
	}

	passes := l.Loop.Stats().Passes
	for _, tc := range []struct {
		name, line, want string
	}{
		{"garbage", "garbage\n", "malformed request"},
		{"version", `{"v":9,"op":"info"}` + "\n", "unsupported protocol version 9"},
		{"unknown op", `{"v":1,"op":"format.disk"}` + "\n", `unknown op "format.disk"`},
		{"bad args", `{"v":1,"op":"sysctl.set","args":{"name":1}}` + "\n", "bad args"},
		{"unknown sysctl", `{"v":1,"op":"sysctl.set","args":{"name":"x.y","value":"1"}}` + "\n", "unknown sysctl"},
		{"bad value", `{"v":1,"op":"sysctl.set","args":{"name":"net.inet.tcp.sack","value":"7"}}` + "\n", "expected 0 or 1"},
		{"value the stack refuses", `{"v":1,"op":"sysctl.set","args":{"name":"net.inet.tcp.timestamps","value":"0"}}` + "\n", "only 1 is supported"},
		{"check unknown", `{"v":1,"op":"sysctl.check","args":{"name":"x.y","value":"1"}}` + "\n", "unknown sysctl"},
		{"check bad value", `{"v":1,"op":"sysctl.check","args":{"name":"net.inet.tcp.sack","value":"7"}}` + "\n", "expected 0 or 1"},
		{"route nonsense", `{"v":1,"op":"route.add","args":{"dst":"nonsense"}}` + "\n", "expected an IPv4 or IPv6 address"},
		{"gateway off-link", `{"v":1,"op":"route.add","args":{"dst":"10.0.0.0/8","gateway":"1.2.3.4"}}` + "\n", "not on a network"},
		{"neighbor family", `{"v":1,"op":"neigh.delete","args":{"addr":"2001:2::9"}}` + "\n", "not an address of the ARP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := c.CallRaw([]byte(tc.line), nil)
			var re *ctl.RemoteError
			if !errors.As(err, &re) || !strings.Contains(re.Msg, tc.want) {
				t.Fatalf("reply %v, want an error with %q", err, tc.want)
			}
		})
	}
	// The connection survives bad requests, and the loop kept running.
	if err := c.Call(ctl.OpInfo, nil, &info); err != nil {
		t.Fatal(err)
	}
	if l.Loop.Stats().Passes <= passes {
		t.Fatal("the loop did not run while serving requests")
	}
	if !strings.Contains(logs.String(), "control: malformed request") {
		t.Errorf("malformed request not logged:\n%s", logs)
	}
}

func TestControlOversizedRequest(t *testing.T) {
	_, runDir, logs := newControlLcore(t)
	conn, err := net.Dial("unix", ctl.SocketPath(runDir, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go conn.Write(append(bytes.Repeat([]byte("x"), ctl.MaxRequest+10), '\n'))
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := ctl.ReadLine(bufio.NewReader(conn), ctl.MaxReply)
	if err != nil || !strings.Contains(string(line), "request too large") {
		t.Fatalf("reply %q, %v; want request too large", line, err)
	}
	if !strings.Contains(logs.String(), "request too large") {
		t.Errorf("not logged:\n%s", logs)
	}
	// The server still answers others.
	c, err := ctl.Dial(runDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Call(ctl.OpInfo, nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestControlPcap(t *testing.T) {
	l, runDir, _ := newControlLcore(t)
	c, err := ctl.Dial(runDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	var s stack.PcapStatus
	if err := c.Call(ctl.OpPcapOn, ctl.PcapArgs{Snaplen: 64, Savepath: dir}, &s); err != nil || !s.Enabled || s.Snaplen != 64 || s.Savelen != 1<<20 {
		t.Fatalf("pcap on: %+v, %v", s, err)
	}
	if err := c.Call(ctl.OpPcapOn, nil, nil); err == nil {
		t.Fatal("pcap on twice succeeded")
	}
	l.Stack.Deliver([][]byte{make([]byte, 60)}) // a frame for the tap
	if err := c.Call(ctl.OpPcapOff, nil, &s); err != nil || s.Enabled || s.Frames == 0 {
		t.Fatalf("pcap off: %+v, %v", s, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "cpu0_0.pcap")); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctl.OpPcapOn, ctl.PcapArgs{Snaplen: 100, Savelen: 50, Savepath: dir}, nil); err == nil {
		t.Fatal("pcap on with savelen < header + snaplen succeeded")
	}
}

func TestControlSecondServerAndCleanup(t *testing.T) {
	l, runDir, _ := newControlLcore(t)
	if _, err := listenControl(l, runDir); err == nil || !strings.Contains(err.Error(), "another live process") {
		t.Fatalf("second server on the same socket: %v", err)
	}
	l.ctl.close()
	if _, err := os.Stat(filepath.Dir(runDir)); !os.IsNotExist(err) {
		t.Fatalf("run dirs left behind: %v", err)
	}
	if _, err := ctl.Dial(runDir, 0); !errors.Is(err, ctl.ErrNoProcess) {
		t.Fatalf("dial after close: %v, want ErrNoProcess", err)
	}
	// A socket left by a dead process is replaced.
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: ctl.SocketPath(runDir, 0), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	s, err := listenControl(l, runDir)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	s.wg.Add(1)
	go s.routineAccept()
	s.close()
	os.RemoveAll(filepath.Dir(runDir))
}
