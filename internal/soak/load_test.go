package soak

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rigtest"
)

// page is what every helloworld response carries.
const page = "Hello from xstack"

// get sends one HTTP request on c and reads the whole response (by its
// Content-Length, or to EOF with Connection: close).
func get(c net.Conn, br *bufio.Reader, close bool) error {
	resp, err := rigtest.HTTPGet(c, br, "/", close, 10*time.Second)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 200 ")) {
		status, _, _ := bytes.Cut(resp, []byte("\r\n"))
		return fmt.Errorf("status %q", status)
	}
	if _, body, _ := bytes.Cut(resp, []byte("\r\n\r\n")); !bytes.Contains(body, []byte(page)) {
		return fmt.Errorf("body %q lacks the page", body)
	}
	if close {
		// The server closes after the response: a FIN, not a reset.
		if n, err := br.Read(make([]byte, 1)); err != io.EOF {
			return fmt.Errorf("after the response: %d bytes, %v; want EOF", n, err)
		}
	}
	return nil
}

// churn is a steady stream of short connections from the kernel peer: each
// connects, sends one request with Connection: close, reads the response
// and the server's FIN, and closes.
type churn struct {
	// made counts the connections tried; failed those that went wrong,
	// of which timedOut those that only took too long (a stack starved of
	// CPU on a shared machine) rather than being refused, reset or
	// answered wrongly.
	made, failed, timedOut atomic.Uint64
	stop                   chan struct{}
	ctx                    context.Context // cancelled by halt: ends the dials under way
	cancel                 context.CancelFunc
	wg                     sync.WaitGroup

	mu       sync.Mutex
	firstErr error                 // +checklocks:mu
	open     map[net.Conn]struct{} // connections under way. +checklocks:mu
}

// startChurn starts workers goroutines in namespace ns connecting to dst at
// about rate connections per second in all.
func startChurn(ns string, dst netip.AddrPort, workers, rate int) *churn {
	ch := &churn{stop: make(chan struct{}), open: map[net.Conn]struct{}{}}
	ch.ctx, ch.cancel = context.WithCancel(context.Background())
	tokens := make(chan struct{}, rate)
	ch.wg.Add(1)
	go func() {
		defer ch.wg.Done()
		const tick = 10 * time.Millisecond
		tk := time.NewTicker(tick)
		defer tk.Stop()
		start, given := time.Now(), 0
		for {
			select {
			case <-ch.stop:
				return
			case now := <-tk.C:
				due := int(now.Sub(start).Seconds() * float64(rate))
				for ; given < due; given++ {
					select {
					case tokens <- struct{}{}:
					default: // the workers are behind: do not bank the debt
						given = due
					}
				}
			}
		}
	}()
	for w := 0; w < workers; w++ {
		ch.wg.Add(1)
		go func() {
			defer ch.wg.Done()
			// The whole loop runs on a thread inside the peer's
			// namespace, so that every socket is made there.
			netns.Do(ns, func() error {
				for {
					select {
					case <-ch.stop:
						return nil
					case <-tokens:
					}
					err := ch.one(dst)
					if ch.ctx.Err() != nil {
						return nil // cut short by halt: not counted
					}
					ch.made.Add(1)
					if err != nil {
						ch.failed.Add(1)
						if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
							ch.timedOut.Add(1)
							continue
						}
						ch.mu.Lock()
						if ch.firstErr == nil {
							ch.firstErr = err
						}
						ch.mu.Unlock()
					}
				}
			})
		}()
	}
	return ch
}

func (ch *churn) one(dst netip.AddrPort) error {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ch.ctx, "tcp", dst.String())
	if err != nil {
		return err
	}
	ch.mu.Lock()
	ch.open[c] = struct{}{}
	ch.mu.Unlock()
	defer func() {
		ch.mu.Lock()
		delete(ch.open, c)
		ch.mu.Unlock()
		c.Close()
	}()
	if ch.ctx.Err() != nil {
		return ch.ctx.Err() // halted between the dial and the registration
	}
	return get(c, bufio.NewReader(c), true)
}

// halt stops the workers, cutting the connections under way short, and
// returns the first error other than a timeout any of them met before.
func (ch *churn) halt() error {
	close(ch.stop)
	ch.cancel()
	ch.mu.Lock()
	for c := range ch.open {
		c.SetDeadline(time.Now()) // ends the exchange; the worker closes it
	}
	ch.mu.Unlock()
	ch.wg.Wait()
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.firstErr
}

// openIdle opens n keep-alive connections from namespace ns to dst, each
// after one request, with workers dialling at once.
func openIdle(ns string, dst netip.AddrPort, n, workers int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	err := parallel(n, workers, func(i int) error {
		return netns.Do(ns, func() error {
			c, err := net.DialTimeout("tcp", dst.String(), 10*time.Second)
			if err != nil {
				return fmt.Errorf("idle connection %d: %w", i, err)
			}
			if err := get(c, bufio.NewReader(c), false); err != nil {
				c.Close()
				return fmt.Errorf("idle connection %d: %w", i, err)
			}
			conns[i] = c
			return nil
		})
	})
	return conns, err
}

// parallel runs f(0..n-1) on workers goroutines and returns the first
// error.
func parallel(n, workers int, f func(i int) error) error {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// raiseNoFile makes sure this process may hold n file descriptors.
func raiseNoFile(t *testing.T, n uint64) {
	t.Helper()
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur >= n {
		return
	}
	// Up to the hard limit needs no privilege; beyond it, CAP_SYS_RESOURCE.
	rl.Cur = max(n, rl.Max)
	rl.Max = max(rl.Max, n)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatalf("RLIMIT_NOFILE to %d: %v (raise the hard limit: ulimit -Hn %d)", n, err, n)
	}
}

// echoOnce does one round trip from namespace ns to a kernel echo server.
func echoOnce(ns string, addr netip.AddrPort) error {
	return netns.Do(ns, func() error {
		c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		const msg = "kernel to kernel\n"
		if _, err := io.WriteString(c, msg); err != nil {
			return err
		}
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || got != msg {
			return fmt.Errorf("echo: %q, %v", got, err)
		}
		return nil
	})
}

// procStatus returns a field of /proc/<pid>/status in kB (VmRSS, ...).
func procStatus(pid int, field string) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// procFDs counts the open file descriptors of pid.
func procFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

// schedTimes sums the time pid's threads ran on a CPU and the time they
// waited, runnable, for one (/proc/<pid>/task/*/schedstat).
func schedTimes(pid int) (run, wait time.Duration, err error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, task.Name()))
		if err != nil {
			continue // the thread has exited
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		r, _ := strconv.ParseInt(f[0], 10, 64)
		w, _ := strconv.ParseInt(f[1], 10, 64)
		run += time.Duration(r)
		wait += time.Duration(w)
	}
	return run, wait, nil
}
