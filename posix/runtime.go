package posix

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"sync"
	"time"

	"github.com/xstack/xstack/core"
	"github.com/xstack/xstack/stack"
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
	switch o.ProcType {
	case "", "auto", "primary":
	case "secondary":
		return fmt.Errorf("xstack: proc-type secondary: this version runs each lcore as a primary; give each process its own port")
	default:
		return fmt.Errorf("xstack: proc-type %q: expected primary, secondary or auto", o.ProcType)
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
	t := NewSockets(l.Stack.Gvisor(), stack.NICID)
	lcore, lcoreT = l, t
	SetDefault(t)
	return nil
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

// Teardown closes the sockets, the stack and the NIC queue of the lcore
// started by Init. Run calls it when the loop ends; it is idempotent.
func Teardown() {
	runMu.Lock()
	l, t := lcore, lcoreT
	runMu.Unlock()
	if l == nil {
		return
	}
	t.Close()
	l.Drain(100 * time.Millisecond)
	l.Close()
}

// Exit is Teardown followed by os.Exit(code).
func Exit(code int) {
	Teardown()
	os.Exit(code)
}
