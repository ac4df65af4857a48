package ctl

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Tool is the common frame of the tools: a FlagSet with -p, --run-dir,
// --json and -h, usage text, and exit statuses 0 (done), 1 (failed) and 2
// (bad usage).
//
// Without -p a tool talks to every process of the run directory, and a
// process that does not answer (the socket of a process that died, see
// ErrNotAnswering) does not stop it: Connect and Each report it on
// standard error, one line, and go on with the others. The tool prints
// what the live processes answered and exits 0 when at least one did; it
// fails when none did, and when the process named with -p does not answer.
// A change (sysctl -w, route add, arp -s, pcap on, ifconfig ... up) is
// thus applied to the live processes and reported as not reaching the
// dead ones: a dead process has no state to change, and the next process
// started with its proc-id starts from config.ini.
type Tool struct {
	Name string
	Opts Options
	FS   *flag.FlagSet
	// Bools lists the tool's single-letter boolean flags, which may be
	// combined as in "netstat -an".
	Bools string
	// Stderr receives the reports of processes that do not answer
	// (os.Stderr when nil).
	Stderr io.Writer
}

// NewTool makes the tool's FlagSet with the common flags and usage text.
func NewTool(name, usage string) *Tool {
	t := &Tool{Name: name, FS: flag.NewFlagSet(name, flag.ContinueOnError)}
	t.Opts.Register(t.FS)
	t.FS.Usage = Usage(t.FS, usage)
	return t
}

// ErrUsage marks an error that is the caller's misuse: the tool prints it
// with its usage and exits 2.
var ErrUsage = errors.New("usage")

// Usagef returns an ErrUsage error.
func Usagef(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// Main parses os.Args, runs run with the operands and exits.
func (t *Tool) Main(run func(args []string) error) {
	args := t.expand(os.Args[1:])
	if err := t.FS.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if err := run(t.FS.Args()); err != nil {
		fmt.Fprintf(t.stderr(), "%s: %v\n", t.Name, strings.TrimPrefix(err.Error(), "usage: "))
		if errors.Is(err, ErrUsage) {
			fmt.Fprintf(t.stderr(), "run '%s -h' for help\n", t.Name)
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// expand splits combined single-letter boolean flags ("-an" into "-a -n")
// before the first operand.
func (t *Tool) expand(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") || a == "-" {
			return append(out, args[i:]...)
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if f := t.FS.Lookup(name); f != nil {
			out = append(out, a)
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && b.IsBoolFlag()) && i+1 < len(args) {
				i++
				out = append(out, args[i]) // the flag's value
			}
			continue
		}
		if strings.HasPrefix(a, "--") || hasValue || len(name) < 2 || strings.Trim(name, t.Bools) != "" {
			out = append(out, a)
			continue
		}
		for _, c := range name {
			out = append(out, "-"+string(c))
		}
	}
	return out
}

func (t *Tool) stderr() io.Writer {
	if t.Stderr == nil {
		return os.Stderr
	}
	return t.Stderr
}

// Report prints "<tool>: <err>" on the tool's standard error: one line
// for a process that does not answer.
func (t *Tool) Report(err error) {
	fmt.Fprintf(t.stderr(), "%s: %v\n", t.Name, err)
}

// Connect dials the processes -p selects. Without -p it reports each
// process that does not answer and returns the others; it fails when none
// answers. The caller closes the clients.
func (t *Tool) Connect() ([]*Client, error) {
	live, dead, err := t.Opts.Connect()
	if err != nil {
		return nil, err
	}
	for _, err := range dead {
		t.Report(err)
	}
	if len(live) == 0 {
		return nil, fmt.Errorf("%w answered in %s (%d socket(s), none served: see above)", ErrNoProcess, t.Opts.RunDir, len(dead))
	}
	return live, nil
}

// Each connects to the processes -p selects and calls f for each, in
// order of proc-id, closing them after. Without -p, a process that does
// not answer, at the connect or during f (an error of f that matches
// ErrNotAnswering), is reported and skipped, and Each fails only when no
// process answered. Any other error of f ends Each with it.
func (t *Tool) Each(f func(c *Client) error) error {
	cs, err := t.Connect()
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	answered := 0
	for _, c := range cs {
		err := f(c)
		if err != nil && errors.Is(err, ErrNotAnswering) && t.Opts.ProcID < 0 {
			t.Report(err)
			continue
		}
		if err != nil {
			if len(cs) > 1 {
				return fmt.Errorf("proc-id %d: %w", c.ProcID, err)
			}
			return err
		}
		answered++
	}
	if answered == 0 {
		return fmt.Errorf("%w answered in %s (see above)", ErrNoProcess, t.Opts.RunDir)
	}
	return nil
}
