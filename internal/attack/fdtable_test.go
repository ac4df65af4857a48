package attack

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/xstest"
	"github.com/xstack/xstack/posix/posixtest"
)

// TestFDTableFull fills a socket table to its limit (posix.Sockets.SetMaxFDs,
// RLIMIT_NOFILE's role) on an in-memory stack pair: Socket, EpollCreate and
// Accept must fail with EMFILE, not crash; a connection that arrives
// meanwhile stays queued, as on Linux, and is accepted and works once a
// descriptor is closed.
func TestFDTableFull(t *testing.T) {
	p := posixtest.NewPair(t)
	cli, srv := p.A, p.B
	const limit = 64
	srv.SetMaxFDs(limit)
	if got := srv.MaxFDs(); got != limit {
		t.Fatalf("MaxFDs() = %d after SetMaxFDs(%d)", got, limit)
	}

	lfd := listenB(t, srv, 0, 16)
	// Fill the table.
	var fds []int
	for {
		fd, err := srv.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			if !errors.Is(err, unix.EMFILE) {
				t.Fatalf("Socket with %d fds open: %v, want EMFILE", len(fds)+1, err)
			}
			break
		}
		fds = append(fds, fd)
		if len(fds) > limit {
			t.Fatalf("%d sockets open with a limit of %d", len(fds)+1, limit)
		}
	}
	if open := len(fds) + 1; open != limit-3 { // fds 0..2 are never handed out
		t.Errorf("%d descriptors open when Socket failed; want %d", open, limit-3)
	}
	if _, err := srv.EpollCreate(0); !errors.Is(err, unix.EMFILE) {
		t.Errorf("EpollCreate with the table full: %v, want EMFILE", err)
	}

	// A client connects: the handshake completes in the stack, but the
	// server has no descriptor for it.
	cfd, err := dialB(cli)
	if err != nil {
		t.Fatal(err)
	}
	// The handshake's last ACK lands: the listener turns readable.
	xstest.WaitFor(t, 5*time.Second, "the connection queued on the listener", func() error {
		pfd := []unix.PollFd{{Fd: int32(lfd), Events: unix.POLLIN}}
		if n, err := srv.Poll(pfd, 0); err != nil || n != 1 {
			return fmt.Errorf("poll = %d, %v", n, err)
		}
		return nil
	})
	if _, _, err := srv.Accept(lfd); !errors.Is(err, unix.EMFILE) {
		t.Fatalf("Accept with the table full: %v, want EMFILE", err)
	}
	// The connection is still queued: it survives until a descriptor is
	// free, then works.
	if err := srv.CloseFD(fds[len(fds)-1]); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Fcntl(lfd, unix.F_SETFL, unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	var afd int
	xstest.WaitFor(t, 2*time.Second, "Accept after a close (else the connection that arrived while the table was full is lost)", func() error {
		afd, _, err = srv.Accept(lfd)
		if err != nil && !errors.Is(err, unix.EAGAIN) {
			t.Fatalf("Accept after a close: %v; the connection that arrived while the table was full is lost", err)
		}
		return err
	})
	if _, err := cli.Write(cfd, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	n, err := srv.Read(afd, buf)
	if err != nil || string(buf[:n]) != "ping" {
		t.Fatalf("read on the accepted connection: %q, %v", buf[:n], err)
	}
	// Closing everything makes the whole table usable again.
	for _, fd := range fds[:len(fds)-1] {
		srv.CloseFD(fd)
	}
	for i := 0; i < limit-5; i++ {
		if _, err := srv.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0); err != nil {
			t.Fatalf("socket %d after the closes: %v", i, err)
		}
	}
}
