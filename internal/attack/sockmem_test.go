package attack

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/xstest"
	"github.com/xstack/xstack/posix"
	"github.com/xstack/xstack/posix/posixtest"
)

// TestSocketMemoryLimit runs a server whose socket-buffer memory
// (net.inet.tcp.mem_limit) holds `room` connections while more clients
// than that connect, on an in-memory stack pair. The server accepts until
// Accept fails with ENOBUFS, serves what it accepted, closes it and
// accepts again: the connections that waited stay queued meanwhile (their
// clients have sent their data), Socket fails with ENOBUFS while UDP and
// epoll keep working, and in the end every client gets every byte back and
// no memory stays reserved.
func TestSocketMemoryLimit(t *testing.T) {
	const (
		room    = 4  // connections the limit holds
		clients = 10 // room+6: two rounds of waiting
		size    = 32 << 10
	)
	p := posixtest.NewPair(t)
	cli, srv := p.A, p.B

	// What one TCP socket reserves, measured before the limit is set.
	fd, err := srv.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	per := srv.MemReserved()
	srv.CloseFD(fd)
	if per <= 0 || srv.MemReserved() != 0 {
		t.Fatalf("a TCP socket reserved %d bytes, %d left after its close", per, srv.MemReserved())
	}
	posixtest.SetMemLimit(t, srv, room*per) // before any client connects

	lfd := listenB(t, srv, unix.SOCK_NONBLOCK, clients)
	if got := srv.MemReserved(); got != 0 {
		t.Fatalf("a listener holds %d bytes of reservation, want 0", got)
	}

	// Every client connects, sends its own bytes and half-closes at
	// once, then checks what comes back.
	connected := make(chan error, clients)
	results := make(chan error, clients)
	for i := range clients {
		go func() {
			if err := echoClient(cli, i, size, connected); err != nil {
				results <- fmt.Errorf("client %d: %w", i, err)
				return
			}
			results <- nil
		}()
	}
	for range clients {
		if err := <-connected; err != nil {
			t.Fatal(err)
		}
	}

	served, refused := 0, uint64(0)
	for served < clients {
		// Accept as much as memory allows.
		var batch []int
		want := min(room, clients-served)
		// EAGAIN: a final ACK is still on its way.
		err := xstest.Until(10*time.Second, func() error {
			for len(batch) < want {
				afd, _, err := srv.Accept(lfd)
				if err != nil && !errors.Is(err, unix.EAGAIN) {
					t.Fatalf("accept %d of round %d (%d served): %v", len(batch)+1, served/room+1, served, err)
				}
				if err != nil {
					return err
				}
				batch = append(batch, afd)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("accept %d of round %d (%d served): %v", len(batch)+1, served/room+1, served, err)
		}
		if got := srv.MemReserved(); got != int64(len(batch))*per {
			t.Fatalf("%d connections reserve %d bytes, want %d", len(batch), got, int64(len(batch))*per)
		}
		if served+len(batch) < clients {
			// Memory is short: the others stay queued, and nothing
			// else breaks.
			if _, _, err := srv.Accept(lfd); !errors.Is(err, unix.ENOBUFS) {
				t.Fatalf("Accept with the memory taken: %v, want ENOBUFS", err)
			}
			if _, err := srv.Socket(unix.AF_INET6, unix.SOCK_STREAM, 0); !errors.Is(err, unix.ENOBUFS) {
				t.Fatalf("Socket with the memory taken: %v, want ENOBUFS", err)
			}
			refused += 2
			ufd, err := srv.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
			if err != nil {
				t.Fatalf("UDP socket with the TCP memory taken: %v", err)
			}
			epfd, err := srv.EpollCreate(0)
			if err != nil {
				t.Fatalf("EpollCreate with the TCP memory taken: %v", err)
			}
			srv.CloseFD(ufd)
			srv.CloseFD(epfd)
		}
		// Serve the batch: echo each until its client's EOF, then
		// close, which gives its memory back.
		for _, afd := range batch {
			if err := echoServe(srv, afd, size); err != nil {
				t.Fatal(err)
			}
			served++
		}
		if got := srv.MemReserved(); got != 0 {
			t.Fatalf("%d bytes reserved after the batch was closed, want 0", got)
		}
	}
	for range clients {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	if got := srv.MemRefused(); got != refused {
		t.Errorf("MemRefused() = %d, want the %d refusals seen", got, refused)
	}
	srv.CloseFD(lfd)
	if got := srv.MemReserved(); got != 0 {
		t.Errorf("MemReserved() = %d at the end, want 0", got)
	}
}

// payload is client i's bytes: a pattern no other client sends.
func payload(i, size int) []byte {
	b := make([]byte, size)
	for j := range b {
		b[j] = byte(i*131 + j*7 + j/251)
	}
	return b
}

// echoClient connects to port 80 of stack B, reports the connection on
// connected (blocking until the handshake is done, so the connection is in
// the server's accept queue or accepted), sends its payload, half-closes
// and checks that the echo is the payload, whole.
func echoClient(t *posix.Sockets, i, size int, connected chan<- error) error {
	fd, err := dialB(t)
	if err == nil {
		defer t.CloseFD(fd)
	}
	connected <- err
	if err != nil {
		return err
	}
	want := payload(i, size)
	if _, err := t.Write(fd, want); err != nil {
		return fmt.Errorf("write: %v", err)
	}
	if err := t.Shutdown(fd, unix.SHUT_WR); err != nil {
		return fmt.Errorf("shutdown: %v", err)
	}
	got := make([]byte, 0, size)
	buf := make([]byte, 16<<10)
	for {
		n, err := t.Read(fd, buf)
		if err != nil {
			return fmt.Errorf("read after %d bytes: %v", len(got), err)
		}
		if n == 0 {
			break
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("echo of %d bytes differs from the %d sent", len(got), len(want))
	}
	return nil
}

// echoServe reads fd to EOF, writes it all back and closes fd.
func echoServe(t *posix.Sockets, fd, size int) error {
	defer t.CloseFD(fd)
	got := make([]byte, 0, size)
	buf := make([]byte, 16<<10)
	for {
		n, err := t.Read(fd, buf)
		if err != nil {
			return fmt.Errorf("server read on fd %d after %d bytes: %v", fd, len(got), err)
		}
		if n == 0 {
			break
		}
		got = append(got, buf[:n]...)
	}
	if len(got) != size {
		return fmt.Errorf("server got %d bytes on fd %d, want %d", len(got), fd, size)
	}
	if _, err := t.Write(fd, got); err != nil {
		return fmt.Errorf("server write on fd %d: %v", fd, err)
	}
	return nil
}
