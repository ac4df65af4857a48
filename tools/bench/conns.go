package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"math"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/rigtest"
)

// The conns scenario: what an idle established connection costs the
// server. The same client holds N idle connections to examples/echo's
// discard service (no per-connection buffers in the application), on
// xstack and on the kernel's sockets (echo -kernel), and the run reads,
// before the client connects and after the connections have settled:
//
//   - the server process's resident memory (VmRSS of /proc/<pid>/status):
//     all of xstack's cost (its TCP endpoints live in the Go heap), and
//     the kernel server's user-space part;
//   - the kernel's slab memory (Slab of /proc/meminfo, less the growth of
//     proc_inode_cache, see connsSample.slab): the kernel server's sockets,
//     but also the client's, which live in the same kernel. xstack keeps
//     no kernel object per connection, so the slab growth in its rounds is
//     the client's share, and it is subtracted from the kernel rounds'.
//
// memory/conn is then RSS growth / N for xstack, and (RSS growth + slab
// growth) / N − the client's share per connection for the kernel.

// connsPerAddr is how many connections the client makes from one source
// address, so that none runs out of ports (1024-65535 in the peer).
const connsPerAddr = 25000

// connsPeerAddr is the i-th extra peer address the client binds to:
// 198.18.1.1, .2, ..., on-link in the rig's 198.18.0.0/16.
func connsPeerAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 1, byte(1 + i)}) }

// connsExtraPort is the discard port of the kernel server's i-th extra
// process (i ≥ 1), when one process may not hold every connection.
func connsExtraPort(i int) int { return 10000 + i }

// connsSample is one round's raw figures at one count.
type connsSample struct {
	target          string
	round           int
	want, held      int   // connections asked for and held by the client
	server          int   // established connections the server reported (-1: unknown)
	rssKiB, slabKiB int64 // growth over the round
	procInodeKiB    int64 // growth of proc_inode_cache, part of slabKiB
	caches          map[string]float64
	tcpObjs         int64 // growth of the kernel's TCP socket cache (objects)
	connectSeconds  float64
	connErrors      uint64
}

// slab is the slab growth that the connections cost: Slab's growth less
// proc_inode_cache's. A process that lists /proc/<pid>/fd (lsof, ss -p, a
// monitoring agent) makes the kernel instantiate a proc inode for every
// open descriptor, which is the cost of that process, not of holding a
// connection.
func (s *connsSample) slab() int64 { return s.slabKiB - s.procInodeKiB }

func (b *bench) conns() error {
	r := b.r
	most := slices.Max(b.o.idleConns)
	perProc, err := b.fdBudget(most)
	if err != nil {
		return err
	}
	if perProc < most {
		b.res.Notes = append(b.res.Notes, fmt.Sprintf("conns: RLIMIT_NOFILE's hard limit cannot be raised here (no CAP_SYS_RESOURCE), so one process holds at most %d connections: "+
			"above that the client runs as several processes, and the kernel server as several echo -kernel processes on the server CPU (discard on port %d, %d, ...), their VmRSS summed",
			perProc, discardPort, connsExtraPort(1)))
	}
	var srcs []netip.Addr
	for i := range (most + connsPerAddr - 1) / connsPerAddr {
		a := connsPeerAddr(i)
		if _, err := r.Run(r.PeerNS, "ip", "addr", "add", fmt.Sprintf("%s/%d", a, r.Prefix4), "dev", r.PeerIf); err != nil {
			return err
		}
		defer r.Run(r.PeerNS, "ip", "addr", "del", fmt.Sprintf("%s/%d", a, r.Prefix4), "dev", r.PeerIf)
		srcs = append(srcs, a)
	}

	settle := 2 * time.Second
	if b.o.quick {
		settle = time.Second
	}
	var all []connsSample
	for _, n := range b.o.idleConns {
		err := b.eachRound(streamServer, bothTargets, func(round int, tg string, addr netip.AddrPort) error {
			s, err := b.connsRound(tg, addr.Addr(), srcs, n, perProc, settle)
			s.round = round
			if s.held > 0 {
				all = append(all, s)
			}
			return err
		})
		if err != nil {
			b.connsPoints(all)
			return err
		}
	}
	b.connsPoints(all)
	b.res.note("conns: memory/conn = (server VmRSS growth + kernel slab growth − the client's slab share) / connections, after a settle period; " +
		"the client's share is the slab growth of the xstack rounds (xstack keeps no kernel object per connection), so xstack's figure is its RSS growth alone; " +
		"slab growth = /proc/meminfo Slab less proc_inode_cache (proc inodes that anything listing /proc/<pid>/fd makes for every open descriptor; per-cache growth in the JSON details); " +
		"slab is machine-wide: other activity on the machine shows up in it")
	return nil
}

// fdBudget raises RLIMIT_NOFILE (soft and hard) so that one process may
// hold want connections, if it can, and returns how many one process may
// hold. Servers and clients started from here inherit the limit.
func (b *bench) fdBudget(want int) (int, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	need := uint64(want + 1024)
	if lim.Max < need {
		// Raising the hard limit needs CAP_SYS_RESOURCE; without it,
		// keep the hard limit.
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: need, Max: need}) == nil {
			lim = unix.Rlimit{Cur: need, Max: need}
		}
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return 0, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", lim.Max, err)
		}
	}
	if lim.Cur < 2048 {
		return 0, fmt.Errorf("RLIMIT_NOFILE is %d: too low to hold connections", lim.Cur)
	}
	return int(min(lim.Cur-1024, 1<<30)), nil
}

// connsRound opens n idle connections to the server at addr from srcs,
// lets them settle, reads the memory figures and closes them. The server
// (b.cur) is running; for the kernel, a process holds at most perProc
// connections, and more are started for the rest.
func (b *bench) connsRound(tg string, addr netip.Addr, srcs []netip.Addr, n, perProc int, settle time.Duration) (connsSample, error) {
	s := connsSample{target: tg, want: n, server: -1}
	procs := []*rigtest.Proc{b.cur}
	dsts := []netip.AddrPort{netip.AddrPortFrom(addr, discardPort)}
	defer func() {
		for _, p := range procs[1:] {
			p.Stop(5 * time.Second)
		}
	}()
	if tg == kernel {
		cpu := strconv.Itoa(b.o.serverCPU)
		for i := 1; i < (n+perProc-1)/perProc; i++ {
			port := connsExtraPort(i)
			p, err := rigtest.StartProc("echoing: ", 20*time.Second, "taskset", "-c", cpu, "ip", "netns", "exec", b.r.StackNS,
				b.bins.echo, "-kernel", "-cpu", cpu, "-port", "0", "-chargen-port", "0", "-discard-port", strconv.Itoa(port))
			if p != nil {
				procs = append(procs, p)
			}
			if err != nil {
				return s, fmt.Errorf("kernel discard server %d: %w", i, err)
			}
			if err := b.checkPinned(p); err != nil {
				return s, err
			}
			dsts = append(dsts, netip.AddrPortFrom(addr, uint16(port)))
		}
	}
	// Let the probe's connection go and the processes reach a steady state.
	if !sleepCtx(b.ctx, 500*time.Millisecond) {
		return s, b.ctx.Err()
	}
	mem0, err := snapMem(procs)
	if err != nil {
		return s, err
	}

	// The client: processes of at most perProc connections each, in the
	// peer namespace on the client CPU (inherited from this process).
	var clients []*rigtest.Proc
	defer func() {
		// SIGTERM: the client closes its connections with a reset.
		for _, c := range clients {
			c.Stop(30 * time.Second)
		}
	}()
	var dl []string
	for _, d := range dsts {
		dl = append(dl, d.String())
	}
	var sl []string
	for _, a := range srcs {
		sl = append(sl, a.String())
	}
	var errs []string
	for first := 0; first < n; first += perProc {
		k := min(perProc, n-first)
		c, err := rigtest.StartProc(idleConnsReady, 10*time.Minute, "ip", "netns", "exec", b.r.PeerNS, b.bins.self, idleConnsCmd,
			"-dst", strings.Join(dl, ","), "-src", strings.Join(sl, ","), "-n", strconv.Itoa(k), "-first", strconv.Itoa(first))
		if c != nil {
			clients = append(clients, c)
		}
		if err != nil {
			return s, fmt.Errorf("client: %w", err)
		}
		line, _ := c.WaitLine(idleConnsReady, time.Second)
		var held, want int
		var secs float64
		var failed uint64
		if _, err := fmt.Sscanf(line[strings.Index(line, idleConnsReady)+len(idleConnsReady):], " %d of %d in %fs, %d failed connects", &held, &want, &secs, &failed); err != nil {
			return s, fmt.Errorf("client said %q: %w", line, err)
		}
		s.held += held
		s.connectSeconds += secs
		s.connErrors += failed
		if _, e, ok := strings.Cut(line, ", error: "); ok {
			errs = append(errs, e)
		}
		if b.ctx.Err() != nil {
			return s, b.ctx.Err()
		}
	}
	log.Printf("  conns %s: %d of %d connections open in %.1fs (%d failed connects)", tg, s.held, n, s.connectSeconds, s.connErrors)
	if len(errs) > 0 {
		err := errors.New(strings.Join(errs, "; "))
		b.res.Notes = append(b.res.Notes, fmt.Sprintf("conns: %s: the client held %d of %d connections: %v", tg, s.held, n, err))
		log.Printf("  conns %s: %v", tg, err)
		if s.held == 0 {
			return s, err
		}
	}

	// Wait until the server has them all (accept queue drained), then
	// settle.
	deadline := time.Now().Add(settle + 10*time.Second)
	for {
		s.server = b.serverEstablished(tg, b.cur)
		if s.server >= s.held || time.Now().After(deadline) || b.ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !sleepCtx(b.ctx, settle) {
		return s, b.ctx.Err()
	}
	for _, p := range procs {
		if p.Exited() {
			return s, fmt.Errorf("server exited while the client held %d connections:\n%s", s.held, p.Output())
		}
	}
	mem1, err := snapMem(procs)
	if err != nil {
		return s, err
	}
	caches0, caches1 := mem0.caches, mem1.caches
	s.rssKiB, s.slabKiB = mem1.rssKiB-mem0.rssKiB, mem1.slabKiB-mem0.slabKiB
	pi0, pi1 := caches0["proc_inode_cache"], caches1["proc_inode_cache"]
	s.procInodeKiB = (pi1.objects - pi0.objects) * pi1.size / 1024
	s.caches = slabGrowth(caches0, caches1)
	s.tcpObjs = caches1["TCP"].objects - caches0["TCP"].objects
	if s.server >= 0 && s.server < s.held {
		b.res.Notes = append(b.res.Notes, fmt.Sprintf("conns: the %s server reported %d established connections while the client held %d", tg, s.server, s.held))
	}
	log.Printf("  conns %s: server reports %d established; VmRSS +%d KiB, Slab +%d KiB (proc_inode_cache %+d KiB), TCP slab objects %+d",
		tg, s.server, s.rssKiB, s.slabKiB, s.procInodeKiB, s.tcpObjs)
	return s, nil
}

// memSnap is what the conns scenario reads of memory before and after the
// client holds its connections.
type memSnap struct {
	rssKiB  int64 // the servers' resident set
	slabKiB int64 // the kernel's slab (Slab in /proc/meminfo)
	caches  map[string]slabCache
}

// snapMem reads the memory figures of procs and the kernel. The slab
// caches are nil where /proc/slabinfo cannot be read (it needs root).
func snapMem(procs []*rigtest.Proc) (memSnap, error) {
	rss, err := sumRSS(procs)
	if err != nil {
		return memSnap{}, err
	}
	slab, err := meminfo("Slab")
	if err != nil {
		return memSnap{}, err
	}
	caches, _ := readSlabinfo()
	return memSnap{rss, slab, caches}, nil
}

func sumRSS(procs []*rigtest.Proc) (int64, error) {
	var sum int64
	for _, p := range procs {
		v, err := vmRSS(p.Cmd.Process.Pid)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, nil
}

// serverEstablished returns the number of established TCP connections the
// server has, or -1 if it cannot tell: for the kernel, CurrEstab of the
// stack namespace (/proc/<pid>/net/snmp of a server process); for xstack,
// the stack's tcp.current_established counter.
func (b *bench) serverEstablished(tg string, p *rigtest.Proc) int {
	if tg == kernel {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/snmp", p.Cmd.Process.Pid))
		if err != nil {
			return -1
		}
		defer f.Close()
		var head []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) == 0 || fields[0] != "Tcp:" {
				continue
			}
			if head == nil {
				head = fields
				continue
			}
			for i, h := range head {
				if h == "CurrEstab" && i < len(fields) {
					v, err := strconv.Atoi(fields[i])
					if err == nil {
						return v
					}
				}
			}
		}
		return -1
	}
	cs, err := p.CountersErr()
	if err != nil {
		return -1
	}
	v, ok := cs["tcp.current_established"]
	if !ok {
		return -1
	}
	return int(v)
}

// connsPoints turns the raw samples into the table's points.
func (b *bench) connsPoints(all []connsSample) {
	// The client's slab share per connection at each count: the median
	// over xstack's rounds.
	byCount := map[int][]float64{}
	for _, s := range all {
		if s.target == xstack {
			byCount[s.want] = append(byCount[s.want], float64(s.slab())/float64(s.held))
		}
	}
	// clientShare returns the share at count n or, if xstack held nothing
	// there, at the nearest count (the share is per connection).
	clientShare := func(n int) (float64, bool) {
		best, ok := 0, false
		for c := range byCount {
			if !ok || abs(c-n) < abs(best-n) {
				best, ok = c, true
			}
		}
		if !ok {
			return 0, false
		}
		return median(byCount[best])
	}
	for _, s := range all {
		perConn := func(kib int64) float64 { return float64(kib) / float64(s.held) }
		label := fmt.Sprintf("%d idle conns", s.want)
		errs := uint64(s.want - s.held)
		detail := map[string]float64{
			"wanted": float64(s.want), "held": float64(s.held), "server_established": float64(s.server),
			"rss_growth_kib": float64(s.rssKiB), "slab_growth_kib": float64(s.slabKiB), "proc_inode_growth_kib": float64(s.procInodeKiB),
			"tcp_slab_objects_growth": float64(s.tcpObjs),
			"connect_seconds":         s.connectSeconds, "failed_connects": float64(s.connErrors),
		}
		for name, kib := range s.caches {
			detail["slab_kib_"+name] = kib
		}
		if client, ok := clientShare(s.want); ok {
			detail["client_slab_kib_per_conn"] = client
			total := perConn(s.rssKiB)
			if s.target == kernel {
				total += perConn(s.slab()) - client
			}
			pt := b.point("conns", clientGo, label, s.want, "memory/conn", "KiB", true)
			pt.Samples = append(pt.Samples, &Sample{Target: s.target, Round: s.round, Value: total, Errors: errs, Detail: detail})
		}
		pt := b.point("conns", clientGo, label, s.want, "RSS/conn", "KiB", true)
		pt.Samples = append(pt.Samples, &Sample{Target: s.target, Round: s.round, Value: perConn(s.rssKiB), Errors: errs})
		pt = b.point("conns", clientGo, label, s.want, "slab/conn, with client", "KiB", true)
		pt.Samples = append(pt.Samples, &Sample{Target: s.target, Round: s.round, Value: perConn(s.slab()), Errors: errs})
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// vmRSS returns the resident set of process pid in KiB.
func vmRSS(pid int) (int64, error) {
	return statusField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS")
}

// meminfo returns a /proc/meminfo field in KiB.
func meminfo(field string) (int64, error) { return statusField("/proc/meminfo", field) }

// statusField reads "Field:   123 kB" from a /proc file.
func statusField(path, field string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(l, ":")
		if ok && k == field {
			f := strings.Fields(v)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, field)
}

// slabCache is one line of /proc/slabinfo.
type slabCache struct {
	objects, size int64 // active objects, bytes per object
}

// readSlabinfo returns every slab cache by name.
func readSlabinfo() (map[string]slabCache, error) {
	b, err := os.ReadFile("/proc/slabinfo")
	if err != nil {
		return nil, err
	}
	m := map[string]slabCache{}
	for l := range strings.SplitSeq(string(b), "\n") {
		// name <active_objs> <num_objs> <objsize> ...
		f := strings.Fields(l)
		if len(f) < 4 || strings.HasPrefix(l, "#") {
			continue
		}
		objs, err1 := strconv.ParseInt(f[1], 10, 64)
		size, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 == nil && err2 == nil {
			m[f[0]] = slabCache{objs, size}
		}
	}
	return m, nil
}

// slabGrowth returns the caches that grew or shrank the most between two
// snapshots, in KiB of objects: where the slab growth went.
func slabGrowth(before, after map[string]slabCache) map[string]float64 {
	type g struct {
		name string
		kib  float64
	}
	var gs []g
	for name, a := range after {
		if d := a.objects - before[name].objects; d != 0 {
			gs = append(gs, g{name, float64(d*a.size) / 1024})
		}
	}
	slices.SortFunc(gs, func(x, y g) int { return cmp.Compare(math.Abs(y.kib), math.Abs(x.kib)) })
	m := map[string]float64{}
	for _, x := range gs[:min(len(gs), 8)] {
		m[x.name] = x.kib
	}
	return m
}

// idleConnsCmd is the hidden subcommand that holds idle connections: the
// bench runs it in the peer namespace, as many processes as RLIMIT_NOFILE
// requires.
const idleConnsCmd = "_idle-conns"

// idleConnsReady starts the line the subcommand prints once it holds its
// connections (or gave up):
//
//	idle conns: held <held> of <n> in <seconds>s, <failed> failed connects[, error: <text>]
const idleConnsReady = "idle conns: held"

// parseList parses each item of a comma-separated list.
func parseList[T any](list string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for f := range strings.SplitSeq(list, ",") {
		v, err := parse(f)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// idleConnsMain opens the connections, reports, and holds them until
// SIGTERM or SIGINT, then closes them with a reset.
func idleConnsMain(args []string) int {
	fs := flag.NewFlagSet(idleConnsCmd, flag.ExitOnError)
	dst := fs.String("dst", "", "comma-separated server addresses (ip:port), used in turn")
	src := fs.String("src", "", "comma-separated source addresses, used in turn")
	n := fs.Int("n", 0, "connections")
	first := fs.Int("first", 0, "index of the first connection (picks its server and source)")
	fs.Parse(args)
	dsts, err := parseList(*dst, netip.ParseAddrPort)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idle conns: -dst:", err)
		return 2
	}
	srcs, err := parseList(*src, netip.ParseAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "idle conns: -src:", err)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()
	res, err := openIdleConns(ctx, dsts, srcs, *n, *first)
	msg := fmt.Sprintf("%s %d of %d in %.3fs, %d failed connects", idleConnsReady, len(res.fds), *n, res.elapsed.Seconds(), res.errors)
	if err != nil {
		msg += ", error: " + err.Error()
	}
	fmt.Println(msg)
	<-ctx.Done()
	closeIdleConns(res.fds)
	return 0
}

// idleConns is what openIdleConns opened.
type idleConns struct {
	fds     []int
	errors  uint64 // failed connects (retried)
	lastErr error
	elapsed time.Duration
}

// openIdleConns opens n TCP connections to dsts, bound to the source
// addresses srcs (connection i, counted from first, goes to
// dsts[i%len(dsts)] from srcs[i%len(srcs)]), with the port chosen at
// connect time (IP_BIND_ADDRESS_NO_PORT) so that each source address has
// the whole port range towards each server. Up to 256 connects are in
// flight, on one thread with non-blocking sockets and epoll. It gives up
// when no connection completes for 10 seconds; what it opened is returned
// either way, for the caller to close.
func openIdleConns(ctx context.Context, dsts []netip.AddrPort, srcs []netip.Addr, n, first int) (res idleConns, err error) {
	res.fds = make([]int, 0, n)
	start := time.Now()
	defer func() { res.elapsed = time.Since(start) }()
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return res, err
	}
	defer unix.Close(ep)
	const window = 256
	inflight := map[int]bool{} // connecting sockets
	defer func() {
		for fd := range inflight {
			unix.Close(fd)
		}
	}()
	next := first
	connect := func() error {
		dst, src := dsts[next%len(dsts)], srcs[next%len(srcs)]
		next++
		domain, sa := sockaddr(dst)
		fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket after %d connections: %w", len(res.fds), err)
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("bind %v: %w", src, err)
		}
		if err := unix.Connect(fd, sa); err != nil && !errors.Is(err, unix.EINPROGRESS) {
			unix.Close(fd)
			return fmt.Errorf("connect %v from %v after %d connections: %w", dst, src, len(res.fds), err)
		}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT, Fd: int32(fd)}); err != nil {
			unix.Close(fd)
			return err
		}
		inflight[fd] = true
		return nil
	}
	events := make([]unix.EpollEvent, window)
	progress := time.Now()
	for len(res.fds) < n {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		for len(inflight) < window && len(res.fds)+len(inflight) < n {
			if err := connect(); err != nil {
				return res, err
			}
		}
		k, err := unix.EpollWait(ep, events, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return res, err
		}
		for _, ev := range events[:max(k, 0)] {
			fd := int(ev.Fd)
			unix.EpollCtl(ep, unix.EPOLL_CTL_DEL, fd, nil)
			delete(inflight, fd)
			soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
			if err == nil && soerr == 0 {
				res.fds = append(res.fds, fd)
				progress = time.Now()
				continue
			}
			if err == nil {
				err = unix.Errno(soerr)
			}
			res.errors++
			res.lastErr = err
			unix.Close(fd)
		}
		if time.Since(progress) > 10*time.Second {
			return res, fmt.Errorf("no connection completed for 10s after %d of %d (%d failed connects, last error: %v)", len(res.fds), n, res.errors, res.lastErr)
		}
	}
	return res, nil
}

// closeIdleConns closes the connections with a reset (SO_LINGER 0), so
// that neither end keeps them in TIME_WAIT into the next round.
func closeIdleConns(fds []int) {
	for _, fd := range fds {
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		unix.Close(fd)
	}
}
