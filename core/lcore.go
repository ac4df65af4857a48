package core

import (
	"errors"
	"fmt"
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
	l.sigc = make(chan os.Signal, 1)
	signal.Notify(l.sigc, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		if _, ok := <-l.sigc; ok {
			l.Loop.Stop()
		}
	}()
	return l, nil
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
		if l.q != nil {
			l.q.Close()
		}
		if l.xdp != nil {
			l.xdp.Close()
		}
	})
}
