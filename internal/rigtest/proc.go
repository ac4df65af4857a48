package rigtest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/rig"
)

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// Build compiles the main package pkg (e.g. "./examples/helloworld",
// relative to the module root) once per test binary and returns the path
// of the executable. Executables go to one directory under the system's
// temporary directory per checkout, replaced atomically, so that parallel
// test binaries share it and nothing piles up.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	// One directory per module root, so that two checkouts' tests never
	// run each other's executables.
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("xstack-bin-%08x", crc32.ChecksumIEEE([]byte(root))))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	tmp := fmt.Sprintf("%s.%d", out, os.Getpid())
	cmd := exec.Command("go", "build", "-o", tmp, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	built[pkg] = out
	return out
}

func moduleRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod above the test's directory")
		}
		d = parent
	}
}

// Config writes a config.ini for an xstack process on r's stack side and
// returns its path. extra lines are appended to the file (e.g. a [sysctl]
// section). The loop sleeps when idle, so that tests leave CPU to the peer.
func Config(t testing.TB, r *rig.Rig, extra ...string) string {
	t.Helper()
	return ConfigLcores(t, r, 1, "process", extra...)
}

// ConfigLcores is Config for lcore_mask mask (hex) in mode (process or
// thread).
func ConfigLcores(t testing.TB, r *rig.Rig, mask int, mode string, extra ...string) string {
	t.Helper()
	conf := fmt.Sprintf(`[xstack]
lcore_mask=%x
mode=%s
busy_poll=1
idle_sleep=50
`, mask, mode) + r.PortConfig() + strings.Join(extra, "\n") + "\n"
	p := filepath.Join(t.TempDir(), "config.ini")
	if err := os.WriteFile(p, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Proc is a running xstack program.
type Proc struct {
	Cmd *exec.Cmd
	// RunDir is the run directory (XSTACK_RUN_DIR) StartProc made for the
	// process, removed when it exits; empty when the caller set one.
	RunDir string

	mu    sync.Mutex
	lines []string // stderr and stdout lines so far
	cond  *sync.Cond
	done  chan struct{}
	err   error // Wait's result, once done is closed
}

// Start runs bin with args, waits until a line of its output contains
// ready, and stops it (SIGTERM, then SIGKILL) when t ends.
func Start(t testing.TB, ready string, bin string, args ...string) *Proc {
	t.Helper()
	p, err := StartProc(ready, 20*time.Second, bin, args...)
	if p != nil {
		t.Cleanup(func() { p.Stop(5 * time.Second) })
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// StartProc is Start without a testing.TB; the caller stops the process.
// The process is killed if the caller dies (Pdeathsig), so that a crashed
// test or benchmark leaves no busy-polling lcore behind.
func StartProc(ready string, timeout time.Duration, bin string, args ...string) (*Proc, error) {
	p := &Proc{Cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// A run directory of its own (control sockets, the primary's join
	// socket), so that programs started at once by parallel tests do not
	// meet, unless the caller chose one.
	var runDir string
	if os.Getenv("XSTACK_RUN_DIR") == "" {
		d, err := os.MkdirTemp("", "xstack-run-")
		if err != nil {
			return nil, err
		}
		runDir = d
		p.RunDir = d
		p.Cmd.Env = append(os.Environ(), "XSTACK_RUN_DIR="+d)
	}
	p.cond = sync.NewCond(&p.mu)
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p.Cmd.Stdout, p.Cmd.Stderr = pw, pw
	if err := p.Cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		if runDir != "" {
			os.RemoveAll(runDir)
		}
		return nil, err
	}
	pw.Close()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.cond.Broadcast()
			p.mu.Unlock()
		}
		pr.Close()
		err := p.Cmd.Wait()
		if runDir != "" {
			os.RemoveAll(runDir)
		}
		p.mu.Lock()
		p.err = err
		close(p.done)
		p.cond.Broadcast()
		p.mu.Unlock()
	}()
	if _, err := p.WaitLine(ready, timeout); err != nil {
		return p, fmt.Errorf("%s did not become ready: %w\noutput:\n%s", filepath.Base(bin), err, p.Output())
	}
	return p, nil
}

// WaitLine waits for an output line containing s, from the start, and
// returns the first one.
func (p *Proc) WaitLine(s string, timeout time.Duration) (string, error) {
	line, _, err := p.waitLineFrom(0, s, timeout)
	return line, err
}

// waitLineFrom waits for a line with s among the lines from index from on,
// and returns it and the index after it.
func (p *Proc) waitLineFrom(from int, s string, timeout time.Duration) (string, int, error) {
	timer := time.AfterFunc(timeout, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := from; ; {
		for ; i < len(p.lines); i++ {
			if strings.Contains(p.lines[i], s) {
				return p.lines[i], i + 1, nil
			}
		}
		select {
		case <-p.done:
			return "", 0, fmt.Errorf("process exited (%v) before printing %q", p.err, s)
		default:
		}
		if time.Now().After(deadline) {
			return "", 0, fmt.Errorf("no line with %q within %v", s, timeout)
		}
		p.cond.Wait()
	}
}

// WaitLines waits until count output lines contain s and returns them.
func (p *Proc) WaitLines(s string, count int, timeout time.Duration) ([]string, error) {
	var got []string
	from := 0
	deadline := time.Now().Add(timeout)
	for len(got) < count {
		line, next, err := p.waitLineFrom(from, s, time.Until(deadline))
		if err != nil {
			return got, err
		}
		got, from = append(got, line), next
	}
	return got, nil
}

// Output returns everything the process printed so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// Counters asks the process for its counters (SIGUSR1) and returns them.
func (p *Proc) Counters(t testing.TB) map[string]uint64 {
	t.Helper()
	cs, err := p.CountersErr()
	if err != nil {
		t.Fatalf("%v\noutput:\n%s", err, p.Output())
	}
	return cs
}

// CountersErr is Counters for callers without a testing.TB.
func (p *Proc) CountersErr() (map[string]uint64, error) {
	all, err := p.countersN(1)
	if err != nil {
		return nil, err
	}
	return all[0].Counters, nil
}

// LcoreCounters are one lcore's counters line.
type LcoreCounters struct {
	Lcore    int               `json:"lcore"`
	Pid      int               `json:"pid"`
	Counters map[string]uint64 `json:"counters"`
}

// CountersAll asks for counters and waits for n lcores' lines (a launcher
// forwards the signal to each of its processes; a thread-mode process
// prints one line per lcore). They are returned in the order they came.
func (p *Proc) CountersAll(t testing.TB, n int) []LcoreCounters {
	t.Helper()
	all, err := p.countersN(n)
	if err != nil {
		t.Fatalf("%v\noutput:\n%s", err, p.Output())
	}
	return all
}

func (p *Proc) countersN(n int) ([]LcoreCounters, error) {
	p.mu.Lock()
	from := len(p.lines)
	p.mu.Unlock()
	if err := p.Cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return nil, fmt.Errorf("signal for counters: %w", err)
	}
	var all []LcoreCounters
	for len(all) < n {
		line, next, err := p.waitLineFrom(from, "xstack-counters ", 10*time.Second)
		if err != nil {
			return nil, fmt.Errorf("counters: %w", err)
		}
		from = next
		v, err := ParseCounters(line)
		if err != nil {
			return nil, err
		}
		all = append(all, v)
	}
	return all, nil
}

// ParseCounters reads an "xstack-counters {...}" line, which a process
// prints on SIGUSR1 and, for each lcore, as it exits.
func ParseCounters(line string) (LcoreCounters, error) {
	var v LcoreCounters
	i := strings.Index(line, "{")
	if i < 0 {
		return v, fmt.Errorf("counters line %q: no JSON object", line)
	}
	if err := json.Unmarshal([]byte(line[i:]), &v); err != nil {
		return v, fmt.Errorf("counters line %q: %w", line, err)
	}
	return v, nil
}

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to timeout for the process to exit and returns its error.
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("still running after %v", timeout)
	}
}

// Stop sends SIGTERM, waits up to timeout, then kills. It returns the
// process's exit error: nil for a clean exit, and for a process that the
// SIGTERM itself ended (one that does not catch it).
func (p *Proc) Stop(timeout time.Duration) error {
	if p.Exited() {
		return p.err
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	if err := p.Wait(timeout); err == nil || p.Exited() {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
				return nil
			}
		}
		return err
	}
	p.Cmd.Process.Kill()
	p.Wait(timeout)
	return fmt.Errorf("did not exit within %v of SIGTERM; killed", timeout)
}
