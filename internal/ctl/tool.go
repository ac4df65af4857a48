package ctl

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// Tool is the common frame of the tools: a FlagSet with -p, --run-dir,
// --json and -h, usage text, and exit statuses 0 (done), 1 (failed) and 2
// (bad usage).
type Tool struct {
	Name string
	Opts Options
	FS   *flag.FlagSet
	// Bools lists the tool's single-letter boolean flags, which may be
	// combined as in "netstat -an".
	Bools string
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
		fmt.Fprintf(os.Stderr, "%s: %v\n", t.Name, strings.TrimPrefix(err.Error(), "usage: "))
		if errors.Is(err, ErrUsage) {
			fmt.Fprintf(os.Stderr, "run '%s -h' for help\n", t.Name)
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

// Each connects to the processes -p selects and calls f for each, closing
// them after.
func (t *Tool) Each(f func(c *Client) error) error {
	cs, err := t.Opts.Connect()
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for _, c := range cs {
		if err := f(c); err != nil {
			if len(cs) > 1 {
				return fmt.Errorf("proc-id %d: %w", c.ProcID, err)
			}
			return err
		}
	}
	return nil
}
