package core

// The control plane: what tools/ifconfig, sysctl, netstat, route, arp,
// ndp, top and pcap talk to (protocol in internal/ctl).
//
// Each lcore process serves <run dir>/<proc-id>.sock, the run directory
// being $XSTACK_RUN_DIR, or /run/xstack/$XSTACK_INSTANCE, or
// /run/xstack/default (0700; the socket is 0600). routineAccept and one
// routineConn per connection read and check requests; a request that needs
// the stack is handed to the loop over the calls channel, and the loop runs
// it between bursts (pollControl, installed with Loop.SetControl), so the
// stack is only ever touched from the loop. The loop never blocks on the
// control plane: it takes at most controlPerPass requests per pass, without
// waiting. pcap requests do not touch the stack's tables and run on the
// connection's goroutine, because starting and stopping a capture does file
// I/O.
//
// The control plane is a convenience, not the data plane: when its socket
// cannot be served (another live process holds it, the run directory is not
// writable) the lcore logs why and serves traffic without it.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/nic"
	"github.com/xstack/xstack/stack"
)

const (
	controlPerPass  = 4                // requests the loop runs per pass at most
	controlMaxConns = 32               // concurrent connections per process
	controlIdle     = 5 * time.Minute  // an idle connection is closed
	controlQueue    = 5 * time.Second  // a request waits this long for room in the calls channel
	controlWait     = 10 * time.Second // and this long for the loop to run it
)

// controlCall is one request on its way to the loop.
type controlCall struct {
	req   ctl.Request
	reply chan ctl.Reply // buffered: the loop never waits for the connection
}

// controlServer serves one lcore's control socket.
type controlServer struct {
	l     *Lcore
	ln    *net.UnixListener
	path  string
	made  []string // directories it created, innermost first; removed on close if empty
	calls chan *controlCall
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{} // +checklocks:mu
}

// startControlPlane starts the capture configured in [pcap] and the control
// server. Only a capture that cannot start is an error.
func (l *Lcore) startControlPlane() error {
	if l.Conf.Pcap.Enable {
		if err := l.Stack.StartPcap(l.pcapConfig(ctl.PcapArgs{})); err != nil {
			return &ConfigError{File: l.Conf.File, Line: l.Conf.lineOf("pcap.enable", "pcap"), Key: "enable", Msg: err.Error()}
		}
	}
	dir := ctl.DefaultRunDir()
	s, err := listenControl(l, dir)
	if err != nil {
		l.log.Printf("lcore %d: control plane disabled: %v", l.ID, err)
		return nil
	}
	l.ctl = s
	l.Loop.SetControl(s.poll)
	s.wg.Add(1)
	go s.routineAccept()
	l.log.Printf("lcore %d: control socket %s", l.ID, s.path)
	return nil
}

// stopControlPlane closes the control server and stops a capture, writing
// out what it buffered. Lcore.Close calls it after the last flush.
func (l *Lcore) stopControlPlane() {
	if l.ctl != nil {
		l.ctl.close()
	}
	if l.Stack != nil {
		if err := l.Stack.StopPcap(); err != nil {
			l.log.Printf("lcore %d: %v", l.ID, err)
		}
	}
}

func listenControl(l *Lcore, dir string) (*controlServer, error) {
	s := &controlServer{
		l:     l,
		path:  ctl.SocketPath(dir, l.ProcID),
		calls: make(chan *controlCall, 16),
		done:  make(chan struct{}),
		conns: map[net.Conn]struct{}{},
	}
	if len(s.path) >= 108 { // sizeof(sun_path)
		return nil, fmt.Errorf("control socket path %s is longer than 107 bytes; use a shorter XSTACK_RUN_DIR", s.path)
	}
	// Create the missing directories 0700, and remember them. The default
	// run dir and /run/xstack are ours whoever made them: removing them
	// when empty keeps a crashed process from leaving them behind.
	if os.Getenv("XSTACK_RUN_DIR") == "" {
		s.made = []string{filepath.Clean(dir), filepath.Dir(filepath.Clean(dir))}
	} else {
		for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
			if _, err := os.Lstat(d); err == nil || d == filepath.Dir(d) {
				break
			}
			s.made = append(s.made, d)
		}
	}
	mkdirs := func() error {
		for i := len(s.made) - 1; i >= 0; i-- {
			if err := os.Mkdir(s.made[i], 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return fmt.Errorf("run dir: %w", err)
			}
		}
		return nil
	}
	if err := mkdirs(); err != nil {
		return nil, err
	}
	if _, err := os.Lstat(s.path); err == nil {
		// A live process answers; a dead one left its socket behind.
		if c, err := net.DialTimeout("unix", s.path, time.Second); err == nil {
			c.Close()
			s.removeDirs()
			return nil, fmt.Errorf("%s is served by another live process (proc-id %d of another instance? set XSTACK_RUN_DIR or XSTACK_INSTANCE)", s.path, l.ProcID)
		}
		if err := os.Remove(s.path); err != nil {
			return nil, fmt.Errorf("remove stale control socket: %w", err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: s.path, Net: "unix"})
	if errors.Is(err, os.ErrNotExist) {
		// Another process removed the empty directory as it exited.
		if err = mkdirs(); err == nil {
			ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: s.path, Net: "unix"})
		}
	}
	if err != nil {
		s.removeDirs()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// The directory is 0700 already; this closes the umask window too.
	if err := os.Chmod(s.path, 0o600); err != nil {
		ln.Close()
		s.removeDirs()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	s.ln = ln
	return s, nil
}

func (s *controlServer) removeDirs() {
	for _, d := range s.made {
		if os.Remove(d) != nil {
			return // not empty: another process's socket lives there
		}
	}
}

// close stops accepting, closes every connection, waits for the
// goroutines and removes the socket (and the directories it made, if they
// are empty). Idempotent.
func (s *controlServer) close() {
	s.once.Do(func() {
		close(s.done)
		s.ln.Close() // unlinks the socket
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
		s.removeDirs()
	})
}

func (s *controlServer) routineAccept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			s.l.log.Printf("lcore %d: control: accept: %v", s.l.ID, err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if len(s.conns) >= controlMaxConns {
			s.mu.Unlock()
			writeReply(c, errorReply(fmt.Errorf("too many control connections (%d)", controlMaxConns)))
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go s.routineConn(c)
	}
}

// routineConn answers the requests of one connection in order.
func (s *controlServer) routineConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	br := bufio.NewReaderSize(c, 4096)
	for {
		c.SetReadDeadline(time.Now().Add(controlIdle))
		line, err := ctl.ReadLine(br, ctl.MaxRequest)
		if err != nil {
			if errors.Is(err, ctl.ErrTooLarge) {
				err = fmt.Errorf("request too large: more than %d bytes", ctl.MaxRequest)
				s.l.log.Printf("lcore %d: control: %v", s.l.ID, err)
				writeReply(c, errorReply(err))
			}
			return
		}
		if !writeReply(c, s.handle(line)) {
			return
		}
	}
}

func errorReply(err error) ctl.Reply { return ctl.Reply{V: ctl.Version, Error: err.Error()} }

func writeReply(c net.Conn, r ctl.Reply) bool {
	b, err := json.Marshal(r)
	if err != nil {
		b, _ = json.Marshal(errorReply(fmt.Errorf("encode reply: %w", err)))
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = c.Write(append(b, '\n'))
	return err == nil
}

// handle answers one request line, on the connection's goroutine.
func (s *controlServer) handle(line []byte) ctl.Reply {
	req, err := ctl.ParseRequest(line)
	if err != nil {
		s.l.log.Printf("lcore %d: control: %v", s.l.ID, err)
		return errorReply(err)
	}
	switch req.Op {
	case ctl.OpPcapOn, ctl.OpPcapOff, ctl.OpPcapStatus:
		return s.l.execControl(req) // file I/O: not on the loop
	}
	if !slices.Contains(loopOps, req.Op) {
		err := fmt.Errorf("unknown op %q", req.Op)
		s.l.log.Printf("lcore %d: control: %v", s.l.ID, err)
		return errorReply(err)
	}
	call := &controlCall{req: req, reply: make(chan ctl.Reply, 1)}
	select {
	case s.calls <- call:
	case <-s.done:
		return errorReply(errors.New("lcore is shutting down"))
	case <-time.After(controlQueue):
		return errorReply(fmt.Errorf("lcore %d did not take the request within %v (is its loop running?)", s.l.ID, controlQueue))
	}
	select {
	case r := <-call.reply:
		return r
	case <-s.done:
		return errorReply(errors.New("lcore is shutting down"))
	case <-time.After(controlWait):
		return errorReply(fmt.Errorf("lcore %d did not run the request within %v (is its loop running?)", s.l.ID, controlWait))
	}
}

// loopOps are the ops that run on the loop.
var loopOps = []string{
	ctl.OpInfo, ctl.OpCounters, ctl.OpStats, ctl.OpIfconfig, ctl.OpIfconfigSet,
	ctl.OpSysctlGet, ctl.OpSysctlSet, ctl.OpSysctlCheck, ctl.OpSockets, ctl.OpRoutes, ctl.OpRouteAdd,
	ctl.OpRouteDelete, ctl.OpRouteGet, ctl.OpNeighbors, ctl.OpNeighAdd, ctl.OpNeighDelete,
}

// poll runs on the loop once per pass, after the TX flush: it runs the
// requests waiting, at most controlPerPass, without blocking.
func (s *controlServer) poll() {
	for i := 0; i < controlPerPass && len(s.calls) > 0; i++ {
		select {
		case call := <-s.calls:
			call.reply <- s.l.execControl(call.req)
		default:
			return
		}
	}
}

// execControl runs one checked request. A panic in a handler becomes an
// error reply and a log line: a tool must not be able to kill the lcore.
func (l *Lcore) execControl(req ctl.Request) (rep ctl.Reply) {
	defer func() {
		if p := recover(); p != nil {
			l.log.Printf("lcore %d: control: %s panicked: %v\n%s", l.ID, req.Op, p, debug.Stack())
			rep = errorReply(fmt.Errorf("%s: internal error: %v", req.Op, p))
		}
	}()
	res, err := l.controlOp(req)
	if err != nil {
		return errorReply(err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		return errorReply(fmt.Errorf("%s: encode result: %w", req.Op, err))
	}
	return ctl.Reply{V: ctl.Version, Result: b}
}

func (l *Lcore) controlOp(req ctl.Request) (any, error) {
	st := l.Stack
	switch req.Op {
	case ctl.OpInfo:
		return ctl.Info{ProcID: l.ProcID, Lcore: l.ID, Pid: os.Getpid(), Ifname: l.Port.Ifname, Queue: l.Queue}, nil
	case ctl.OpCounters:
		m := map[string]uint64{}
		for _, c := range l.Counters() {
			m[c.Name] = c.Value
		}
		return m, nil
	case ctl.OpStats:
		return l.controlStats(), nil
	case ctl.OpIfconfig:
		return l.controlInterface(), nil
	case ctl.OpIfconfigSet:
		var a ctl.IfconfigArgs
		if err := ctl.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		return l.controlIfconfigSet(a)
	case ctl.OpSysctlGet:
		var a ctl.SysctlGetArgs
		if err := ctl.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		names := a.Names
		if len(names) == 0 {
			names = stack.SysctlNames()
		}
		out := make([]ctl.SysctlValue, 0, len(names))
		for _, n := range names {
			v, err := st.Sysctl(n)
			if err != nil {
				return nil, err
			}
			out = append(out, ctl.SysctlValue{Name: n, Value: v})
		}
		return out, nil
	case ctl.OpSysctlSet:
		var a ctl.SysctlValue
		if err := ctl.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		// SetSysctl checks the value as config.ini's [sysctl] does
		// before it applies it.
		if err := st.SetSysctl(a.Name, a.Value); err != nil {
			return nil, err
		}
		v, err := st.Sysctl(a.Name)
		if err != nil {
			return nil, err
		}
		l.log.Printf("lcore %d: sysctl %s=%s", l.ID, a.Name, v)
		return ctl.SysctlValue{Name: a.Name, Value: v}, nil
	case ctl.OpSysctlCheck:
		var a ctl.SysctlValue
		if err := ctl.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		if err := stack.CheckSysctl(a.Name, a.Value); err != nil {
			return nil, fmt.Errorf("sysctl %s=%s: %w", a.Name, a.Value, err)
		}
		return nil, nil
	case ctl.OpSockets:
		return st.Sockets(), nil
	case ctl.OpRoutes:
		return st.Routes(), nil
	case ctl.OpRouteAdd, ctl.OpRouteDelete, ctl.OpRouteGet:
		var a ctl.RouteArgs
		if err := ctl.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		return l.controlRoute(req.Op, a)
	case ctl.OpNeighbors, ctl.OpNeighAdd, ctl.OpNeighDelete:
		var a ctl.NeighArgs
		if err := ctl.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		return l.controlNeigh(req.Op, a)
	case ctl.OpPcapOn:
		var a ctl.PcapArgs
		if err := ctl.DecodeArgs(req.Args, &a); err != nil {
			return nil, err
		}
		if err := st.StartPcap(l.pcapConfig(a)); err != nil {
			return nil, err
		}
		s := st.PcapStatus()
		l.log.Printf("lcore %d: pcap on: %s/%s_*.pcap snaplen %d savelen %d", l.ID, s.Dir, s.Prefix, s.Snaplen, s.Savelen)
		return s, nil
	case ctl.OpPcapOff:
		err := st.StopPcap()
		s := st.PcapStatus()
		if err != nil {
			return nil, fmt.Errorf("pcap stopped earlier: %w", err)
		}
		l.log.Printf("lcore %d: pcap off: %d frames in %d file(s)", l.ID, s.Frames, s.Files)
		return s, nil
	case ctl.OpPcapStatus:
		return st.PcapStatus(), nil
	}
	return nil, fmt.Errorf("unknown op %q", req.Op)
}

// pcapConfig is [pcap] with a's overrides.
func (l *Lcore) pcapConfig(a ctl.PcapArgs) stack.PcapConfig {
	c := stack.PcapConfig{
		Dir:     l.Conf.Pcap.Savepath,
		Prefix:  fmt.Sprintf("cpu%d", l.ID),
		Snaplen: l.Conf.Pcap.Snaplen,
		Savelen: l.Conf.Pcap.Savelen,
		Logf:    l.log.Printf,
	}
	if a.Snaplen != 0 {
		c.Snaplen = a.Snaplen
	}
	if a.Savelen != 0 {
		c.Savelen = a.Savelen
	}
	if a.Savepath != "" {
		c.Dir = a.Savepath
	}
	return c
}

func (l *Lcore) controlStats() ctl.Stats {
	ls := l.Loop.Stats()
	qs := l.controlQueueStats()
	s := ctl.Stats{
		Lcore:      l.ID,
		TimeNs:     time.Now().UnixNano(),
		Passes:     ls.Passes,
		IdlePasses: ls.IdlePasses,
		BusyNs:     ls.BusyNs,
		IdleNs:     ls.IdleNs,
		LongPasses: ls.LongPasses,
		RxPackets:  qs.RxFrames,
		RxBytes:    qs.RxBytes,
		TxPackets:  qs.TxFrames,
		TxBytes:    qs.TxBytes,
	}
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		s.UserNs = uint64(ru.Utime.Nano())
		s.SysNs = uint64(ru.Stime.Nano())
	}
	for _, so := range l.Stack.Sockets() {
		switch so.State {
		case "", "LISTEN", "CLOSE", "BOUND":
		default:
			s.Conns++
		}
	}
	return s
}

// controlQueueStats is the queue's counters; zero without a queue (tests
// build an Lcore over an in-memory queue).
func (l *Lcore) controlQueueStats() nic.Stats {
	if l.q == nil {
		return nic.Stats{}
	}
	return l.q.Stats()
}

func (l *Lcore) controlInterface() ctl.Interface {
	qs := l.controlQueueStats()
	ifc := l.Stack.Interface()
	ifc.RxDropped += qs.RxDropped
	ifc.TxDropped += qs.TxDropped
	return ctl.Interface{
		Interface: ifc,
		RxPackets: qs.RxFrames,
		RxBytes:   qs.RxBytes,
		TxPackets: qs.TxFrames,
		TxBytes:   qs.TxBytes,
	}
}

func (l *Lcore) controlIfconfigSet(a ctl.IfconfigArgs) (any, error) {
	st := l.Stack
	if a.AddAddr != "" {
		p, err := parsePrefix(a.AddAddr)
		if err != nil {
			return nil, fmt.Errorf("add address: %w", err)
		}
		if err := st.AddAddress(p); err != nil {
			return nil, err
		}
		// The XDP program must hand the address's traffic to the stack.
		if err := l.xdp.AddAddr(p.Addr()); err != nil {
			st.RemoveAddress(p.Addr())
			return nil, err
		}
		l.log.Printf("lcore %d: address %s added", l.ID, p)
	}
	if a.DelAddr != "" {
		addr, err := netip.ParseAddr(strings.Split(a.DelAddr, "/")[0])
		if err != nil {
			return nil, fmt.Errorf("delete address: expected an IPv4 or IPv6 address, got %q", a.DelAddr)
		}
		if err := st.RemoveAddress(addr); err != nil {
			return nil, err
		}
		if err := l.xdp.RemoveAddr(addr); err != nil {
			l.log.Printf("lcore %d: %v", l.ID, err)
		}
		l.log.Printf("lcore %d: address %s removed", l.ID, addr)
	}
	if a.MTU != 0 {
		if err := st.SetMTU(a.MTU); err != nil {
			return nil, err
		}
	}
	if a.Up != nil {
		if err := st.SetUp(*a.Up); err != nil {
			return nil, err
		}
	}
	return l.controlInterface(), nil
}

// parsePrefix takes "addr/len" or a bare address (a host prefix).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("expected an address/prefix length such as 198.19.0.0/24 or 2001:3::/64, got %q", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("expected an IPv4 or IPv6 address or prefix, got %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (l *Lcore) controlRoute(op string, a ctl.RouteArgs) (any, error) {
	st := l.Stack
	if op == ctl.OpRouteGet {
		dst, err := netip.ParseAddr(a.Dst)
		if err != nil {
			return nil, fmt.Errorf("route get: expected an IPv4 or IPv6 address, got %q", a.Dst)
		}
		return st.RouteTo(dst.Unmap())
	}
	dst, err := parsePrefix(a.Dst)
	if err != nil {
		return nil, fmt.Errorf("route: destination: %w", err)
	}
	var gw netip.Addr
	if a.Gateway != "" {
		if gw, err = netip.ParseAddr(a.Gateway); err != nil {
			return nil, fmt.Errorf("route: gateway: expected an IPv4 or IPv6 address, got %q", a.Gateway)
		}
		gw = gw.Unmap()
	}
	if op == ctl.OpRouteAdd {
		if err := st.AddRoute(dst, gw); err != nil {
			return nil, err
		}
		l.log.Printf("lcore %d: route %s via %v added", l.ID, dst.Masked(), gw)
		return nil, nil
	}
	if err := st.DeleteRoute(dst, gw); err != nil {
		return nil, err
	}
	l.log.Printf("lcore %d: route %s deleted", l.ID, dst.Masked())
	return nil, nil
}

func (l *Lcore) controlNeigh(op string, a ctl.NeighArgs) (any, error) {
	st := l.Stack
	if op == ctl.OpNeighbors {
		return st.Neighbors(a.IPv6)
	}
	addr, err := netip.ParseAddr(a.Addr)
	if err != nil || addr.Zone() != "" {
		return nil, fmt.Errorf("neighbor: expected an IPv4 or IPv6 address, got %q", a.Addr)
	}
	addr = addr.Unmap()
	if addr.Is6() != a.IPv6 {
		tbl := map[bool]string{false: "ARP (IPv4)", true: "NDP (IPv6)"}[a.IPv6]
		return nil, fmt.Errorf("neighbor %s: not an address of the %s table", addr, tbl)
	}
	if op == ctl.OpNeighDelete {
		return nil, st.RemoveNeighbor(addr)
	}
	mac, err := net.ParseMAC(a.MAC)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("neighbor %s: expected an Ethernet address such as 02:00:00:00:00:01, got %q", addr, a.MAC)
	}
	return nil, st.AddStaticNeighbor(addr, mac)
}
