package posix

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"sync"

	"github.com/xstack/xstack/core"
)

// Options are the flags every xstack program takes, as F-Stack's do.
type Options struct {
	Conf     string // -c, --conf: the config.ini to load
	ProcID   int    // -p, --proc-id: which lcore of lcore_mask this process runs
	ProcType string // -t, --proc-type: primary, secondary or auto
	Logger   *log.Logger
}

// RegisterFlags defines -c/--conf, -p/--proc-id and -t/--proc-type on fs.
func (o *Options) RegisterFlags(fs *flag.FlagSet) {
	if o.Conf == "" {
		o.Conf = "config.ini"
	}
	if o.ProcType == "" {
		o.ProcType = "auto"
	}
	for _, n := range []string{"c", "conf"} {
		fs.StringVar(&o.Conf, n, o.Conf, "config file")
	}
	for _, n := range []string{"p", "proc-id"} {
		fs.IntVar(&o.ProcID, n, o.ProcID, "process id: the lcore of lcore_mask this process runs")
	}
	for _, n := range []string{"t", "proc-type"} {
		fs.StringVar(&o.ProcType, n, o.ProcType, "process type: primary, secondary or auto")
	}
}

var (
	runMu  sync.Mutex
	lcore  *core.Lcore
	lcoreT *Sockets
)

// Init parses the F-Stack flags in args, loads the configuration and starts
// this process's lcore (ff_init). Programs with flags of their own call
// RegisterFlags on their FlagSet and then InitWith.
func Init(args []string) error {
	var o Options
	fs := flag.NewFlagSet("xstack", flag.ContinueOnError)
	o.RegisterFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	return InitWith(o)
}

// InitWith starts this process's lcore from o and makes its socket table the
// default one of the package-level functions.
func InitWith(o Options) error {
	runMu.Lock()
	defer runMu.Unlock()
	if lcore != nil {
		return errors.New("xstack: Init called twice")
	}
	if err := checkProcType(o); err != nil {
		return err
	}
	if o.Conf == "" {
		o.Conf = "config.ini"
	}
	conf, err := core.LoadConfig(o.Conf)
	if err != nil {
		return err
	}
	l, err := core.Start(conf, o.ProcID, o.Logger)
	if err != nil {
		return err
	}
	t := lcoreSockets(l)
	lcore, lcoreT = l, t
	SetDefault(t)
	return nil
}

// lcoreSockets makes the socket table of l's stack and hands its counters
// to l's control plane.
func lcoreSockets(l *core.Lcore) *Sockets {
	t := NewSockets(l.Stack)
	l.SetSocketCounters(t.Counters)
	return t
}

// checkProcType checks -t against -p: proc-id 0 is the primary (it attaches
// the XDP program), every other proc-id a secondary (it joins the primary).
func checkProcType(o Options) error {
	switch o.ProcType {
	case "", "auto":
	case "primary":
		if o.ProcID != 0 {
			return fmt.Errorf("xstack: proc-type primary with proc-id %d: the primary is proc-id 0", o.ProcID)
		}
	case "secondary":
		if o.ProcID == 0 {
			return fmt.Errorf("xstack: proc-type secondary with proc-id 0: proc-id 0 is the primary")
		}
	default:
		return fmt.Errorf("xstack: proc-type %q: expected primary, secondary or auto", o.ProcType)
	}
	return nil
}

var threadLcores []*core.Lcore
var threadTables []*Sockets

// InitLcores starts what the configuration asks for and returns one socket
// table per lcore this process runs: in process mode (F-Stack's model) the
// one lcore of -p, as InitWith does; in thread mode every lcore of
// lcore_mask, each with its own stack and table. The program then runs one
// instance of its server per table, with RunLcores.
func InitLcores(o Options) ([]*Sockets, error) {
	if o.Conf == "" {
		o.Conf = "config.ini"
	}
	conf, err := core.LoadConfig(o.Conf)
	if err != nil {
		return nil, err
	}
	if conf.Mode != core.ModeThread {
		if err := InitWith(o); err != nil {
			return nil, err
		}
		return []*Sockets{Default()}, nil
	}
	runMu.Lock()
	defer runMu.Unlock()
	if lcore != nil || threadLcores != nil {
		return nil, errors.New("xstack: Init called twice")
	}
	ls, err := core.StartThreads(conf, o.Logger)
	if err != nil {
		return nil, err
	}
	ts := make([]*Sockets, len(ls))
	for i, l := range ls {
		ts[i] = lcoreSockets(l)
	}
	threadLcores, threadTables = ls, ts
	SetDefault(ts[0])
	return ts, nil
}

// RunLcores runs the loops of the lcores InitLcores started, loops[i] being
// the callback of table i, each on its own pinned OS thread in thread mode.
// It returns when every loop has ended (SIGINT or SIGTERM stops them all),
// after closing the sockets and the stacks.
func RunLcores(loops []func() error) error {
	runMu.Lock()
	ls, ts := threadLcores, threadTables
	runMu.Unlock()
	if ls == nil {
		if len(loops) != 1 {
			return fmt.Errorf("xstack: %d loop callbacks for 1 lcore", len(loops))
		}
		return Run(loops[0])
	}
	if len(loops) != len(ls) {
		return fmt.Errorf("xstack: %d loop callbacks for %d lcores", len(loops), len(ls))
	}
	errs := make([]error, len(ls))
	var wg sync.WaitGroup
	for i := range ls {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			t, loop := ts[i], loops[i]
			errs[i] = ls[i].RunPinned(func() error {
				t.EnterLoop()
				defer t.LeaveLoop()
				if loop == nil {
					return nil
				}
				return loop()
			})
			if errs[i] != nil {
				// One lcore failing stops the others.
				for _, l := range ls {
					l.Loop.Stop()
				}
			}
		}(i)
	}
	wg.Wait()
	Teardown()
	return errors.Join(errs...)
}

// Stop makes Run or RunLcores return: every loop of this process ends after
// its current pass. It is safe to call from any goroutine.
func Stop() {
	runMu.Lock()
	defer runMu.Unlock()
	if lcore != nil {
		lcore.Loop.Stop()
	}
	for _, l := range threadLcores {
		l.Loop.Stop()
	}
}

// Lcores returns the lcores this process runs (one in process mode), or
// nil before Init.
func Lcores() []*core.Lcore {
	runMu.Lock()
	defer runMu.Unlock()
	if lcore != nil {
		return []*core.Lcore{lcore}
	}
	return threadLcores
}

// Lcore returns the lcore started by Init, or nil.
func Lcore() *core.Lcore {
	runMu.Lock()
	defer runMu.Unlock()
	return lcore
}

// Run runs the lcore loop, calling loop once per pass (ff_run), until loop
// returns an error or the process gets SIGINT or SIGTERM. Then it closes
// every socket, lets the resulting FINs and RSTs leave, closes the stack
// and detaches from the NIC. A stop by signal returns nil.
func Run(loop func() error) error {
	runMu.Lock()
	l, t := lcore, lcoreT
	runMu.Unlock()
	if l == nil {
		return errors.New("xstack: Run before Init")
	}
	err := l.Run(func() error {
		t.EnterLoop()
		defer t.LeaveLoop()
		if loop == nil {
			return nil
		}
		return loop()
	})
	Teardown()
	return err
}

// tornDown is set by the first Teardown of started lcores. +checklocks:runMu
var tornDown bool

// Teardown closes the sockets, the stacks and the NIC queues of the lcores
// started by Init, InitWith or InitLcores, ending the connections as
// [xstack] shutdown says (core.Shutdown: FIN and a bounded wait for the
// peers, or RST). Run and RunLcores call it when the loops end; it is
// idempotent.
func Teardown() {
	runMu.Lock()
	l, t := lcore, lcoreT
	ls, ts := threadLcores, threadTables
	done := tornDown || l == nil && ls == nil
	if !done {
		tornDown = true
	}
	runMu.Unlock()
	if done {
		return
	}
	if l != nil {
		core.Shutdown([]*core.Lcore{l}, t.Close)
		l.Close()
	}
	if len(ls) > 0 {
		core.Shutdown(ls, func() {
			for _, t := range ts {
				t.Close()
			}
		})
	}
	// Lcore 0 owns the XDP program: close it last.
	for i := len(ls) - 1; i >= 0; i-- {
		ls[i].Close()
	}
}

// Exit is Teardown followed by os.Exit(code).
func Exit(code int) {
	Teardown()
	os.Exit(code)
}
