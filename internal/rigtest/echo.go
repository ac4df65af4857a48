package rigtest

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/netns"
)

// KernelEcho serves TCP echo with the kernel's stack in namespace ns on
// each address, until the test ends.
func KernelEcho(t testing.TB, ns string, addrs ...netip.AddrPort) {
	t.Helper()
	for _, a := range addrs {
		var ln net.Listener
		if err := netns.Do(ns, func() error {
			var err error
			ln, err = net.Listen("tcp", a.String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(c, c); c.Close() }()
			}
		}()
	}
}

// EchoBulk sends size pseudo-random bytes (from seed) on c to an echo
// server, half-closes c, reads everything back, and checks length and
// SHA-256 of what came back against what was sent. With stall > 0 each
// read and write must make progress within stall; otherwise the caller's
// deadline on c holds. When a read fails, diag (if not nil) is called
// while c is still open, and what it returns is added to the error (the
// sockets' state); c is then closed, to stop the writer. Otherwise c stays
// open for the caller to close.
func EchoBulk(c *net.TCPConn, size int64, seed uint64, stall time.Duration, diag func() string) error {
	deadline := func(set func(time.Time) error) {
		if stall > 0 {
			set(time.Now().Add(stall))
		}
	}
	sent := sha256.New()
	var wrote int64
	werr := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		buf := make([]byte, 64<<10)
		for wrote < size {
			n := min(int64(len(buf)), size-wrote)
			for i := 0; i < int(n); i += 8 {
				v := rng.Uint64()
				for j := 0; j < 8 && i+j < int(n); j++ {
					buf[i+j] = byte(v >> (8 * j))
				}
			}
			sent.Write(buf[:n])
			deadline(c.SetWriteDeadline)
			k, err := c.Write(buf[:n])
			wrote += int64(k)
			if err != nil {
				werr <- fmt.Errorf("write after %d bytes: %w", wrote, err)
				return
			}
		}
		werr <- c.CloseWrite()
	}()
	got := sha256.New()
	buf := make([]byte, 64<<10)
	var read int64
	for {
		deadline(c.SetReadDeadline)
		n, err := c.Read(buf)
		got.Write(buf[:n])
		read += int64(n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			snap := ""
			if diag != nil {
				snap = diag()
			}
			// Closing stops the writer, which may be blocked on a full
			// window.
			c.Close()
			if werr := <-werr; werr != nil && !errors.Is(werr, net.ErrClosed) {
				// The writer stopped first: its error says why.
				err = fmt.Errorf("%w (the writer had stopped: %v)", err, werr)
			}
			return fmt.Errorf("read after %d of %d bytes (%d written): %w%s", read, size, wrote, err, snap)
		}
	}
	if err := <-werr; err != nil {
		return err
	}
	if read != size || !bytes.Equal(got.Sum(nil), sent.Sum(nil)) {
		return fmt.Errorf("echoed %d bytes with sha256 %x; sent %d with %x", read, got.Sum(nil), size, sent.Sum(nil))
	}
	return nil
}
