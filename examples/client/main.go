// Command client opens TCP connections from xstack to a server and checks
// what comes back: it sends a stream of pseudo-random bytes to an echo
// server and compares the SHA-256 of what it sent with what it received.
//
//	client -c config.ini -addr 198.18.0.2:7 -bytes 10485760 -conns 1
//
// It shows the other way to use posix: the lcore loops run with no callback
// while ordinary goroutines make blocking socket calls.
package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/posix"
)

func main() {
	var opts posix.Options
	opts.RegisterFlags(flag.CommandLine)
	addr := flag.String("addr", "198.18.0.2:7", "echo server address:port")
	size := flag.Int("bytes", 1<<20, "bytes to send on each connection")
	conns := flag.Int("conns", 1, "connections to open")
	parallel := flag.Int("parallel", 64, "connections open at once")
	counters := flag.Bool("counters", false, "print every lcore's counters (one JSON line each) when done")
	timeout := flag.Duration("timeout", 0, "give up (with the counters and the unfinished connections) after this long; 0 waits for ever")
	linger := flag.Bool("linger", false, "when done, keep the lcores running until SIGINT or SIGTERM: with one process per lcore (tools/launch), the others' replies that arrive on this process's queue are still handed over to them")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("client: ")
	ap, err := netip.ParseAddrPort(*addr)
	if err != nil {
		log.Fatalf("-addr: %v", err)
	}
	// One socket table per lcore this process runs (several in thread
	// mode); connections are spread over them.
	tables, err := posix.InitLcores(opts)
	if err != nil {
		log.Fatal(err)
	}
	errc := make(chan error, 1)
	var unfinished sync.Map // connection number → what it is doing
	if *timeout > 0 {
		time.AfterFunc(*timeout, func() {
			for _, l := range posix.Lcores() {
				l.PrintCounters(os.Stderr)
			}
			n := 0
			unfinished.Range(func(k, v any) bool {
				if n < 20 {
					log.Printf("connection %d still %s", k, v.(*atomic.Value).Load())
				}
				n++
				return true
			})
			log.Fatalf("timed out after %v with %d connection(s) unfinished", *timeout, n)
		})
	}
	go func() {
		var wg sync.WaitGroup
		var mu sync.Mutex
		var first error
		start := time.Now()
		slots := make(chan struct{}, *parallel)
		for i := 0; i < *conns; i++ {
			wg.Add(1)
			slots <- struct{}{}
			go func(i int) {
				defer wg.Done()
				defer func() { <-slots }()
				state := new(atomic.Value)
				state.Store("connecting")
				unfinished.Store(i, state)
				defer unfinished.Delete(i)
				if err := echo(tables[i%len(tables)], ap, *size, uint64(i), state); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
				}
			}(i)
		}
		wg.Wait()
		if first == nil {
			d := time.Since(start)
			total := float64(*size) * float64(*conns)
			fmt.Printf("ok: %d connection(s) × %d bytes echoed intact in %v (%.1f Mbit/s)\n", *conns, *size, d.Round(time.Millisecond), total*8/d.Seconds()/1e6)
		}
		if *counters {
			for _, l := range posix.Lcores() {
				l.PrintCounters(os.Stderr)
			}
		}
		errc <- first
		if !*linger || first != nil {
			posix.Stop()
		}
	}()
	if err := posix.RunLcores(make([]func() error, len(tables))); err != nil {
		log.Fatal(err)
	}
	if err := <-errc; err != nil {
		log.Fatal(err)
	}
}

func sockaddr(ap netip.AddrPort) (int, unix.Sockaddr) {
	if ap.Addr().Is4() {
		return unix.AF_INET, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return unix.AF_INET6, &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}

// echo sends size pseudo-random bytes on a new connection while reading
// the echo back, and compares the hashes.
func echo(t *posix.Sockets, ap netip.AddrPort, size int, seed uint64, state *atomic.Value) error {
	domain, sa := sockaddr(ap)
	fd, err := t.Socket(domain, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	defer t.CloseFD(fd)
	if err := t.Connect(fd, sa); err != nil {
		return fmt.Errorf("connect %s: %w", ap, err)
	}
	if la, err := t.Getsockname(fd); err == nil {
		if a, ok := la.(*unix.SockaddrInet4); ok {
			state.Store(fmt.Sprintf("echoing from port %d", a.Port))
		} else if a, ok := la.(*unix.SockaddrInet6); ok {
			state.Store(fmt.Sprintf("echoing from port %d", a.Port))
		}
	}
	sent := sha256.New()
	werr := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(seed, 1))
		buf := make([]byte, 32768)
		for left := size; left > 0; {
			chunk := buf[:min(left, len(buf))]
			for i := range chunk {
				chunk[i] = byte(rng.Uint32())
			}
			sent.Write(chunk)
			for p := chunk; len(p) > 0; {
				n, err := t.Write(fd, p)
				if err != nil {
					werr <- fmt.Errorf("write: %w", err)
					return
				}
				p = p[n:]
			}
			left -= len(chunk)
		}
		werr <- t.Shutdown(fd, unix.SHUT_WR)
	}()
	got := sha256.New()
	buf := make([]byte, 65536)
	total := 0
	for {
		n, err := t.Read(fd, buf)
		if n > 0 {
			got.Write(buf[:n])
			total += n
			continue
		}
		if err != nil {
			return fmt.Errorf("read after %d bytes: %w", total, err)
		}
		break // EOF
	}
	if err := <-werr; err != nil {
		return err
	}
	if total != size {
		return fmt.Errorf("received %d bytes, sent %d", total, size)
	}
	if !bytes.Equal(sent.Sum(nil), got.Sum(nil)) {
		return errors.New("echoed bytes differ from those sent")
	}
	return nil
}
