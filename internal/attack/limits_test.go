package attack

// The limits of a socket table on an in-memory stack pair (posixtest):
// the listen backlog, the descriptor table and socket memory. Each must
// refuse cleanly when full and serve again once there is room. The server
// runs on stack B, on port 80; the clients on stack A.

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
	"github.com/xstack/xstack/stack/stacktest"
)

// listenB opens a TCP listener on port 80 of stack B through srv, with
// socket flags (SOCK_NONBLOCK) and backlog, and returns its descriptor.
func listenB(t *testing.T, srv *posix.Sockets, flags, backlog int) int {
	t.Helper()
	lfd, err := srv.Socket(unix.AF_INET, unix.SOCK_STREAM|flags, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Bind(lfd, &unix.SockaddrInet4{Addr: stacktest.AddrB4, Port: 80}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(lfd, backlog); err != nil {
		t.Fatal(err)
	}
	return lfd
}

// dialB opens a blocking TCP socket through cli and connects it to port 80
// of stack B. On failure the socket is closed again.
func dialB(cli *posix.Sockets) (int, error) {
	fd, err := cli.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	if err := cli.Connect(fd, &unix.SockaddrInet4{Addr: stacktest.AddrB4, Port: 80}); err != nil {
		cli.CloseFD(fd)
		return -1, err
	}
	return fd, nil
}

// TestAcceptBacklogFull makes more connections than a listener's backlog
// holds while the application does not accept, on an in-memory stack
// pair. The stack sheds the excess (SYNs dropped or answered with cookies,
// final ACKs dropped, all counted) without failing any client call; once
// the application accepts again, every client gets through by itself,
// through its own retransmissions, and its first bytes arrive intact.
func TestAcceptBacklogFull(t *testing.T) {
	p := posixtest.NewPair(t)
	cli, srv := p.A, p.B

	const backlog, clients = 2, 12
	lfd := listenB(t, srv, unix.SOCK_NONBLOCK, backlog)

	// The clients connect (blocking, as most do) and send their greeting;
	// nothing is accepted yet.
	wait := xstest.Go(clients, func(i int) error {
		fd, err := dialB(cli)
		if err == nil {
			_, err = cli.Write(fd, []byte(fmt.Sprintf("hello %02d", i)))
		}
		return err
	})
	st := p.Stacks.B.Stats().TCP
	shed := func() uint64 {
		return st.ListenOverflowSynDrop.Value() + st.ListenOverflowAckDrop.Value() + st.ListenOverflowSynCookieSent.Value()
	}
	if err := xstest.Until(10*time.Second, func() error {
		if shed() == 0 {
			return errors.New("no overflow counted")
		}
		return nil
	}); err != nil {
		t.Errorf("%d connections to a backlog of %d, and the stack counted no overflow (SYN drops, ACK drops, cookies)", clients, backlog)
	}
	t.Logf("with nothing accepted: SYNs dropped %d, final ACKs dropped %d, cookies sent %d",
		st.ListenOverflowSynDrop.Value(), st.ListenOverflowAckDrop.Value(), st.ListenOverflowSynCookieSent.Value())

	// The application accepts again: every client must arrive, greeting
	// intact, within a few SYN retransmissions.
	got := map[string]bool{}
	buf := make([]byte, 16)
	xstest.Until(30*time.Second, func() error {
		for len(got) < clients {
			fd, _, err := srv.Accept(lfd)
			if errors.Is(err, unix.EAGAIN) {
				return fmt.Errorf("%d of %d clients arrived", len(got), clients)
			}
			if err != nil {
				t.Fatalf("Accept: %v", err)
			}
			n := 0
			for n < 8 {
				k, err := srv.Read(fd, buf[n:8])
				if err != nil {
					t.Fatalf("read on accepted connection: %v", err)
				}
				if k == 0 {
					t.Fatalf("accepted connection closed after %q", buf[:n])
				}
				n += k
			}
			if got[string(buf[:n])] {
				t.Fatalf("greeting %q arrived twice", buf[:n])
			}
			got[string(buf[:n])] = true
			srv.CloseFD(fd)
		}
		return nil
	})
	for i, err := range wait() {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	if len(got) != clients {
		t.Fatalf("%d of %d clients arrived once the application accepted again", len(got), clients)
	}
	t.Logf("after accepting again: all %d clients arrived; cookies validated %d", clients, st.ListenOverflowSynCookieRcvd.Value())
}

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
