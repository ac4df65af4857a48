package toolstest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
	"github.com/xstack/xstack/internal/xstest"
	"github.com/xstack/xstack/stack"
)

// env is helloworld running on a rig of its own, serving its control
// socket in a temporary run directory.
type env struct {
	r      *rig.Rig
	p      *rigtest.Proc
	runDir string
}

// start creates a rig and runs helloworld on it with extra config lines.
func start(t *testing.T, extra ...string) *env {
	t.Helper()
	return startProgram(t, "./examples/helloworld", "serving on port", extra...)
}

// startProgram creates a rig and runs the xstack program pkg on it.
func startProgram(t *testing.T, pkg, ready string, extra ...string) *env {
	t.Helper()
	r := rigtest.New(t, rig.Options{})
	runDir := filepath.Join(t.TempDir(), "run")
	t.Setenv("XSTACK_RUN_DIR", runDir) // inherited by the program
	bin := rigtest.Build(t, pkg)
	conf := rigtest.Config(t, r, extra...)
	p := rigtest.Start(t, ready, bin, "-c", conf)
	if _, err := p.WaitLine("control socket", 5*time.Second); err != nil {
		t.Fatalf("no control socket: %v\n%s", err, p.Output())
	}
	t.Cleanup(func() {
		p.Stop(5 * time.Second)
		if _, err := os.Stat(runDir); !os.IsNotExist(err) {
			t.Errorf("run dir %s left behind (%v)", runDir, err)
		}
	})
	return &env{r: r, p: p, runDir: runDir}
}

// run runs tool with args (after --run-dir) and returns its output and exit
// status.
func (e *env) run(t *testing.T, tool string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runIn(t, e.runDir, tool, args...)
}

// runIn runs tool with args against runDir.
func runIn(t *testing.T, runDir, tool string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	bin := rigtest.Build(t, "./tools/"+tool)
	cmd := exec.Command(bin, append([]string{"--run-dir", runDir}, args...)...)
	var o, s bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &s
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("%s: %v", tool, err)
	}
	return o.String(), s.String(), code
}

// ok runs tool and fails the test unless it exits 0.
func (e *env) ok(t *testing.T, tool string, args ...string) string {
	t.Helper()
	out, errOut, code := e.run(t, tool, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d\nstdout:\n%s\nstderr:\n%s", tool, strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// json runs tool with --json and decodes its output into v.
func (e *env) json(t *testing.T, v any, tool string, args ...string) {
	t.Helper()
	out := e.ok(t, tool, append([]string{"--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s --json %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
}

// fails runs tool and fails the test unless it exits with code and says
// want on standard error.
func (e *env) fails(t *testing.T, code int, want, tool string, args ...string) {
	t.Helper()
	out, errOut, got := e.run(t, tool, args...)
	if got != code || !strings.Contains(errOut, want) {
		t.Fatalf("%s %s: exit %d, stderr %q (stdout %q); want exit %d and %q", tool, strings.Join(args, " "), got, errOut, out, code, want)
	}
}

// dial connects from the peer namespace, from local if it is valid.
func dial(ns string, local netip.Addr, to netip.AddrPort, timeout time.Duration) (*net.TCPConn, error) {
	var c net.Conn
	err := netns.Do(ns, func() error {
		d := net.Dialer{Timeout: timeout}
		if local.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
		}
		var err error
		c, err = d.Dial("tcp", to.String())
		return err
	})
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// get sends a request for path on c and reads the response; it returns the
// response's size.
func get(c net.Conn, br *bufio.Reader, path string, close bool) (int, error) {
	resp, err := rigtest.HTTPGet(c, br, path, close, 10*time.Second)
	return len(resp), err
}

func (e *env) connect(t *testing.T, to netip.Addr) (*net.TCPConn, *bufio.Reader) {
	t.Helper()
	c, err := dial(e.r.PeerNS, netip.Addr{}, netip.AddrPortFrom(to, 80), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

func findSocket(socks []stack.Socket, local, remote netip.AddrPort) *stack.Socket {
	for i := range socks {
		if socks[i].Local == local && socks[i].Remote == remote {
			return &socks[i]
		}
	}
	return nil
}

// waitServerClosed waits until the stack's end of c, a connection the
// server closed first, is in TIME_WAIT or gone: the FIN exchange is over.
func (e *env) waitServerClosed(t *testing.T, c *net.TCPConn) {
	t.Helper()
	local := netip.MustParseAddrPort(c.RemoteAddr().String())
	remote := netip.MustParseAddrPort(c.LocalAddr().String())
	xstest.WaitFor(t, 10*time.Second, "the connection to end after the server closed it", func() error {
		var socks []stack.Socket
		e.json(t, &socks, "netstat", "-a")
		if s := findSocket(socks, local, remote); s != nil && s.State != "TIME_WAIT" && s.State != "CLOSE" {
			return fmt.Errorf("still %s", s.State)
		}
		return nil
	})
}

func TestNetstatConnections(t *testing.T) {
	e := start(t)
	for _, addr := range []netip.Addr{e.r.StackAddr4, e.r.StackAddr6} {
		t.Run(addr.String(), func(t *testing.T) {
			c, br := e.connect(t, addr)
			if _, err := get(c, br, "/", false); err != nil {
				t.Fatal(err)
			}
			local := netip.AddrPortFrom(addr, 80)
			remote := netip.MustParseAddrPort(c.LocalAddr().String())
			var socks []stack.Socket
			e.json(t, &socks, "netstat", "-a")
			s := findSocket(socks, local, remote)
			if s == nil || s.State != "ESTABLISHED" {
				t.Fatalf("netstat -a: %+v; want %v - %v ESTABLISHED", socks, local, remote)
			}
			proto := map[bool]string{true: "tcp", false: "tcp6"}[addr.Is4()]
			listen := netip.AddrPortFrom(map[bool]netip.Addr{true: netip.IPv4Unspecified(), false: netip.IPv6Unspecified()}[addr.Is4()], 80)
			if l := findSocket(socks, listen, netip.AddrPortFrom(listen.Addr(), 0)); l == nil || l.State != "LISTEN" || l.Proto != proto {
				t.Fatalf("netstat -a: %+v; want a %s listener on %v", socks, proto, listen)
			}

			// The text form, as netstat -an prints it.
			text := e.ok(t, "netstat", "-an")
			want := fmt.Sprintf("%s:%d", remote.Addr(), remote.Port())
			found := false
			for _, line := range strings.Split(text, "\n") {
				f := strings.Fields(line)
				if len(f) == 6 && f[0] == proto && f[3] == fmt.Sprintf("%s:80", addr) && f[4] == want && f[5] == "ESTABLISHED" {
					found = true
				}
			}
			if !found || !strings.Contains(text, "LISTEN") {
				t.Fatalf("netstat -an lacks %s %s:80 %s ESTABLISHED, or the listeners:\n%s", proto, addr, want, text)
			}
			// Without -a, listeners are left out.
			if text := e.ok(t, "netstat"); strings.Contains(text, "LISTEN") || !strings.Contains(text, want) {
				t.Fatalf("netstat without -a:\n%s", text)
			}

			var round struct {
				Lcores []struct {
					Lcore int `json:"lcore"`
					Conns int `json:"conns"`
				} `json:"lcores"`
			}
			e.json(t, &round, "top", "-n", "1", "-d", "0.2")
			if len(round.Lcores) != 1 || round.Lcores[0].Conns < 1 {
				t.Fatalf("top: %+v; want one lcore with a connection", round)
			}

			// The server closes first on "Connection: close": it goes
			// through TIME_WAIT (or is gone once that ends).
			if _, err := get(c, br, "/", true); err != nil {
				t.Fatal(err)
			}
			c.Close()
			e.waitServerClosed(t, c)
		})
	}
}

func TestIfconfig(t *testing.T) {
	e := start(t)
	text := e.ok(t, "ifconfig")
	for _, want := range []string{
		e.r.StackIf + ": flags=4163<UP,BROADCAST,RUNNING,MULTICAST>",
		"inet " + e.r.StackAddr4.String() + "  netmask 255.255.0.0  broadcast 198.18.255.255",
		"inet6 " + e.r.StackAddr6.String() + "  prefixlen 64",
		"ether " + e.r.StackMAC.String(),
		"RX packets", "TX packets",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("ifconfig lacks %q:\n%s", want, text)
		}
	}

	c, br := e.connect(t, e.r.StackAddr4)
	var before, after ctl.Interface
	e.json(t, &before, "ifconfig")
	const n = 20
	req := len("GET / HTTP/1.1\r\nHost: xstack\r\n\r\n")
	resp := 0
	for i := 0; i < n; i++ {
		m, err := get(c, br, "/", false)
		if err != nil {
			t.Fatal(err)
		}
		resp += m
	}
	time.Sleep(100 * time.Millisecond) // the last ACKs
	e.json(t, &after, "ifconfig", e.r.StackIf)
	const hdr = 14 + 20 + 20 // Ethernet, IPv4, TCP without options
	rxp, rxb := after.RxPackets-before.RxPackets, after.RxBytes-before.RxBytes
	txp, txb := after.TxPackets-before.TxPackets, after.TxBytes-before.TxBytes
	if rxp < n || rxp > 3*n || rxb < uint64(n*(req+hdr)) {
		t.Errorf("RX grew by %d packets, %d bytes; want %d..%d packets, at least %d bytes", rxp, rxb, n, 3*n, n*(req+hdr))
	}
	if txp < n || txp > 3*n || txb < uint64(resp+n*hdr) {
		t.Errorf("TX grew by %d packets, %d bytes; want %d..%d packets, at least %d bytes", txp, txb, n, 3*n, resp+n*hdr)
	}

	// An added address is served (the XDP program learns it too), a
	// removed one no longer.
	extra := netip.MustParseAddr("198.18.0.9")
	e.ok(t, "ifconfig", e.r.StackIf, "add", extra.String()+"/16")
	c2, err := dial(e.r.PeerNS, netip.Addr{}, netip.AddrPortFrom(extra, 80), 5*time.Second)
	if err != nil {
		t.Fatalf("connect to the added address: %v", err)
	}
	if _, err := get(c2, bufio.NewReader(c2), "/", true); err != nil {
		t.Fatal(err)
	}
	c2.Close()
	e.ok(t, "ifconfig", e.r.StackIf, "delete", extra.String())
	if c3, err := dial(e.r.PeerNS, netip.Addr{}, netip.AddrPortFrom(extra, 80), time.Second); err == nil {
		c3.Close()
		t.Fatal("the removed address still answers")
	}

	var ifc ctl.Interface
	e.ok(t, "ifconfig", e.r.StackIf, "mtu", "1400")
	e.json(t, &ifc, "ifconfig")
	if ifc.MTU != 1400 {
		t.Fatalf("MTU %d after setting 1400", ifc.MTU)
	}
	e.fails(t, 1, "out of range", "ifconfig", e.r.StackIf, "mtu", "9000")
	e.fails(t, 1, "no such interface", "ifconfig", "eth9")
	e.fails(t, 2, "unknown argument", "ifconfig", e.r.StackIf, "frobnicate")
	// The connection made before still works.
	if _, err := get(c, br, "/", false); err != nil {
		t.Fatal(err)
	}
}

// peerWindow returns the send window the peer's kernel has from the stack
// (what the stack advertises), from TCP_INFO.
func peerWindow(t *testing.T, c *net.TCPConn) uint32 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		t.Fatal(err)
	}
	if ierr != nil {
		t.Fatal(ierr)
	}
	return info.Snd_wnd
}

// TestSysctlRecvspace sets the receive buffer at run time and checks the
// window the peer's kernel gets. The buffer sysctls apply to sockets made
// after the set; a connection takes its listener's buffer, as on FreeBSD.
// So the server (testdata/relisten) opens a second listener after the set.
func TestSysctlRecvspace(t *testing.T) {
	e := startProgram(t, "./internal/toolstest/testdata/relisten", "serving")
	window := func(port uint16) uint32 {
		c, err := dial(e.r.PeerNS, netip.Addr{}, netip.AddrPortFrom(e.r.StackAddr4, port), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := get(c, bufio.NewReader(c), "/", false); err != nil {
			t.Fatal(err)
		}
		return peerWindow(t, c)
	}
	var vs []struct {
		ProcID int               `json:"proc_id"`
		Values []ctl.SysctlValue `json:"values"`
	}
	e.json(t, &vs, "sysctl", "net.inet.tcp.recvspace")
	if len(vs) != 1 || len(vs[0].Values) != 1 || vs[0].Values[0].Value != "1048576" {
		t.Fatalf("sysctl net.inet.tcp.recvspace: %+v", vs)
	}
	before := window(80)
	const space = 16384
	out := e.ok(t, "sysctl", "-w", fmt.Sprintf("net.inet.tcp.recvspace=%d", space))
	if want := fmt.Sprintf("net.inet.tcp.recvspace: 1048576 -> %d\n", space); out != want {
		t.Fatalf("sysctl -w printed %q, want %q", out, want)
	}
	if out := e.ok(t, "sysctl", "-n", "net.inet.tcp.recvspace"); out != fmt.Sprintf("%d\n", space) {
		t.Fatalf("sysctl -n after set: %q", out)
	}
	from := len(strings.Split(e.p.Output(), "\n"))
	e.p.Cmd.Process.Signal(syscall.SIGHUP)
	xstest.WaitFor(t, 10*time.Second, "a listener on port 81 after SIGHUP", func() error {
		if !strings.Contains(strings.Join(strings.Split(e.p.Output(), "\n")[from-1:], "\n"), "listening on port 81") {
			return fmt.Errorf("not in the output:\n%s", e.p.Output())
		}
		return nil
	})
	after := window(81)
	if after > space || after >= before {
		t.Fatalf("the peer sees a window of %d before and %d after recvspace=%d; want at most %d and less than before", before, after, space, space)
	}
	if old := window(80); old != before {
		t.Errorf("a connection to the listener made before the set got a window of %d, want %d as before", old, before)
	}
	all := e.ok(t, "sysctl", "-a")
	if strings.Count(all, "\n") < 15 || !strings.Contains(all, "net.inet.tcp.sack: 1\n") {
		t.Fatalf("sysctl -a:\n%s", all)
	}
}

func TestRoute(t *testing.T) {
	e := start(t)
	other := netip.MustParseAddr("198.19.0.2")
	if out, err := exec.Command("ip", "-n", e.r.PeerNS, "addr", "add", other.String()+"/32", "dev", e.r.PeerIf).CombinedOutput(); err != nil {
		t.Fatalf("ip addr add: %v\n%s", err, out)
	}
	to := netip.AddrPortFrom(e.r.StackAddr4, 80)
	reach := func() error {
		c, err := dial(e.r.PeerNS, other, to, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = get(c, bufio.NewReader(c), "/", true)
		return err
	}
	if reach() == nil {
		t.Fatal("198.19.0.2 reached the stack before a route to it was added")
	}
	e.ok(t, "route", "add", "-net", "198.19.0.0/24", e.r.PeerAddr4.String())
	if err := reach(); err != nil {
		t.Fatalf("after route add: %v", err)
	}
	out := e.ok(t, "route", "get", other.String())
	if !strings.Contains(out, "gateway: "+e.r.PeerAddr4.String()) || !strings.Contains(out, "destination: 198.19.0.0/24") {
		t.Fatalf("route get:\n%s", out)
	}
	if out := e.ok(t, "netstat", "-r"); !strings.Contains(out, "198.19.0.0/24") {
		t.Fatalf("netstat -r lacks the route:\n%s", out)
	}
	var routes []stack.Route
	e.json(t, &routes, "route", "show")
	if len(routes) != 3 || !slices.Contains(routes, stack.Route{Dst: netip.MustParsePrefix("198.19.0.0/24"), Gateway: e.r.PeerAddr4, Iface: e.r.StackIf}) {
		t.Fatalf("route show: %+v", routes)
	}
	// An IPv6 host route, for the form.
	e.ok(t, "route", "add", "-inet6", "-host", "2001:3::7", e.r.PeerAddr6.String())
	e.ok(t, "route", "delete", "-inet6", "2001:3::7")

	e.ok(t, "route", "delete", "198.19.0.0/24")
	if reach() == nil {
		t.Fatal("198.19.0.2 still reaches the stack after route delete")
	}
	e.fails(t, 1, "no route", "route", "delete", "198.19.0.0/24")
	e.fails(t, 1, "no route", "route", "get", "203.0.113.1")
}

// arpRequests counts ARP requests from the stack seen in the peer namespace.
type arpWatch struct {
	fd int
}

func watchARP(t *testing.T, e *env) *arpWatch {
	t.Helper()
	var fd int
	err := netns.Do(e.r.PeerNS, func() error {
		ifi, err := net.InterfaceByName(e.r.PeerIf)
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_ARP)
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return &arpWatch{fd}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// request waits up to d for an ARP request from sender for target.
func (w *arpWatch) request(sender, target netip.Addr, d time.Duration) bool {
	buf := make([]byte, 1500)
	for end := time.Now().Add(d); time.Now().Before(end); {
		n, _, err := unix.Recvfrom(w.fd, buf, 0)
		if err != nil || n < 42 {
			continue
		}
		arp := buf[14:n]
		if arp[7] == 1 && netip.AddrFrom4([4]byte(arp[14:18])) == sender && netip.AddrFrom4([4]byte(arp[24:28])) == target {
			return true
		}
	}
	return false
}

func TestArpNdp(t *testing.T) {
	e := start(t)
	c, br := e.connect(t, e.r.StackAddr4)
	if _, err := get(c, br, "/", false); err != nil {
		t.Fatal(err)
	}
	c6, br6 := e.connect(t, e.r.StackAddr6)
	if _, err := get(c6, br6, "/", false); err != nil {
		t.Fatal(err)
	}
	var ns []stack.Neighbor
	e.json(t, &ns, "arp", "-a")
	if len(ns) != 1 || ns[0].Addr != e.r.PeerAddr4 || ns[0].MAC != e.r.PeerMAC.String() {
		t.Fatalf("arp -a: %+v; want %v at %v", ns, e.r.PeerAddr4, e.r.PeerMAC)
	}
	if out := e.ok(t, "arp", "-an"); !strings.Contains(out, fmt.Sprintf("? (%s) at %s on %s", e.r.PeerAddr4, e.r.PeerMAC, e.r.StackIf)) {
		t.Fatalf("arp -an:\n%s", out)
	}
	e.json(t, &ns, "ndp", "-a")
	found := false
	for _, n := range ns {
		found = found || n.Addr == e.r.PeerAddr6 && n.MAC == e.r.PeerMAC.String()
	}
	if !found {
		t.Fatalf("ndp -a: %+v; want %v at %v", ns, e.r.PeerAddr6, e.r.PeerMAC)
	}

	// arp -d: the stack resolves the peer again, and the peer sees it ask.
	w := watchARP(t, e)
	e.ok(t, "arp", "-d", e.r.PeerAddr4.String())
	e.json(t, &ns, "arp", "-a")
	if len(ns) != 0 {
		t.Fatalf("arp -a after -d: %+v", ns)
	}
	c2, br2 := e.connect(t, e.r.StackAddr4)
	if _, err := get(c2, br2, "/", false); err != nil {
		t.Fatal(err)
	}
	if !w.request(e.r.StackAddr4, e.r.PeerAddr4, 5*time.Second) {
		t.Fatal("the peer saw no ARP request from the stack after arp -d")
	}
	e.fails(t, 1, "no such neighbor entry", "arp", "-d", "198.18.0.77")
	e.fails(t, 1, "expected an IPv4 address", "arp", "-d", "2001:2::2")

	e.ok(t, "arp", "-s", "198.18.0.50", "02:00:00:00:00:50")
	if out := e.ok(t, "arp", "198.18.0.50"); !strings.Contains(out, "at 02:00:00:00:00:50") || !strings.Contains(out, "permanent") {
		t.Fatalf("arp after -s:\n%s", out)
	}
	e.fails(t, 1, "Ethernet address", "arp", "-s", "198.18.0.51", "zz:00")
	e.ok(t, "ndp", "-d", e.r.PeerAddr6.String())
	if _, err := get(c6, br6, "/", false); err != nil {
		t.Fatalf("IPv6 after ndp -d: %v", err)
	}
}

func TestBadInputKeepsServing(t *testing.T) {
	e := start(t)
	e.fails(t, 1, "unknown sysctl", "sysctl", "net.inet.tcp.nosuch")
	e.fails(t, 1, "unknown sysctl", "sysctl", "-w", "net.inet.tcp.nosuch=1")
	e.fails(t, 1, "expected 0 or 1", "sysctl", "-w", "net.inet.tcp.sack=5")
	e.fails(t, 1, "expected bytes", "sysctl", "net.inet.tcp.recvspace=12")
	e.fails(t, 1, "only 1 is supported", "sysctl", "net.inet.tcp.timestamps=0") // refused by the stack
	e.fails(t, 2, "expected -a", "sysctl")
	// Every name and value is checked before the first is set.
	before := e.ok(t, "sysctl", "-n", "net.inet.tcp.recvspace")
	e.fails(t, 1, "expected 0 or 1", "sysctl", "-w", "net.inet.tcp.recvspace=65536", "net.inet.tcp.sack=5")
	e.fails(t, 1, "unknown sysctl", "sysctl", "-w", "net.inet.tcp.recvspace=65536", "net.inet.tcp.nosuch")
	if after := e.ok(t, "sysctl", "-n", "net.inet.tcp.recvspace"); after != before || before == "65536\n" {
		t.Fatalf("recvspace %q before and %q after commands refused for another name; want it unchanged (and not 65536)", before, after)
	}
	e.fails(t, 1, "expected an IPv4 or IPv6 address", "route", "add", "nonsense", "198.18.0.2")
	e.fails(t, 1, "not on a network of the interface", "route", "add", "10.0.0.0/8", "192.0.2.1")
	e.fails(t, 1, "not of the family", "route", "add", "10.0.0.0/8", "2001:2::2")
	e.fails(t, 2, "unknown command", "route", "frob")
	e.fails(t, 1, "no xstack process with proc-id 7", "netstat", "-p", "7")
	e.fails(t, 1, "no xstack process with proc-id 7", "sysctl", "-p", "7", "-a")
	e.fails(t, 2, "unknown command", "pcap", "bogus")
	e.fails(t, 2, "unexpected operand", "netstat", "extra")
	if _, _, code := e.run(t, "netstat", "-h"); code != 0 {
		t.Fatalf("netstat -h exited %d", code)
	}

	// Garbage on the control socket itself gets an error reply.
	conn, err := net.Dial("unix", ctl.SocketPath(e.runDir, 0))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for _, req := range []string{"\x00\xff garbage\n", `{"v":1,"op":"info","args":"x"}` + "\n", `{"v":1,"op":"route.add","args":{"dst":"1.2.3.4/99"}}` + "\n"} {
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		line, err := ctl.ReadLine(br, ctl.MaxReply)
		var rep ctl.Reply
		if err != nil || json.Unmarshal(line, &rep) != nil || rep.Error == "" {
			t.Fatalf("request %q: reply %q, %v; want an error reply", req, line, err)
		}
	}

	if e.p.Exited() {
		t.Fatalf("helloworld exited:\n%s", e.p.Output())
	}
	c, br2 := e.connect(t, e.r.StackAddr4)
	if _, err := get(c, br2, "/", true); err != nil {
		t.Fatalf("the stack stopped serving after bad requests: %v", err)
	}
}
