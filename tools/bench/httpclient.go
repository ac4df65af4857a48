package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

var (
	reqKeepAlive = []byte("GET / HTTP/1.1\r\nHost: xstack-bench\r\n\r\n")
	reqClose     = []byte("GET / HTTP/1.1\r\nHost: xstack-bench\r\nConnection: close\r\n\r\n")
	status200    = []byte("HTTP/1.1 200 ")
)

var errBadResponse = errors.New("bad HTTP response")

// readResponse reads one HTTP/1.1 response with a Content-Length from the
// blocking socket fd into buf and checks its status. No pipelining: nothing
// follows the response.
func readResponse(fd int, buf []byte) error {
	n, want := 0, -1
	for want < 0 || n < want {
		if n == len(buf) {
			return fmt.Errorf("%w: larger than %d bytes", errBadResponse, len(buf))
		}
		m, err := unix.Read(fd, buf[n:])
		if err != nil {
			return err
		}
		if m == 0 {
			return fmt.Errorf("%w: connection closed after %d bytes", errBadResponse, n)
		}
		n += m
		if want < 0 {
			want = responseLength(buf[:n])
		}
	}
	if !bytes.HasPrefix(buf, status200) {
		return fmt.Errorf("%w: %q", errBadResponse, buf[:min(n, 40)])
	}
	return nil
}

// responseLength returns the length of the response whose start is b (head
// and body), or -1 if the head is not complete yet.
func responseLength(b []byte) int {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return -1
	}
	head := b[:end]
	cl := 0
	for line := range bytes.SplitSeq(head, []byte("\r\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")) {
			cl, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	return end + 4 + cl
}

// cpsResult is what a short-connection run counted.
type cpsResult struct {
	conns   uint64 // complete connections: connect, request, response, close
	errors  uint64
	elapsed time.Duration
	lastErr error
}

// runCPS opens short connections to addr from ns with workers threads for
// d: connect, one request with Connection: close, read to EOF, close.
func runCPS(ctx context.Context, ns string, addr netip.AddrPort, workers int, d time.Duration) (cpsResult, error) {
	var (
		done, failed atomic.Uint64
		mu           sync.Mutex
		lastErr      error
	)
	start := monotonic()
	deadline := start + d.Nanoseconds()
	err := runWorkers(ctx, ns, workers, func(_ int, stop *atomic.Bool) error {
		buf := make([]byte, 4096)
		for !stop.Load() && monotonic() < deadline {
			if err := oneShort(addr, buf); err != nil {
				failed.Add(1)
				mu.Lock()
				lastErr = err
				mu.Unlock()
				// Back off a little: a refused or timed-out connect
				// must not turn into a busy loop of errors.
				time.Sleep(time.Millisecond)
				continue
			}
			done.Add(1)
		}
		return nil
	})
	return cpsResult{conns: done.Load(), errors: failed.Load(), elapsed: time.Duration(monotonic() - start), lastErr: lastErr}, err
}

func oneShort(addr netip.AddrPort, buf []byte) error {
	fd, err := dialBlocking(unix.SOCK_STREAM, addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, reqClose); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	n := 0
	for {
		if n == len(buf) {
			return fmt.Errorf("%w: longer than %d bytes", errBadResponse, len(buf))
		}
		m, err := unix.Read(fd, buf[n:])
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if m == 0 {
			break // the server closes after the response
		}
		n += m
	}
	if l := responseLength(buf[:n]); l != n || !bytes.HasPrefix(buf, status200) {
		return fmt.Errorf("%w: %d bytes: %q", errBadResponse, n, buf[:min(n, 40)])
	}
	return nil
}

// latencyResult is an open-loop run's outcome.
type latencyResult struct {
	sorted  []float64 // latencies in µs, sorted
	sent    uint64
	errors  uint64
	missed  uint64 // scheduled requests never sent (run cut off)
	elapsed time.Duration
	lastErr error
	// cpu are the CPU snapshots at the window's start (the first
	// request's due time) and end (the last response).
	cpu [2]cpuSnap
}

// runLatency sends keep-alive requests to addr at a fixed rate for d over
// conns connections and measures each from its scheduled send time, so
// that a stall delays the requests behind it and they count it
// (coordinated omission). Request k is due at start + k/rate; whichever
// connection is free takes the next one. snap takes the CPU figures at the
// window's edges.
func runLatency(ctx context.Context, ns string, addr netip.AddrPort, conns int, rate float64, d time.Duration, snap func() (cpuSnap, error)) (latencyResult, error) {
	var (
		next, failed atomic.Uint64
		mu           sync.Mutex
		lastErr      error
	)
	total := uint64(rate * d.Seconds())
	interval := float64(time.Second) / rate
	lat := make([][]float64, conns)
	// Start a little later so that every worker has connected.
	start := monotonic() + (200 * time.Millisecond).Nanoseconds()
	cutoff := start + d.Nanoseconds() + (2 * time.Second).Nanoseconds()
	var first cpuSnap
	firstErr := make(chan error, 1)
	go func() {
		sleepUntil(start)
		var err error
		first, err = snap()
		firstErr <- err
	}()
	err := runWorkers(ctx, ns, conns, func(i int, stop *atomic.Bool) error {
		buf := make([]byte, 4096)
		fd, err := dialBlocking(unix.SOCK_STREAM, addr, time.Second)
		if err != nil {
			return err
		}
		defer func() { unix.Close(fd) }()
		mine := make([]float64, 0, int(total)/conns+16)
		defer func() { lat[i] = mine }()
		for !stop.Load() {
			k := next.Add(1) - 1
			if k >= total {
				return nil
			}
			due := start + int64(float64(k)*interval)
			if due > cutoff {
				return nil
			}
			if now := monotonic(); now < due {
				sleepUntil(due)
			}
			_, err := unix.Write(fd, reqKeepAlive)
			if err == nil {
				err = readResponse(fd, buf)
			}
			if err != nil {
				failed.Add(1)
				mu.Lock()
				lastErr = err
				mu.Unlock()
				// The connection's state is unknown: start over.
				unix.Close(fd)
				if fd, err = dialBlocking(unix.SOCK_STREAM, addr, time.Second); err != nil {
					return err
				}
				continue
			}
			mine = append(mine, float64(monotonic()-due)/1e3)
		}
		return nil
	})
	// The start snapshot is taken before the end one, on the same control
	// connection.
	err = errors.Join(err, <-firstErr)
	last, lerr := snap()
	err = errors.Join(err, lerr)
	var all []float64
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	sent := uint64(len(all)) + failed.Load()
	r := latencyResult{
		sorted:  all,
		sent:    sent,
		errors:  failed.Load(),
		missed:  total - min(sent, total),
		elapsed: time.Duration(monotonic() - start),
		lastErr: lastErr,
		cpu:     [2]cpuSnap{first, last},
	}
	return r, err
}
