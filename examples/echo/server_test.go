package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/posix/posixtest"
)

// startKernel runs the server on the kernel's loopback with one listener
// per service and returns their addresses. No privileges needed: the
// server logic is the same on both stacks.
func startKernel(t *testing.T) map[service]string {
	t.Helper()
	s, err := newServer(kernelSockets{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[service]string{}
	for _, svc := range []service{echoService, discardService, chargenService} {
		fd, err := s.listenTCPAt(&unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}, svc, 16)
		if err != nil {
			t.Fatal(err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			t.Fatal(err)
		}
		addrs[svc] = fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
	}
	t.Cleanup(func() {
		for fd := range s.socks {
			s.close(fd)
		}
		unix.Close(s.Epfd)
	})
	posixtest.Loop(t, s.poll)
	return addrs
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

func TestChargenPattern(t *testing.T) {
	if len(chargenPattern) < chargenPeriod+ioSize {
		t.Fatalf("pattern is %d bytes, want at least %d", len(chargenPattern), chargenPeriod+ioSize)
	}
	if got, want := string(chargenPattern[:74]), " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefg\r\n"; got != want {
		t.Errorf("first line %q, want %q", got, want)
	}
	if got, want := string(chargenPattern[74:76]), "!\""; got != want {
		t.Errorf("second line starts %q, want %q", got, want)
	}
	if !bytes.Equal(chargenPattern[:len(chargenPattern)-chargenPeriod], chargenPattern[chargenPeriod:]) {
		t.Error("pattern does not repeat after chargenPeriod bytes")
	}
}

func TestServices(t *testing.T) {
	addrs := startKernel(t)

	t.Run("echo", func(t *testing.T) {
		c := dial(t, addrs[echoService])
		want := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB: several reads
		go func() {
			c.Write(want)
			c.CloseWrite()
		}()
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("echoed %d of %d bytes (equal %v): %v", len(got), len(want), bytes.Equal(got, want), err)
		}
	})

	t.Run("discard", func(t *testing.T) {
		c := dial(t, addrs[discardService])
		if _, err := c.Write(make([]byte, 4<<20)); err != nil {
			t.Fatal(err)
		}
		c.CloseWrite()
		// Nothing comes back; the server closes after EOF.
		n, err := io.Copy(io.Discard, c)
		if n != 0 || err != nil {
			t.Fatalf("discard sent %d bytes back (%v)", n, err)
		}
	})

	t.Run("chargen", func(t *testing.T) {
		c := dial(t, addrs[chargenService])
		c.Write([]byte("ignored"))
		// Several MiB: many writes, each continuing where the last
		// stopped, so the stream is the pattern over and over.
		got := make([]byte, 3<<20+123)
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		for off := 0; off < len(got); off += chargenPeriod {
			end := min(off+chargenPeriod, len(got))
			if !bytes.Equal(got[off:end], chargenPattern[:end-off]) {
				t.Fatalf("stream differs from the pattern in bytes %d..%d", off, end)
			}
		}
		c.Close()
	})

	t.Run("chargen stops when the client closes", func(t *testing.T) {
		c := dial(t, addrs[chargenService])
		io.ReadFull(c, make([]byte, 1000))
		c.CloseWrite()
		// The server sees EOF and closes: the read ends with EOF or a
		// reset instead of running on.
		n, _ := io.Copy(io.Discard, c)
		if n > 64<<20 {
			t.Fatalf("chargen sent %d more bytes after the client closed", n)
		}
	})
}
