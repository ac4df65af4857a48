package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xstack/xstack/internal/affinity"
	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/nic"
	"github.com/xstack/xstack/stack"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Lcore is one running lcore: its NIC queue, its stack and its loop.
type Lcore struct {
	ID     int // the CPU it is pinned to
	ProcID int // position in lcore_mask
	Conf   *Config
	Port   *PortConfig
	Queue  int // the NIC queue it owns

	Stack *stack.Stack
	Loop  *Loop

	xdp     *nic.Port
	ownsXDP bool // closes xdp; in thread mode one lcore owns the shared port
	q       *nic.XSKQueue
	log     *log.Logger
	handoff *Handoff
	join    *joinServer
	runDir  string

	closeOnce sync.Once
	sigc      chan os.Signal
	ctl       *controlServer // nil when the control socket could not be served

	// sockCounters reports the socket layer's counters (SetSocketCounters);
	// nil until it is set.
	sockCounters atomic.Pointer[func() []stack.Counter]
}

// SetSocketCounters adds the counters f returns to Counters: the socket
// layer above the stack (posix) reports its own there, such as the
// socket-buffer memory it has reserved. f is called from the control
// plane's and the signal handler's goroutines, so it must be safe for
// concurrent use.
func (l *Lcore) SetSocketCounters(f func() []stack.Counter) {
	l.sockCounters.Store(&f)
}

// Start brings up lcore procID of conf in this process (process mode): it
// pins the process to the lcore's CPU, attaches the XDP program (proc-id 0,
// the primary) or joins the primary's (secondaries), opens the lcore's
// AF_XDP queue and builds its stack. Errors in conf or on the host are
// *ConfigError values naming the file and line. SIGINT and SIGTERM stop the
// loop; Close then tears everything down.
func Start(conf *Config, procID int, logger *log.Logger) (*Lcore, error) {
	lcores := conf.Lcores()
	if procID < 0 || procID >= len(lcores) {
		return nil, fmt.Errorf("%s: proc-id %d: lcore_mask %#x has %d lcore(s), expected a proc-id from 0 to %d",
			conf.File, procID, conf.LcoreMask, len(lcores), len(lcores)-1)
	}
	if conf.Mode == ModeThread && len(lcores) > 1 {
		return nil, fmt.Errorf("%s: mode=thread runs every lcore in one process: start it with StartThreads (posix.InitLcores), not one proc-id", conf.File)
	}
	ls, err := startGroup(conf, []int{procID}, logger)
	if err != nil {
		return nil, err
	}
	return ls[0], nil
}

// StartThreads brings up every lcore of conf in this process (mode=thread):
// one XDP program, one AF_XDP queue, stack and loop per lcore, and
// hand-off rings in this process's memory. Each lcore's loop runs on its own
// OS thread, pinned to the lcore's CPU by RunPinned. This is less local than
// process mode: gVisor's goroutines float between the lcores' threads.
// SIGINT and SIGTERM stop every loop.
func StartThreads(conf *Config, logger *log.Logger) ([]*Lcore, error) {
	ids := make([]int, len(conf.Lcores()))
	for i := range ids {
		ids[i] = i
	}
	return startGroup(conf, ids, logger)
}

// startGroup brings up the lcores of conf whose proc-ids are ids in this
// process: every lcore (thread mode) or one (process mode, where each
// process is a group of one). The steps are the same for both:
//
//  1. size the Go runtime to the group (one P per lcore) and, for a group
//     of one, pin the whole process to its CPU before gVisor starts its
//     goroutines (a bigger group pins each loop's thread in RunPinned);
//  2. in the interface's namespace, attach the XDP program if the group
//     holds proc-id 0, or join the primary's otherwise, and open each
//     lcore's queue; a primary with lcores in other processes serves them
//     the program's descriptors;
//  3. build each lcore's stack;
//  4. join the lcores with hand-off rings: in this process's memory when
//     the group holds every lcore, else in files of the run directory,
//     each created by its consumer and opened by its producer on use;
//  5. start each lcore's loop and control plane, and one signal routine
//     for the group.
func startGroup(conf *Config, ids []int, logger *log.Logger) (_ []*Lcore, err error) {
	if logger == nil {
		logger = log.New(os.Stderr, "", log.LstdFlags)
	}
	if err := checkStart(conf); err != nil {
		return nil, err
	}
	lcores := conf.Lcores()
	n := len(lcores)
	port := &conf.Ports[0]
	whole := len(ids) == n // the group has every lcore: no other process
	primary := ids[0] == 0

	runtime.GOMAXPROCS(len(ids))
	for _, note := range applyGCPolicy(conf.GC) {
		logger.Printf("gc: %s", note)
	}
	if len(ids) == 1 {
		if err := PinProcess(lcores[ids[0]]); err != nil {
			return nil, err
		}
	}
	ls := make([]*Lcore, len(ids))
	defer func() {
		if err != nil {
			for _, l := range ls {
				if l != nil {
					l.Close()
				}
			}
		}
	}()
	runDir := ctl.DefaultRunDir()
	for i, id := range ids {
		cpu := lcores[id]
		ls[i] = &Lcore{ID: cpu, ProcID: id, Conf: conf, Port: port, Queue: queueOf(port, cpu), log: logger,
			ownsXDP: i == 0, runDir: runDir}
	}
	if !whole {
		if err := os.MkdirAll(runDir, 0o700); err != nil {
			return nil, fmt.Errorf("lcore %d: run directory: %w", ls[0].ID, err)
		}
	}
	joinPath := filepath.Join(runDir, "join.sock")
	var rss *RSS
	err = netns.Do(port.Netns, func() error {
		if err := checkQueues(conf, port, n); err != nil {
			return err
		}
		rss = portRSS(port, n, logger)
		xdp, join, err := attachGroup(port, primary, whole, joinPath, n, logger)
		if err != nil {
			return err
		}
		ls[0].join = join
		for _, l := range ls {
			l.xdp = xdp
			if l.q, err = openQueue(conf, xdp, port, l.Queue); err != nil {
				if len(ls) > 1 {
					err = fmt.Errorf("lcore %d: %w", l.ID, err)
				}
				return err
			}
		}
		return nil
	})
	if err != nil {
		if len(ids) == 1 {
			return nil, fmt.Errorf("lcore %d: %w", ls[0].ID, err)
		}
		return nil, err
	}
	mode := "thread mode"
	if len(ids) == 1 && conf.Mode != ModeThread {
		mode = "process mode"
	}
	for _, l := range ls {
		logger.Printf("lcore %d: %s queue %d: XDP %s mode, AF_XDP %s (%s)", l.ID, port.Ifname, l.Queue, l.xdp.Mode(), l.q.Mode(), mode)
		// The loop drives the stack's timers: they fire between bursts
		// (stack.LoopClock).
		if l.Stack, err = newLcoreStack(conf, port, l.q, l.ProcID, n, rss, l.Queue, stack.NewLoopClock(monotonicClock())); err != nil {
			return nil, fmt.Errorf("lcore %d: %w", l.ID, err)
		}
	}
	// A hand-off slot holds the largest frame: one UMEM frame, or with
	// multi-buffer a frame of the MTU, which the loop joins from its
	// buffers before steering.
	slot := port.FrameSize
	if ls[0].q.MultiBuffer() {
		slot = max(slot, ls[0].Stack.MTU()+header.EthernetMinimumSize)
	}
	handoffs, err := groupHandoffs(ls, n, slot, whole, runDir)
	if err != nil {
		return nil, err
	}
	for i, l := range ls {
		if err := l.startLoop(handoffs[i]); err != nil {
			return nil, err
		}
	}
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	ls[0].sigc = sigc
	go routineSignals(sigc, ls)
	return ls, nil
}

// attachGroup gives a group its XDP program: the group that holds proc-id
// 0 attaches it, and serves its descriptors on joinPath when lcores of
// other processes will ask for them; any other group joins the primary.
// Call it in the interface's namespace.
func attachGroup(port *PortConfig, primary, whole bool, joinPath string, n int, logger *log.Logger) (*nic.Port, *joinServer, error) {
	if !primary {
		info, fds, err := joinPrimary(joinPath, 10*time.Second)
		if err != nil {
			return nil, nil, err
		}
		if info.Lcores != n || info.Ifname != port.Ifname {
			return nil, nil, fmt.Errorf("the primary runs %d lcore(s) on %s; this process was configured for %d on %s", info.Lcores, info.Ifname, n, port.Ifname)
		}
		xdp, err := nic.JoinPort(port.Ifname, info.Mode, fds, logger.Printf)
		return xdp, nil, err
	}
	xdp, err := openPort(port, logger)
	if err != nil || whole {
		return xdp, nil, err
	}
	fds, err := xdp.SharedFDs()
	if err == nil {
		var join *joinServer
		info := joinInfo{V: joinVersion, Ifname: port.Ifname, Mode: xdp.Mode(), Lcores: n}
		if join, err = listenJoin(joinPath, info, fds, logger); err == nil {
			return xdp, join, nil
		}
	}
	xdp.Close()
	return nil, nil, err
}

// groupHandoffs makes the hand-off of each lcore of ls (nil for all with a
// single lcore in conf). rings[i][j] carries frames from lcore i to lcore j:
// with the whole group in this process they are in its memory; otherwise
// each lcore creates its inbound rings as files in runDir, and opens its
// outbound ones when it first hands a frame over.
func groupHandoffs(ls []*Lcore, n, slotSize int, whole bool, runDir string) ([]*Handoff, error) {
	hs := make([]*Handoff, len(ls))
	if n == 1 {
		return hs, nil
	}
	if whole {
		rings := make([][]*HandoffRing, n)
		for i := range rings {
			rings[i] = make([]*HandoffRing, n)
			for j := range rings[i] {
				if i == j {
					continue
				}
				var err error
				if rings[i][j], err = NewHandoffRing(handoffSlots, slotSize); err != nil {
					return nil, err
				}
			}
		}
		for i, l := range ls {
			h := newHandoff(l.ProcID, n, newLcoreSteer(n, l.ProcID), DefaultBurst)
			for j := 0; j < n; j++ {
				h.in[j], h.out[j] = rings[j][i], rings[i][j]
			}
			l.handoff, hs[i] = h, h
		}
		return hs, nil
	}
	for i, l := range ls {
		self := l.ProcID
		h := newHandoff(self, n, newLcoreSteer(n, self), DefaultBurst)
		h.outPath = func(j int) string { return ringPath(runDir, self, j) }
		// Close tears down what is made so far if a ring fails.
		l.handoff, hs[i] = h, h
		for j := 0; j < n; j++ {
			if j == self {
				continue
			}
			path := ringPath(runDir, j, self)
			os.Remove(path) // a ring left by an earlier run of this lcore
			var err error
			if h.in[j], err = CreateHandoffRing(path, handoffSlots, slotSize); err != nil {
				return nil, fmt.Errorf("lcore %d: %w", l.ID, err)
			}
		}
	}
	return hs, nil
}

// startLoop makes the lcore's loop, with its hand-off to the other lcores
// (nil with one lcore), and serves its control plane.
func (l *Lcore) startLoop(h *Handoff) error {
	l.handoff = h
	l.Loop = NewLoop(l.q, l.Stack, LoopConfig{
		IdleSleep: l.Conf.IdleSleep,
		BusyPoll:  l.Conf.BusyPoll,
		TxFlush:   l.Conf.TxFlush,
		Handoff:   h,
	})
	return l.startControlPlane()
}

// RunPinned runs the lcore's loop on the calling goroutine's OS thread,
// locked to it and pinned to the lcore's CPU (thread mode). The thread is
// left locked when the loop ends, so the runtime retires it.
func (l *Lcore) RunPinned(app func() error) error {
	runtime.LockOSThread()
	if err := affinity.PinThread(l.ID); err != nil {
		return fmt.Errorf("lcore %d: %w", l.ID, err)
	}
	return l.Run(app)
}

// handoffSlots is the number of frames each hand-off ring holds.
const handoffSlots = 1024

// checkStart checks what every start-up mode needs of conf and the host.
func checkStart(conf *Config) error {
	if len(conf.Ports) != 1 {
		return fmt.Errorf("%s: %d ports configured; this version drives exactly one [port0]", conf.File, len(conf.Ports))
	}
	return conf.CheckHost()
}

// queueOf returns the NIC queue that lcore cpu serves (its position in the
// port's lcore_list; CheckHost made sure it is there).
func queueOf(port *PortConfig, cpu int) int {
	for i, lc := range port.LcoreList {
		if lc == cpu {
			return i
		}
	}
	return -1
}

// checkQueues makes sure the interface has exactly one receive queue per
// lcore, before anything is attached: an lcore needs a queue of its own,
// and a queue without an lcore would hand its frames to the kernel (an
// AF_XDP socket only receives from the queue it is bound to), so that the
// flows the NIC hashed there would never reach the stack. Call it inside
// the interface's namespace.
func checkQueues(conf *Config, port *PortConfig, n int) error {
	have, err := nic.RxQueues(port.Ifname)
	if err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) && n == 1 {
			return nil // the driver does not say; a single-queue NIC is the common case
		}
		return err
	}
	if have != n {
		what := "add queues"
		if have > n {
			what = "remove queues"
		}
		return &ConfigError{File: conf.File, Line: conf.lineOf("xstack.lcore_mask", "xstack"), Key: "lcore_mask",
			Msg: fmt.Sprintf("%d lcore(s) need exactly %d receive queue(s), but %s has %d: %s (ethtool -L %s rx %d tx %d, or combined %d, as the driver counts them; a rig made with -queues %d) or change lcore_mask",
				n, n, port.Ifname, have, what, port.Ifname, n, n, n, n)}
	}
	return nil
}

func openPort(port *PortConfig, logger *log.Logger) (*nic.Port, error) {
	var addrs []netip.Addr
	if port.Addr.IsValid() {
		addrs = append(addrs, port.Addr)
	}
	if port.Addr6.IsValid() {
		addrs = append(addrs, port.Addr6.Addr())
	}
	return nic.OpenPort(nic.PortConfig{
		Ifname:       port.Ifname,
		XDPMode:      port.XDPMode,
		PassToKernel: port.PassToKernel,
		Addrs:        addrs,
		Logf:         logger.Printf,
	})
}

// openQueue opens the AF_XDP queue of an lcore, with multi-buffer where
// the port's MTU needs it (multi_buffer). A kernel or driver without
// multi-buffer is reported as a *ConfigError at the key that asked for it.
// Call it in the interface's namespace.
func openQueue(conf *Config, xdp *nic.Port, port *PortConfig, queue int) (*nic.XSKQueue, error) {
	ifi, err := net.InterfaceByName(port.Ifname)
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", port.Ifname, err)
	}
	multi := port.UseMultiBuffer(ifi.MTU)
	q, err := xdp.OpenQueue(nic.QueueConfig{
		Queue:       queue,
		Frames:      port.Frames,
		FrameSize:   port.FrameSize,
		RxRing:      port.RxRing,
		TxRing:      port.TxRing,
		ZeroCopy:    port.ZeroCopy,
		TxChecksum:  port.TxChecksum,
		MultiBuffer: multi,
	})
	if err != nil && multi && errors.Is(err, nic.ErrNotSupported) {
		return nil, multiBufferRefused(conf, port, ifi.MTU, err)
	}
	return q, err
}

// multiBufferRefused is the error of a queue that could not bind with
// multi-buffer (err matches nic.ErrNotSupported) on a port whose
// interface has MTU ifMTU: a *ConfigError at the key that asked for
// multi-buffer, saying what to set instead.
func multiBufferRefused(conf *Config, port *PortConfig, ifMTU int, err error) error {
	mtu, key := port.MTU, "mtu"
	if mtu == 0 {
		mtu, key = ifMTU, "ifname"
	}
	fits := configMaxMTU(port.FrameSize)
	var why, fix string
	switch {
	case port.MultiBuffer == MultiBufferOn && mtu <= fits:
		key = "multi_buffer"
		why = "multi_buffer=on asks for AF_XDP multi-buffer"
		fix = fmt.Sprintf("set multi_buffer=auto or off: MTU %d fits one frame", mtu)
	case port.MultiBuffer == MultiBufferOn:
		key = "multi_buffer"
		why = fmt.Sprintf("multi_buffer=on asks for AF_XDP multi-buffer, which MTU %d needs", mtu)
		fix = fmt.Sprintf("lower the MTU to at most %d, which one frame of frame_size %d holds, and set multi_buffer=auto or off", fits, port.FrameSize)
	default:
		why = fmt.Sprintf("MTU %d does not fit one frame of frame_size %d, so it needs AF_XDP multi-buffer (multi_buffer=auto)", mtu, port.FrameSize)
		fix = fmt.Sprintf("lower the MTU to at most %d", fits)
		if port.FrameSize < 4096 {
			fix += fmt.Sprintf(", or to %d with frame_size=4096", configMaxMTU(4096))
		}
	}
	return &ConfigError{File: conf.File, Line: port.lineOf(key), Key: key,
		Msg: fmt.Sprintf("%s, and %s refused it: %v; %s", why, port.Ifname, err, fix)}
}

// Ephemeral ports are split between lcores: lcore i's active connections
// use ports from its own range, so a reply's destination port names the
// lcore that owns the connection (the port-encoded steering of NICs whose
// hash the stack cannot compute, such as veth).
const (
	ephemeralBase = 32768
	ephemeralEnd  = 60999 // as Linux's ip_local_port_range
)

func newLcoreSteer(n, self int) *Steer {
	return NewSteer(n, self, ephemeralBase, uint16((ephemeralEnd-ephemeralBase+1)/n))
}

// portRSS returns the NIC's RSS set-up when it lets active connections
// choose their local port by hash (Toeplitz on the TCP 4-tuple), or nil,
// and logs which steering the lcores use. With one lcore it is nil: there
// is nothing to steer. Call it inside the interface's namespace.
func portRSS(port *PortConfig, n int, logger *log.Logger) *RSS {
	if n == 1 {
		return nil
	}
	c, err := nic.ReadRSS(port.Ifname)
	switch {
	case err != nil:
		logger.Printf("steering: %s: port-encoded ephemeral ports and hand-off (%v)", port.Ifname, err)
		return nil
	case !c.Toeplitz():
		logger.Printf("steering: %s: port-encoded ephemeral ports and hand-off (RSS hash function %#x, input transform %#x, TCP 4-tuple hash v4 %v v6 %v: not a plain Toeplitz 4-tuple hash)",
			port.Ifname, c.HashFunc, c.InputXfrm, c.TCP4Ports, c.TCP6Ports)
		return nil
	}
	logger.Printf("steering: %s: Toeplitz source ports (%d-byte key, %d-entry table), port-encoded ranges and hand-off for the rest", port.Ifname, len(c.Key), len(c.Table))
	return &RSS{Key: c.Key, Table: c.Table}
}

// newLcoreStack builds lcore idx's stack of n. With rss, its active TCP
// connections pick local ports that the NIC hashes to queue.
func newLcoreStack(conf *Config, port *PortConfig, q nic.Queue, idx, n int, rss *RSS, queue int, clock *stack.LoopClock) (*stack.Stack, error) {
	cfg := stack.Config{
		Clock:    clock,
		Name:     port.Ifname,
		Addr4:    port.Prefix(),
		Gateway4: port.Gateway,
		Addr6:    port.Addr6,
		Gateway6: port.Gateway6,
		MTU:      port.MTU,
	}
	if n > 1 {
		cfg.PortLo, cfg.PortHi = newLcoreSteer(n, idx).PortRange(idx)
	}
	if rss != nil {
		cfg.PickPort = func(local netip.Addr, remote netip.AddrPort, lo, hi, from uint16) (uint16, bool) {
			return rss.PickPort(queue, local, remote, lo, hi, from)
		}
	}
	st, err := stack.New(q, cfg)
	if err != nil {
		return nil, err
	}
	for _, sc := range conf.Sysctls {
		if err := st.SetSysctl(sc.Name, sc.Value); err != nil {
			st.Close()
			return nil, &ConfigError{File: conf.File, Line: sc.Line, Key: sc.Name, Msg: err.Error()}
		}
	}
	leakCheckStackOpened(st)
	return st, nil
}

// routineSignals stops the loops of a group on SIGINT or SIGTERM and prints
// their counters on SIGUSR1, until sigc is closed.
func routineSignals(sigc <-chan os.Signal, ls []*Lcore) {
	for sig := range sigc {
		for _, l := range ls {
			if sig == syscall.SIGUSR1 {
				l.PrintCounters(os.Stderr)
			} else {
				l.Loop.Stop()
			}
		}
	}
}

// Counters returns the lcore's counters: the NIC queue's ("nic."), the
// loop's ("loop."), the socket layer's (SetSocketCounters) and the stack's
// (see stack.Counters).
func (l *Lcore) Counters() []stack.Counter {
	ns := l.q.Stats()
	ls := l.Loop.Stats()
	out := []stack.Counter{
		{Name: "nic.rx_frames", Value: ns.RxFrames},
		{Name: "nic.rx_bytes", Value: ns.RxBytes},
		{Name: "nic.tx_frames", Value: ns.TxFrames},
		{Name: "nic.tx_bytes", Value: ns.TxBytes},
		{Name: "nic.tx_dropped", Value: ns.TxDropped},
		{Name: "nic.tx_ring_full", Value: ns.TxRingFull},
		{Name: "nic.fill_ring_empty", Value: ns.FillRingEmpty},
		{Name: "nic.tx_wakeups", Value: ns.TxWakeups},
		{Name: "nic.tx_budget", Value: ns.TxBudget},
		{Name: "nic.tx_csum_offload", Value: ns.TxCsumOffload},
		{Name: "nic.rx_wakeups", Value: ns.RxWakeups},
		{Name: "nic.kernel.rx_dropped", Value: ns.RxDropped},
		{Name: "nic.kernel.rx_invalid_descs", Value: ns.RxInvalidDescs},
		{Name: "nic.kernel.tx_invalid_descs", Value: ns.TxInvalidDescs},
		{Name: "nic.kernel.rx_ring_full", Value: ns.RxRingFull},
		{Name: "nic.kernel.rx_fill_ring_empty", Value: ns.RxFillRingEmpty},
		{Name: "umem.frames", Value: ns.UMEMFrames},
		{Name: "umem.rx_user", Value: ns.UMEMRxUser},
		{Name: "umem.rx_kernel", Value: ns.UMEMRxKernel},
		{Name: "umem.tx_free", Value: ns.UMEMTxFree},
		{Name: "umem.tx_kernel", Value: ns.UMEMTxKernel},
		{Name: "umem.tx_lent", Value: ns.UMEMTxLent},
		{Name: "loop.passes", Value: ls.Passes},
		{Name: "loop.idle_passes", Value: ls.IdlePasses},
		{Name: "loop.rx_frames", Value: ls.RxFrames},
		{Name: "loop.tx_frames", Value: ls.TxFrames},
		{Name: "loop.sleeps", Value: ls.Sleeps},
		{Name: "loop.busy_ns", Value: ls.BusyNs},
		{Name: "loop.idle_ns", Value: ls.IdleNs},
		{Name: "loop.timers", Value: ls.Timers},
		{Name: "loop.long_passes_100us", Value: ls.LongPasses[0]},
		{Name: "loop.long_passes_1ms", Value: ls.LongPasses[1]},
		{Name: "loop.long_passes_10ms", Value: ls.LongPasses[2]},
		{Name: "loop.max_pass_ns", Value: ls.MaxPassNs},
		// The process's goroutines (gVisor's, the control plane's, the
		// application's): a leak shows as a count that keeps growing.
		{Name: "go.goroutines", Value: uint64(runtime.NumGoroutine())},
	}
	if l.handoff != nil {
		hs := l.handoff.Stats()
		out = append(out,
			stack.Counter{Name: "steer.local", Value: hs.Local},
			stack.Counter{Name: "steer.handed_out", Value: hs.HandedOut},
			stack.Counter{Name: "steer.handed_in", Value: hs.HandedIn},
			stack.Counter{Name: "steer.broadcasts", Value: hs.Broadcasts},
			stack.Counter{Name: "steer.dropped", Value: hs.Dropped},
			stack.Counter{Name: "steer.copies_dropped", Value: hs.CopiesDropped},
		)
	}
	if f := l.sockCounters.Load(); f != nil {
		out = append(out, (*f)()...)
	}
	return append(out, l.Stack.Counters()...)
}

// CountersPrefix starts the line PrintCounters writes.
const CountersPrefix = "xstack-counters "

// PrintCounters writes the counters as one line: CountersPrefix, then a
// JSON object {"lcore": N, "pid": P, "counters": {name: value, ...}}.
func (l *Lcore) PrintCounters(w io.Writer) error {
	m := make(map[string]uint64)
	for _, c := range l.Counters() {
		m[c.Name] = c.Value
	}
	b, err := json.Marshal(struct {
		Lcore    int               `json:"lcore"`
		Pid      int               `json:"pid"`
		Counters map[string]uint64 `json:"counters"`
	}{l.ID, os.Getpid(), m})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s%s\n", CountersPrefix, b)
	return err
}

// Run runs the loop with app as the per-pass callback until a signal, Stop
// or an error. A stop by signal returns nil.
func (l *Lcore) Run(app func() error) error {
	err := l.Loop.Run(app)
	if errors.Is(err, ErrStopped) {
		return nil
	}
	return err
}

// QueueStats returns the NIC queue's counters.
func (l *Lcore) QueueStats() nic.Stats { return l.q.Stats() }

// Drain runs passes without an application for up to d, so that frames the
// stack still has to send (FINs, RSTs, retransmits) leave.
func (l *Lcore) Drain(d time.Duration) {
	if l.Loop == nil {
		return
	}
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		did, err := l.Loop.Pass(nil)
		if err != nil {
			return
		}
		if !did {
			time.Sleep(time.Millisecond)
		}
	}
}

// Close closes the stack (its connections are reset), then the queue, then
// detaches the XDP program. It is idempotent.
func (l *Lcore) Close() {
	l.closeOnce.Do(func() {
		if l.sigc != nil {
			signal.Stop(l.sigc)
			close(l.sigc)
		}
		if l.Stack != nil {
			l.Stack.Close()
			l.Stack.Flush()
		}
		l.stopControlPlane()
		if l.handoff != nil {
			l.handoff.Close()
		}
		if l.q != nil {
			l.q.Close()
		}
		if l.join != nil {
			l.join.Close()
		}
		if l.xdp != nil && l.ownsXDP {
			l.xdp.Close()
		}
		if l.Stack != nil {
			leakCheckStackClosed(l.Stack) // after its Close: see LeakCheckEnv
		}
	})
}
