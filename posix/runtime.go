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

// The lcores this process runs and their socket tables: one in process
// mode (F-Stack's model), every lcore of lcore_mask in thread mode. Process
// mode is the group of one; the rest of the package does not tell them
// apart.
var (
	runMu    sync.Mutex
	group    []*core.Lcore // +checklocks:runMu
	tables   []*Sockets    // tables[i] serves group[i]; +checklocks:runMu
	tornDown bool          // set by the first Teardown; +checklocks:runMu
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
// default one of the package-level functions. A configuration with
// mode=thread and several lcores needs InitLcores.
func InitWith(o Options) error {
	_, err := initGroup(o, false)
	return err
}

// InitLcores starts what the configuration asks for and returns one socket
// table per lcore this process runs: in process mode (F-Stack's model) the
// one lcore of -p, as InitWith does; in thread mode every lcore of
// lcore_mask, each with its own stack and table. The program then runs one
// instance of its server per table, with RunLcores.
func InitLcores(o Options) ([]*Sockets, error) {
	return initGroup(o, true)
}

// initGroup starts the lcores o's configuration gives this process (every
// lcore in thread mode when threads is set, else the one of -p) and a
// socket table for each; the first becomes the default table.
func initGroup(o Options, threads bool) ([]*Sockets, error) {
	runMu.Lock()
	defer runMu.Unlock()
	if group != nil {
		return nil, errors.New("xstack: Init called twice")
	}
	if err := checkProcType(o); err != nil {
		return nil, err
	}
	if o.Conf == "" {
		o.Conf = "config.ini"
	}
	conf, err := core.LoadConfig(o.Conf)
	if err != nil {
		return nil, err
	}
	var ls []*core.Lcore
	if threads && conf.Mode == core.ModeThread {
		ls, err = core.StartThreads(conf, o.Logger)
	} else {
		var l *core.Lcore
		l, err = core.Start(conf, o.ProcID, o.Logger)
		ls = []*core.Lcore{l}
	}
	if err != nil {
		return nil, err
	}
	ts := make([]*Sockets, len(ls))
	for i, l := range ls {
		ts[i] = lcoreSockets(l)
	}
	group, tables = ls, ts
	SetDefault(ts[0])
	return ts, nil
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

// RunLcores runs the loops of the lcores InitLcores started, loops[i] being
// the callback of table i: a single lcore on the calling goroutine (its
// process is pinned to the lcore's CPU), several each on its own OS thread
// pinned to its CPU. It returns when every loop has ended (SIGINT or
// SIGTERM stops them all; one that fails stops the others), after closing
// the sockets and the stacks (Teardown). A stop by signal returns nil.
func RunLcores(loops []func() error) error {
	runMu.Lock()
	ls, ts := group, tables
	runMu.Unlock()
	if ls == nil {
		return errors.New("xstack: Run before Init")
	}
	if len(loops) != len(ls) {
		return fmt.Errorf("xstack: %d loop callbacks for %d lcore(s)", len(loops), len(ls))
	}
	app := func(i int) func() error {
		t, loop := ts[i], loops[i]
		return func() error { return t.RunCallback(loop) }
	}
	if len(ls) == 1 {
		err := ls[0].Run(app(0))
		Teardown()
		return err
	}
	errs := make([]error, len(ls))
	var wg sync.WaitGroup
	for i := range ls {
		wg.Go(func() {
			if errs[i] = ls[i].RunPinned(app(i)); errs[i] != nil {
				for _, l := range ls {
					l.Loop.Stop()
				}
			}
		})
	}
	wg.Wait()
	Teardown()
	return errors.Join(errs...)
}

// Run runs the lcore loop, calling loop once per pass (ff_run; again in the
// same pass when it registers a socket that is ready, see
// Sockets.RunCallback), until loop returns an error or the process gets SIGINT or SIGTERM. Then it closes
// every socket, lets the resulting FINs and RSTs leave, closes the stack
// and detaches from the NIC. A stop by signal returns nil. A process that
// runs several lcores (thread mode) uses RunLcores.
func Run(loop func() error) error {
	return RunLcores([]func() error{loop})
}

// Stop makes Run or RunLcores return: every loop of this process ends after
// its current pass. It is safe to call from any goroutine.
func Stop() {
	runMu.Lock()
	defer runMu.Unlock()
	for _, l := range group {
		l.Loop.Stop()
	}
}

// Lcores returns the lcores this process runs (one in process mode), or
// nil before Init.
func Lcores() []*core.Lcore {
	runMu.Lock()
	defer runMu.Unlock()
	return group
}

// Lcore returns the lcore started by Init, or nil before Init and in a
// process that runs several lcores.
func Lcore() *core.Lcore {
	runMu.Lock()
	defer runMu.Unlock()
	if len(group) != 1 {
		return nil
	}
	return group[0]
}

// Teardown closes the sockets, the stacks and the NIC queues of the lcores
// started by Init, InitWith or InitLcores, ending the connections as
// [xstack] shutdown says (core.Shutdown: FIN and a bounded wait for the
// peers, or RST). Run and RunLcores call it when the loops end; it is
// idempotent.
func Teardown() {
	runMu.Lock()
	ls, ts := group, tables
	done := tornDown || ls == nil
	tornDown = true
	runMu.Unlock()
	if done {
		return
	}
	core.Shutdown(ls, func() {
		for _, t := range ts {
			t.Close()
		}
	})
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
