package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/nic"
	"github.com/xstack/xstack/stack"
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

	xdp *nic.Port
	q   *nic.XSKQueue
	log *log.Logger

	closeOnce sync.Once
	sigc      chan os.Signal
	ctl       *controlServer // nil when the control socket could not be served
}

// Start brings up lcore procID of conf: it pins the process to its CPU,
// attaches the XDP program, opens the AF_XDP queue and builds the stack.
// Errors in conf or on the host are *ConfigError values naming the file and
// line. SIGINT and SIGTERM stop the loop; Close then tears everything down.
func Start(conf *Config, procID int, logger *log.Logger) (_ *Lcore, err error) {
	if logger == nil {
		logger = log.New(os.Stderr, "", log.LstdFlags)
	}
	lcores := conf.Lcores()
	if procID < 0 || procID >= len(lcores) {
		return nil, fmt.Errorf("%s: proc-id %d: lcore_mask %#x has %d lcore(s), expected a proc-id from 0 to %d",
			conf.File, procID, conf.LcoreMask, len(lcores), len(lcores)-1)
	}
	if len(conf.Ports) != 1 {
		return nil, fmt.Errorf("%s: %d ports configured; this version drives exactly one [port0]", conf.File, len(conf.Ports))
	}
	if err := conf.CheckHost(); err != nil {
		return nil, err
	}
	cpu := lcores[procID]
	port := &conf.Ports[0]
	queue := -1
	for i, lc := range port.LcoreList {
		if lc == cpu {
			queue = i
		}
	}
	if queue < 0 {
		return nil, fmt.Errorf("%s: [port0] lcore_list does not serve lcore %d", conf.File, cpu)
	}

	// One P: gVisor's processor goroutines (sized by GOMAXPROCS when the
	// stack is built) and the loop share this core, switched at yields.
	runtime.GOMAXPROCS(1)
	if err := PinProcess(cpu); err != nil {
		return nil, err
	}

	l := &Lcore{ID: cpu, ProcID: procID, Conf: conf, Port: port, Queue: queue, log: logger}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()

	var addrs []netip.Addr
	if port.Addr.IsValid() {
		addrs = append(addrs, port.Addr)
	}
	if port.Addr6.IsValid() {
		addrs = append(addrs, port.Addr6.Addr())
	}
	err = netns.Do(port.Netns, func() error {
		var err error
		l.xdp, err = nic.OpenPort(nic.PortConfig{
			Ifname:       port.Ifname,
			XDPMode:      string(port.XDPMode),
			PassToKernel: port.PassToKernel,
			Addrs:        addrs,
			Logf:         logger.Printf,
		})
		if err != nil {
			return err
		}
		l.q, err = l.xdp.OpenQueue(nic.QueueConfig{
			Queue:     queue,
			Frames:    port.Frames,
			FrameSize: port.FrameSize,
			RxRing:    port.RxRing,
			TxRing:    port.TxRing,
			ZeroCopy:  string(port.ZeroCopy),
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lcore %d: %w", cpu, err)
	}
	logger.Printf("lcore %d: %s queue %d: XDP %s mode, AF_XDP %s", cpu, port.Ifname, queue, l.xdp.Mode(), l.q.Mode())

	l.Stack, err = stack.New(l.q, stack.Config{
		Name:     port.Ifname,
		Addr4:    port.Prefix(),
		Gateway4: port.Gateway,
		Addr6:    port.Addr6,
		Gateway6: port.Gateway6,
		MTU:      port.MTU,
	})
	if err != nil {
		return nil, fmt.Errorf("lcore %d: %w", cpu, err)
	}
	for _, sc := range conf.Sysctls {
		if err := l.Stack.SetSysctl(sc.Name, sc.Value); err != nil {
			return nil, &ConfigError{File: conf.File, Line: sc.Line, Key: sc.Name, Msg: err.Error()}
		}
	}
	l.Loop = NewLoop(l.q, l.Stack, LoopConfig{
		IdleSleep: conf.IdleSleep,
		BusyPoll:  conf.BusyPoll,
		TxFlush:   conf.TxFlush,
	})
	if err := l.startControlPlane(); err != nil {
		return nil, err
	}
	l.sigc = make(chan os.Signal, 1)
	signal.Notify(l.sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	go l.routineSignals()
	return l, nil
}

// routineSignals stops the loop on SIGINT or SIGTERM and prints the
// counters on SIGUSR1.
func (l *Lcore) routineSignals() {
	for sig := range l.sigc {
		if sig == syscall.SIGUSR1 {
			l.PrintCounters(os.Stderr)
			continue
		}
		l.Loop.Stop()
	}
}

// Counters returns the lcore's counters: the NIC queue's ("nic."), the
// loop's ("loop.") and the stack's (see stack.Counters).
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
		{Name: "nic.rx_wakeups", Value: ns.RxWakeups},
		{Name: "nic.kernel.rx_dropped", Value: ns.RxDropped},
		{Name: "nic.kernel.rx_invalid_descs", Value: ns.RxInvalidDescs},
		{Name: "nic.kernel.tx_invalid_descs", Value: ns.TxInvalidDescs},
		{Name: "nic.kernel.rx_ring_full", Value: ns.RxRingFull},
		{Name: "nic.kernel.rx_fill_ring_empty", Value: ns.RxFillRingEmpty},
		{Name: "loop.passes", Value: ls.Passes},
		{Name: "loop.idle_passes", Value: ls.IdlePasses},
		{Name: "loop.rx_frames", Value: ls.RxFrames},
		{Name: "loop.tx_frames", Value: ls.TxFrames},
		{Name: "loop.sleeps", Value: ls.Sleeps},
	}
	return append(out, l.Stack.Counters()...)
}

// CountersPrefix starts the line PrintCounters writes.
const CountersPrefix = "xstack-counters "

// PrintCounters writes the counters as one line: CountersPrefix, then a
// JSON object {"lcore": N, "counters": {name: value, ...}}.
func (l *Lcore) PrintCounters(w io.Writer) error {
	m := make(map[string]uint64)
	for _, c := range l.Counters() {
		m[c.Name] = c.Value
	}
	b, err := json.Marshal(struct {
		Lcore    int               `json:"lcore"`
		Counters map[string]uint64 `json:"counters"`
	}{l.ID, m})
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
		if l.q != nil {
			l.q.Close()
		}
		if l.xdp != nil {
			l.xdp.Close()
		}
	})
}
