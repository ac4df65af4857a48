package ctl

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"
)

// Client is a connection to one lcore process. It is not safe for
// concurrent use.
type Client struct {
	ProcID int
	Path   string
	conn   net.Conn
	br     *bufio.Reader
}

// ErrNoProcess means no process serves the proc-id asked for.
var ErrNoProcess = errors.New("no xstack process")

// ErrNotAnswering means a process has its socket in the run directory but
// does not answer: nothing listens on the socket (a process killed with
// SIGKILL leaves it behind until the next primary clears it), or the
// connection broke or timed out during a request.
var ErrNotAnswering = errors.New("not answering")

// Dial connects to proc-id procID in runDir. The error matches
// ErrNoProcess when runDir has no socket for it, ErrNotAnswering when
// nothing answers on the socket, and os.ErrPermission when this user may
// not use it.
func Dial(runDir string, procID int) (*Client, error) {
	path := SocketPath(runDir, procID)
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w with proc-id %d in %s (no %s; is it running? see --run-dir)", ErrNoProcess, procID, runDir, path)
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, permissionError(runDir, fmt.Errorf("proc-id %d: %w", procID, err))
		}
		why := err.Error()
		var errno syscall.Errno
		if errors.As(err, &errno) {
			why = errno.Error() // the path is said below
		}
		return nil, fmt.Errorf("proc-id %d: %w: %s (stale socket %s of a process that died?)", procID, ErrNotAnswering, why, path)
	}
	return &Client{ProcID: procID, Path: path, conn: c, br: bufio.NewReaderSize(c, 64<<10)}, nil
}

// permissionError explains a run directory or control socket that this
// user may not use: the stacks make them 0700 and 0600, so only their owner
// (root, as a rule) talks to a stack. err is the refusal; errors.Is(err,
// os.ErrPermission) holds for the result.
func permissionError(runDir string, err error) error {
	return fmt.Errorf("permission denied on run directory %s: the control sockets are only for the user that runs the stacks (the directory is 0700, each socket 0600); run the tool as root, e.g. with sudo (%w)", runDir, err)
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// RemoteError is an error reply.
type RemoteError struct {
	ProcID int
	Msg    string
}

func (e *RemoteError) Error() string { return e.Msg }

// Call sends op with args (nil for none) and decodes the result into
// result (nil to ignore it). An error reply is a *RemoteError.
func (c *Client) Call(op string, args, result any) error {
	req := Request{V: Version, Op: op}
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return err
		}
		req.Args = b
	}
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return c.CallRaw(append(b, '\n'), result)
}

// CallRaw sends line (a request, newline included, not checked) and
// decodes the reply's result into result.
func (c *Client) CallRaw(line []byte, result any) error {
	c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.conn.Write(line); err != nil {
		return fmt.Errorf("proc-id %d: %w: send: %w (did the process die?)", c.ProcID, ErrNotAnswering, err)
	}
	b, err := ReadLine(c.br, MaxReply)
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return fmt.Errorf("proc-id %d: reply: %w", c.ProcID, err)
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("proc-id %d: %w: reply: %w (did the process die?)", c.ProcID, ErrNotAnswering, err)
	}
	var rep Reply
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("proc-id %d: malformed reply: %w", c.ProcID, err)
	}
	if rep.Error != "" {
		return &RemoteError{ProcID: c.ProcID, Msg: rep.Error}
	}
	if result != nil && len(rep.Result) > 0 {
		if err := json.Unmarshal(rep.Result, result); err != nil {
			return fmt.Errorf("proc-id %d: result of %s: %w", c.ProcID, "request", err)
		}
	}
	return nil
}

// Options are the flags every tool takes.
type Options struct {
	ProcID int    // -p: -1 = every process in the run dir
	RunDir string // --run-dir
	JSON   bool   // --json
}

// Register defines -p/--proc-id, --run-dir and --json on fs.
func (o *Options) Register(fs *flag.FlagSet) {
	for _, n := range []string{"p", "proc-id"} {
		fs.IntVar(&o.ProcID, n, -1, "talk to the process with this proc-id (default: every process in the run dir)")
	}
	fs.StringVar(&o.RunDir, "run-dir", DefaultRunDir(), "directory of the processes' control sockets ($XSTACK_RUN_DIR, or /run/xstack/$XSTACK_INSTANCE)")
	fs.BoolVar(&o.JSON, "json", false, "print JSON instead of text")
}

// Connect dials the process -p names, or every process in the run dir.
// With -p, a process that cannot be reached is an error. Without it, the
// processes whose socket is there but that do not answer (ErrNotAnswering)
// or that went away since the directory was read (ErrNoProcess) are
// returned in dead, one error each, and the others in live; it is an error
// only when there is no socket at all or this user may not use them. The
// caller closes the clients.
func (o *Options) Connect() (live []*Client, dead []error, err error) {
	if o.ProcID >= 0 {
		c, err := Dial(o.RunDir, o.ProcID)
		if err != nil {
			return nil, nil, err
		}
		return []*Client{c}, nil, nil
	}
	ids, err := Procs(o.RunDir)
	if errors.Is(err, os.ErrPermission) {
		return nil, nil, permissionError(o.RunDir, err)
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("run dir: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil, fmt.Errorf("%w found in %s (is one running? see --run-dir, XSTACK_RUN_DIR)", ErrNoProcess, o.RunDir)
	}
	for _, id := range ids {
		c, err := Dial(o.RunDir, id)
		switch {
		case err == nil:
			live = append(live, c)
		case errors.Is(err, ErrNotAnswering), errors.Is(err, ErrNoProcess):
			dead = append(dead, err)
		default:
			for _, c := range live {
				c.Close()
			}
			return nil, nil, err
		}
	}
	return live, dead, nil
}

// Usage returns a flag.Usage function that prints text (the synopsis and
// description, one or more lines) and then fs's flags.
func Usage(fs *flag.FlagSet, text string) func() {
	return func() {
		w := fs.Output()
		fmt.Fprintln(w, strings.TrimSpace(text))
		fmt.Fprintln(w, "\nFlags:")
		fs.PrintDefaults()
	}
}

// PrintJSON writes v as indented JSON.
func PrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Fatal prints "<tool>: <err>" on standard error and exits with status 1.
func Fatal(tool string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", tool, err)
	os.Exit(1)
}
