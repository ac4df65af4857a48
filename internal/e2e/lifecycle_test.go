package e2e

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
	"github.com/xstack/xstack/stack"
)

// setXstackKeys adds lines to the [xstack] section of the config file at
// path (rigtest's extra lines land after [port0]).
func setXstackKeys(t *testing.T, path string, lines ...string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "[xstack]\n", "[xstack]\n"+strings.Join(lines, "\n")+"\n", 1)
	if s == string(b) {
		t.Fatalf("%s has no [xstack] section:\n%s", path, b)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// peerEnd is the kernel peer's end of a connection, as the stack's
// netstat shows it.
func peerEnd(c net.Conn) netip.AddrPort {
	ap := c.LocalAddr().(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// connLcores asks every lcore of the process (proc-ids 0..n-1 in runDir)
// for its sockets and returns the proc-id that holds each established
// connection, by the peer's end.
func connLcores(t *testing.T, runDir string, n int) map[netip.AddrPort]int {
	t.Helper()
	owner := map[netip.AddrPort]int{}
	for id := 0; id < n; id++ {
		c, err := ctl.Dial(runDir, id)
		if err != nil {
			t.Fatal(err)
		}
		var socks []stack.Socket
		err = c.Call(ctl.OpSockets, nil, &socks)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range socks {
			if s.State == "ESTABLISHED" {
				owner[netip.AddrPortFrom(s.Remote.Addr().Unmap(), s.Remote.Port())] = id
			}
		}
	}
	return owner
}

// readOutcome is what a peer's read on a connection returned once the
// stack shut down.
type readOutcome struct {
	i   int
	err error
}

func outcomeName(err error) string {
	switch {
	case errors.Is(err, io.EOF):
		return "EOF"
	case errors.Is(err, syscall.ECONNRESET):
		return "reset"
	case err == nil:
		return "data"
	}
	return err.Error()
}

// TestGracefulShutdown: SIGTERM to a stack with idle established
// connections from the kernel peer. With shutdown=fin each peer reads EOF
// (a FIN, not a reset), a connection attempt during the shutdown is
// refused, the stack waits for peers that do not close up to
// shutdown_timeout_ms and then resets them; with shutdown=rst each peer
// reads ECONNRESET. In both, the process exits within the bound, the pcap
// files it was writing are complete and show exactly that on the wire,
// gVisor's reference leak check is clean, and no XDP program is left on
// the interface. Two lcores, in process mode (tools/launch) and thread
// mode.
func TestGracefulShutdown(t *testing.T) {
	hw := rigtest.Build(t, "./examples/helloworld")
	launch := rigtest.Build(t, "./tools/launch")
	for _, tc := range []struct {
		shutdown, mode string
		// hold keeps one connection per lcore open after the stack's FIN,
		// so that the shutdown lasts until the timeout; without, every
		// peer closes on EOF and the stack exits as soon as they have.
		hold    bool
		timeout time.Duration
	}{
		{"fin", "process", true, 2 * time.Second},
		{"fin", "thread", true, 2 * time.Second},
		{"fin", "thread", false, 30 * time.Second},
		{"rst", "process", false, 2 * time.Second},
		{"rst", "thread", false, 2 * time.Second},
	} {
		name := tc.shutdown + "/" + tc.mode
		if tc.shutdown == "fin" && !tc.hold {
			name += "/peers-close"
		}
		timeout := tc.timeout
		t.Run(name, func(t *testing.T) {
			r := rigtest.New(t, rig.Options{Queues: 2})
			pcapDir := t.TempDir()
			conf := rigtest.ConfigLcores(t, r, 3, tc.mode, "[pcap]", "enable=1", "snaplen=128", "savepath="+pcapDir)
			setXstackKeys(t, conf, "shutdown="+tc.shutdown, fmt.Sprintf("shutdown_timeout_ms=%d", timeout.Milliseconds()))
			// Every reference gVisor handed out on the way down is
			// returned: each process checks at exit.
			t.Setenv("XSTACK_LEAK_CHECK", "1")
			var p *rigtest.Proc
			if tc.mode == "thread" {
				p = rigtest.Start(t, "serving on port", hw, "-c", conf)
			} else {
				p = rigtest.Start(t, "serving on port", launch, "-c", conf, "--", hw)
				if _, err := p.WaitLines("serving on port", 2, 20*time.Second); err != nil {
					t.Fatalf("second lcore: %v\n%s", err, p.Output())
				}
			}

			// Idle keep-alive connections, each having had one
			// exchange, until both lcores hold some.
			var conns []net.Conn
			var owner map[netip.AddrPort]int
			for len(conns) < 16 || len(conns) < 64 && !bothLcores(owner) {
				addr := r.StackAddr4
				if len(conns)%2 == 1 {
					addr = r.StackAddr6
				}
				c, err := dial(r.PeerNS, netip.AddrPortFrom(addr, 80))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				if _, err := fetch(c, bufio.NewReader(c), false); err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
				if len(conns) >= 16 {
					owner = connLcores(t, p.RunDir, 2)
				}
			}
			if !bothLcores(owner) {
				t.Fatalf("%d connections, all on one lcore: %v", len(conns), owner)
			}
			// With fin, one connection per lcore is held: its peer reads
			// the FIN but never closes, so that lcore waits for it.
			held := map[int]bool{}
			if tc.hold {
				taken := map[int]bool{}
				for i, c := range conns {
					if id, ok := owner[peerEnd(c)]; ok && !taken[id] {
						taken[id], held[i] = true, true
					}
				}
			}

			results := make(chan readOutcome, len(conns))
			for i, c := range conns {
				go func() {
					c.SetReadDeadline(time.Now().Add(timeout + 15*time.Second))
					_, err := c.Read(make([]byte, 1))
					results <- readOutcome{i, err}
					if !held[i] {
						c.Close() // as a client does on EOF
					}
				}()
			}
			sigterm := time.Now()
			if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"fin": "EOF", "rst": "reset"}[tc.shutdown]
			for range conns {
				o := <-results
				if got := outcomeName(o.err); got != want {
					t.Errorf("connection %d (%s, held %v): the peer's read after SIGTERM gave %s, want %s", o.i, peerEnd(conns[o.i]), held[o.i], got, want)
				}
			}

			// Every peer has seen the stack close: the listeners are gone,
			// and with fin the held connections keep the lcores in their
			// shutdown. A connection attempt now is refused.
			var probes []int
			if tc.hold {
				for _, addr := range []netip.Addr{r.PeerAddr4, r.PeerAddr6} {
					// Above the peer's ephemeral range (Linux's default,
					// 32768-60999), so that a probe never reuses the port of
					// a connection the peer has just closed and the capture
					// never mixes the two.
					port := 61000 + rand.IntN(4000)
					dst := r.StackAddr4
					if addr.Is6() {
						dst = r.StackAddr6
					}
					err := netns.Do(r.PeerNS, func() error {
						d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, uint16(port)))}
						c, err := d.Dial("tcp", netip.AddrPortFrom(dst, 80).String())
						if err == nil {
							c.Close()
						}
						return err
					})
					if !errors.Is(err, syscall.ECONNREFUSED) {
						t.Errorf("connect to %s:80 during the shutdown: %v, want connection refused", dst, err)
					}
					probes = append(probes, port)
				}
			}

			if err := p.Wait(timeout + 20*time.Second); err != nil {
				t.Fatalf("after SIGTERM: %v\n%s", err, p.Output())
			}
			took := time.Since(sigterm)
			t.Logf("%s/%s: exited %v after SIGTERM (shutdown_timeout_ms %d)", tc.shutdown, tc.mode, took.Round(time.Millisecond), timeout.Milliseconds())
			if took > timeout+5*time.Second {
				t.Errorf("exit took %v after SIGTERM, more than shutdown_timeout_ms %v and 5 s", took, timeout)
			}
			if !tc.hold && took > timeout/2 {
				t.Errorf("exit took %v after SIGTERM although every peer closed at once; the wait should end with the last connection, not at shutdown_timeout_ms %v", took, timeout)
			}
			// Each process logs how many connections its wait left; with
			// fin that is the held ones, reset at the timeout.
			stillOpen := 0
			re := regexp.MustCompile(`shutdown \(` + tc.shutdown + `\): (\d+) connection\(s\) still open after`)
			ms := re.FindAllStringSubmatch(p.Output(), -1)
			for _, m := range ms {
				n, _ := strconv.Atoi(m[1])
				stillOpen += n
			}
			wantLines := map[string]int{"process": 2, "thread": 1}[tc.mode]
			if len(ms) != wantLines || stillOpen != len(held) {
				t.Errorf("%d shutdown lines counting %d connections still open, want %d lines and %d (the held ones):\n%s", len(ms), stillOpen, wantLines, len(held), p.Output())
			}
			if n := strings.Count(p.Output(), "xstack: leak check: clean"); n != wantLines {
				t.Errorf("%d processes reported a clean leak check, want %d:\n%s", n, wantLines, p.Output())
			}
			for i := range held {
				conns[i].SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := conns[i].Write([]byte("GET / HTTP/1.1\r\n\r\n")); err == nil {
					t.Errorf("held connection %d: a write after the stack's exit succeeded; the stack should have reset it at the timeout", i)
				}
			}

			rigtest.WaitDetached(t, r, 5*time.Second, "after the stack exited")

			// The capture shows the shutdown on the wire.
			frames := readPcaps(t, pcapDir, 128, []string{"cpu0", "cpu1"})
			flows := tcpFlows(frames, r.StackAddr4, r.StackAddr6)
			for i, c := range conns {
				f := flows[peerEnd(c)]
				if f == nil {
					t.Errorf("connection %d (%s): not in the capture", i, peerEnd(c))
					continue
				}
				switch {
				case tc.shutdown == "rst":
					if f.stackRST < 0 || f.stackFIN >= 0 {
						t.Errorf("connection %d: stack FIN at %d, RST at %d; want an RST and no FIN\n%v", i, f.stackFIN, f.stackRST, f)
					}
				case held[i]:
					if f.stackFIN < 0 || f.peerFIN >= 0 || f.stackRST < f.stackFIN {
						t.Errorf("held connection %d: stack FIN at %d, peer FIN at %d, stack RST at %d; want a FIN, then an RST at the timeout\n%v", i, f.stackFIN, f.peerFIN, f.stackRST, f)
					}
				default:
					if f.stackFIN < 0 || f.peerFIN < f.stackFIN || (f.stackRST >= 0 && f.stackRST < f.peerFIN) {
						t.Errorf("connection %d: stack FIN at %d, peer FIN at %d, stack RST at %d; want the stack's FIN, the peer's FIN, and no RST before\n%v", i, f.stackFIN, f.peerFIN, f.stackRST, f)
					}
				}
			}
			for _, port := range probes {
				found := false
				for ap, f := range flows {
					if ap.Port() == uint16(port) && f.stackRST >= 0 && f.peerSYN >= 0 {
						found = true
					}
				}
				if !found {
					t.Errorf("the capture has no SYN from port %d answered with an RST", port)
				}
			}
		})
	}
}

func bothLcores(owner map[netip.AddrPort]int) bool {
	seen := map[int]bool{}
	for _, id := range owner {
		seen[id] = true
	}
	return len(seen) == 2
}

// pcapFrame is one record of a capture file.
type pcapFrame struct {
	file string
	data []byte
}

// readPcaps reads every <dir>/<prefix>_<seq>.pcap of each prefix with
// rigtest.ReadPcap, which checks that each is a complete classic pcap file
// (header, whole records up to the end of the file), and returns the
// frames, file by file in sequence.
func readPcaps(t *testing.T, dir string, snaplen int, prefixes []string) []pcapFrame {
	t.Helper()
	var frames []pcapFrame
	for _, prefix := range prefixes {
		names, _ := filepath.Glob(filepath.Join(dir, prefix+"_*.pcap"))
		if len(names) == 0 {
			t.Errorf("no capture file %s_*.pcap in %s", prefix, dir)
		}
		sort.Slice(names, func(i, j int) bool { return pcapSeq(names[i]) < pcapSeq(names[j]) })
		for _, name := range names {
			recs, err := rigtest.ReadPcap(name, snaplen)
			if err != nil {
				t.Error(err)
			}
			if len(recs) == 0 {
				t.Errorf("%s: no frames", name)
			}
			for _, r := range recs {
				frames = append(frames, pcapFrame{name, r.Data})
			}
		}
	}
	return frames
}

func pcapSeq(name string) int {
	s := strings.TrimSuffix(filepath.Base(name), ".pcap")
	n, _ := strconv.Atoi(s[strings.LastIndexByte(s, '_')+1:])
	return n
}

// tcpFlow is what a capture shows of one TCP connection: the position (in
// capture order) of the first frame of each kind, or -1.
type tcpFlow struct {
	peerSYN, stackFIN, peerFIN, stackRST int
	trace                                []string // each frame: position, file, direction, flags
}

// String lists the flow's frames, for a failure message.
func (f *tcpFlow) String() string { return strings.Join(f.trace, " ") }

// tcpFlows indexes the TCP frames of a capture by the peer's end of their
// connection (the end that is not one of the stack's addresses).
func tcpFlows(frames []pcapFrame, stack4, stack6 netip.Addr) map[netip.AddrPort]*tcpFlow {
	flows := map[netip.AddrPort]*tcpFlow{}
	for i, f := range frames {
		src, dst, flags, ok := parseTCP(f.data)
		if !ok {
			continue
		}
		fromStack := src.Addr() == stack4 || src.Addr() == stack6
		peer := src
		if fromStack {
			peer = dst
		}
		fl := flows[peer]
		if fl == nil {
			fl = &tcpFlow{peerSYN: -1, stackFIN: -1, peerFIN: -1, stackRST: -1}
			flows[peer] = fl
		}
		first := func(p *int, cond bool) {
			if cond && *p < 0 {
				*p = i
			}
		}
		const fin, syn, rst = 0x01, 0x02, 0x04
		dir := "peer>"
		if fromStack {
			dir = "stack>"
		}
		fl.trace = append(fl.trace, fmt.Sprintf("%d:%s:%s%#02x", i, filepath.Base(f.file), dir, flags))
		first(&fl.peerSYN, !fromStack && flags&syn != 0)
		first(&fl.stackFIN, fromStack && flags&fin != 0)
		first(&fl.peerFIN, !fromStack && flags&fin != 0)
		first(&fl.stackRST, fromStack && flags&rst != 0)
	}
	return flows
}

// parseTCP returns the addresses and flags of an Ethernet frame carrying
// TCP over IPv4 or IPv6 (without extension headers).
func parseTCP(b []byte) (src, dst netip.AddrPort, flags byte, ok bool) {
	if len(b) < 14 {
		return
	}
	be := binary.BigEndian
	var sa, da netip.Addr
	var tcp []byte
	switch be.Uint16(b[12:]) {
	case 0x0800:
		ip := b[14:]
		if len(ip) < 20 || ip[9] != 6 {
			return
		}
		ihl := int(ip[0]&0xf) * 4
		if len(ip) < ihl+14 {
			return
		}
		sa, da = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		tcp = ip[ihl:]
	case 0x86dd:
		ip := b[14:]
		if len(ip) < 40+14 || ip[6] != 6 {
			return
		}
		sa, da = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		tcp = ip[40:]
	default:
		return
	}
	return netip.AddrPortFrom(sa, be.Uint16(tcp)), netip.AddrPortFrom(da, be.Uint16(tcp[2:])), tcp[13], true
}

// nobody is the unprivileged user the permission tests run tools as.
var nobody = &syscall.Credential{Uid: 65534, Gid: 65534}

// TestControlPlaneRootOnly: the stack makes its run directory 0700 and its
// control socket 0600, so a tool run by another user is refused, with a
// message that says so, names the run directory and says to run as root;
// and an oversized control request gets a clear error while the stack keeps
// serving its tools and its traffic.
func TestControlPlaneRootOnly(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	// A world-readable parent, so that only the stack's own modes stand
	// between the other user and the sockets.
	parent, err := os.MkdirTemp("", "xstack-ctl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	runDir := filepath.Join(parent, "run", "inst")
	t.Setenv("XSTACK_RUN_DIR", runDir)
	p := startHelloworld(t, r)
	if _, err := p.WaitLine("control socket", 5*time.Second); err != nil {
		t.Fatalf("no control socket: %v\n%s", err, p.Output())
	}

	sock := ctl.SocketPath(runDir, 0)
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{
		{filepath.Dir(runDir), os.ModeDir | 0o700},
		{runDir, os.ModeDir | 0o700},
		{sock, os.ModeSocket | 0o600},
	} {
		fi, err := os.Lstat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, fi.Mode(), c.mode)
		}
	}

	netstat := rigtest.Build(t, "./tools/netstat")
	ifconfig := rigtest.Build(t, "./tools/ifconfig")
	asNobody := func(bin string, args ...string) (string, int) {
		cmd := exec.Command(bin, append([]string{"--run-dir", runDir}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("%s: %v", bin, err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	refused := func(what string) {
		for _, run := range []struct {
			bin  string
			args []string
		}{
			{netstat, []string{"-an"}},
			{netstat, []string{"-p", "0", "--json"}},
			{ifconfig, nil},
			{ifconfig, []string{"-p", "0"}},
		} {
			out, code := asNobody(run.bin, run.args...)
			name := filepath.Base(run.bin) + " " + strings.Join(run.args, " ")
			t.Logf("%s as uid 65534 (%s): %s", name, what, strings.TrimSpace(out))
			if code != 1 {
				t.Errorf("%s as uid 65534 (%s): exit %d, want 1\n%s", name, what, code, out)
			}
			for _, want := range []string{"permission denied", runDir, "root"} {
				if !strings.Contains(out, want) {
					t.Errorf("%s as uid 65534 (%s): the message does not say %q:\n%s", name, what, want, out)
				}
			}
		}
	}
	refused("run directory 0700")
	// The socket's own mode refuses too, should the directories be opened
	// up.
	for _, mode := range []os.FileMode{0o755, 0o700} {
		for _, d := range []string{filepath.Dir(runDir), runDir} {
			if err := os.Chmod(d, mode); err != nil {
				t.Fatal(err)
			}
		}
		if mode == 0o755 {
			refused("socket 0600 in 0755 directories")
		}
	}
	// Root gets an answer from the same tools.
	out, err := exec.Command(netstat, "--run-dir", runDir, "-an").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "LISTEN") {
		t.Fatalf("netstat as root: %v\n%s", err, out)
	}

	// An oversized request: an error reply that says so, then the
	// connection is closed (the next request's start is unknown).
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	big := `{"v":1,"op":"netstat.sockets","args":{"pad":"` + strings.Repeat("x", ctl.MaxRequest+1000) + `"}}` + "\n"
	go io.WriteString(conn, big) // the server stops reading at the limit
	br := bufio.NewReader(conn)
	line, err := ctl.ReadLine(br, ctl.MaxReply)
	var rep ctl.Reply
	if err != nil || json.Unmarshal(line, &rep) != nil || !strings.Contains(rep.Error, fmt.Sprintf("request too large: more than %d bytes", ctl.MaxRequest)) {
		t.Fatalf("oversized request: reply %q, %v; want an error saying the request is too large", line, err)
	}
	if _, err := ctl.ReadLine(br, ctl.MaxReply); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("after the oversized request the connection gave %v, want it closed", err)
	}
	if _, err := p.WaitLine("control: request too large", 10*time.Second); err != nil {
		t.Errorf("the stack did not log the oversized request: %v\n%s", err, p.Output())
	}
	// A request just under the limit is served.
	c, err := ctl.Dial(runDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var info ctl.Info
	if err := c.Call(ctl.OpInfo, nil, &info); err != nil || info.Pid != p.Cmd.Process.Pid {
		t.Fatalf("info after the oversized request: %+v, %v", info, err)
	}
	pad := strings.Repeat(" ", ctl.MaxRequest-len(`{"v":1,"op":"info"}`)-2)
	if err := c.CallRaw([]byte(`{"v":1,"op":"info"}`+pad+"\n"), &info); err != nil {
		t.Errorf("a request of %d bytes (under the limit): %v", ctl.MaxRequest-1, err)
	}
	hc, err := dial(r.PeerNS, netip.AddrPortFrom(r.StackAddr4, 80))
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	if _, err := fetch(hc, bufio.NewReader(hc), true); err != nil {
		t.Fatalf("the stack stopped serving after the oversized request: %v", err)
	}
}
