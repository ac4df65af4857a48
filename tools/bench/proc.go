package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a server process the bench started. Its output is kept for error
// messages. It dies with the bench (Pdeathsig), so that a killed bench
// leaves no busy-polling server behind.
type proc struct {
	name string
	cmd  *exec.Cmd

	mu    sync.Mutex
	lines []string
	cond  *sync.Cond
	done  chan struct{}
	err   error // Wait's result, once done is closed
}

// startProc runs argv and waits up to timeout for an output line that
// contains ready.
func startProc(ready string, timeout time.Duration, argv ...string) (*proc, error) {
	p := &proc{name: filepath.Base(argv[len(argv)-1]), cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{})}
	for _, a := range argv {
		if !strings.HasPrefix(a, "-") && filepath.IsAbs(a) {
			p.name = filepath.Base(a) // the program, not "ip"
		}
	}
	p.cond = sync.NewCond(&p.mu)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("start %s: %w", strings.Join(argv, " "), err)
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
		err := p.cmd.Wait()
		p.mu.Lock()
		p.err = err
		close(p.done)
		p.cond.Broadcast()
		p.mu.Unlock()
	}()
	if err := p.waitLine(ready, timeout); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s did not become ready: %w\noutput:\n%s", p.name, err, p.output())
	}
	return p, nil
}

func (p *proc) waitLine(s string, timeout time.Duration) error {
	timer := time.AfterFunc(timeout, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for _, l := range p.lines {
			if strings.Contains(l, s) {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("exited (%v) before printing %q", p.err, s)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no line with %q within %v", s, timeout)
		}
		p.cond.Wait()
	}
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// alive reports whether the process is still running.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, waits up to five seconds, then kills. It is safe to
// call more than once.
func (p *proc) stop() error {
	if !p.alive() {
		return nil
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
	}
	p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s did not exit within 5s of SIGTERM; killed", p.name)
}
