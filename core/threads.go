package core

import (
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/xstack/xstack/internal/affinity"
	"github.com/xstack/xstack/internal/netns"
)

// StartThreads brings up every lcore of conf in this process (mode=thread):
// one XDP program, one AF_XDP queue, stack and loop per lcore, and
// hand-off rings in this process's memory. Each lcore's loop runs on its own
// OS thread, pinned to the lcore's CPU by RunPinned. This is less local than
// process mode: gVisor's goroutines float between the lcores' threads.
// SIGINT and SIGTERM stop every loop.
func StartThreads(conf *Config, logger *log.Logger) (_ []*Lcore, err error) {
	if logger == nil {
		logger = log.New(os.Stderr, "", log.LstdFlags)
	}
	if err := checkStart(conf); err != nil {
		return nil, err
	}
	lcores := conf.Lcores()
	n := len(lcores)
	port := &conf.Ports[0]
	runtime.GOMAXPROCS(n)

	ls := make([]*Lcore, n)
	defer func() {
		if err != nil {
			for _, l := range ls {
				if l != nil {
					l.Close()
				}
			}
		}
	}()
	for i, cpu := range lcores {
		ls[i] = &Lcore{ID: cpu, ProcID: i, Conf: conf, Port: port, Queue: queueOf(port, cpu), log: logger, ownsXDP: i == 0}
	}
	var rss *RSS
	err = netns.Do(port.Netns, func() error {
		if err := checkQueues(conf, port, n); err != nil {
			return err
		}
		rss = portRSS(port, n, logger)
		xdp, err := openPort(port, logger)
		if err != nil {
			return err
		}
		for _, l := range ls {
			l.xdp = xdp
			if l.q, err = openQueue(xdp, port, l.Queue); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// rings[i][j] carries frames from lcore i to lcore j.
	rings := make([][]*HandoffRing, n)
	for i := range rings {
		rings[i] = make([]*HandoffRing, n)
		for j := range rings[i] {
			if i != j && n > 1 {
				if rings[i][j], err = NewHandoffRing(handoffSlots, port.FrameSize); err != nil {
					return nil, err
				}
			}
		}
	}
	for i, l := range ls {
		logger.Printf("lcore %d: %s queue %d: XDP %s mode, AF_XDP %s (thread mode)", l.ID, port.Ifname, l.Queue, l.xdp.Mode(), l.q.Mode())
		if l.Stack, err = newLcoreStack(conf, port, l.q, i, n, rss, l.Queue); err != nil {
			return nil, fmt.Errorf("lcore %d: %w", l.ID, err)
		}
		var h *Handoff
		if n > 1 {
			h = newHandoff(i, n, newLcoreSteer(n, i), DefaultBurst)
			for j := 0; j < n; j++ {
				h.in[j], h.out[j] = rings[j][i], rings[i][j]
			}
		}
		if err := l.startLoop(h); err != nil {
			return nil, err
		}
	}
	// One signal routine for the group.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	ls[0].sigc = sigc
	go func() {
		for sig := range sigc {
			for _, l := range ls {
				if sig == syscall.SIGUSR1 {
					l.PrintCounters(os.Stderr)
				} else {
					l.Loop.Stop()
				}
			}
		}
	}()
	return ls, nil
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
