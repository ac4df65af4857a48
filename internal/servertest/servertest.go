// Package servertest checks what every example server must do alike, on
// an in-memory stack pair (posixtest): the test starts its server on stack
// B and hands the client side to a check here, which runs on the test's
// goroutine.
package servertest

import (
	"bytes"
	"errors"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/posix"
	"github.com/xstack/xstack/posix/posixtest"
	"github.com/xstack/xstack/stack/stacktest"
)

// hangAfter is how long AcceptWaitsForMemory waits for its answers before
// it calls the check hung.
const hangAfter = time.Minute

// Serve starts a server on the socket table tab, listening on at, and
// returns its event loop's callback, which the check calls on a goroutine
// of its own until the test ends.
type Serve func(tab *posix.Sockets, at unix.Sockaddr) (poll func() error, err error)

// AcceptWaitsForMemory runs the server that serve starts on port of stack
// B, whose socket memory (posixtest's MemLimited) holds two connections.
// Four clients connect and send req(i): the first two get want(i) back
// while the other two wait unanswered in the accept queue (the server
// pauses accepting on ENOBUFS and keeps serving), and once the first two
// close, the waiting two get theirs too.
func AcceptWaitsForMemory(t *testing.T, port int, serve Serve, req, want func(i int) []byte) {
	t.Helper()
	cli, tab := posixtest.NewPair(t).MemLimited(t, 2)
	poll, err := serve(tab, &unix.SockaddrInet4{Addr: stacktest.AddrB4, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	posixtest.Loop(t, poll)
	var fds [4]int
	for i := range fds {
		var err error
		fds[i], err = cli.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := cli.Connect(fds[i], &unix.SockaddrInet4{Addr: stacktest.AddrB4, Port: port}); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Write(fds[i], req(i)); err != nil {
			t.Fatal(err)
		}
	}
	// The reads below block. A check that hangs says where, and the
	// clients' sockets are closed so that their reads fail.
	watchdog := time.AfterFunc(hangAfter, func() {
		stacks := make([]byte, 1<<20)
		stacks = stacks[:runtime.Stack(stacks, true)]
		t.Errorf("no answer after %v; goroutines:\n%s", hangAfter, stacks)
		for _, fd := range fds {
			cli.CloseFD(fd)
		}
	})
	defer watchdog.Stop()
	answered := func(i int) {
		t.Helper()
		w := want(i)
		got := make([]byte, len(w))
		for off := 0; off < len(got); {
			n, err := cli.Read(fds[i], got[off:])
			if err != nil || n == 0 {
				t.Fatalf("client %d: answer cut after %d bytes: %v", i, off, err)
			}
			off += n
		}
		if !bytes.Equal(got, w) {
			t.Fatalf("client %d: answer %.80q, want %.80q", i, got, w)
		}
	}
	answered(0)
	answered(1)
	// The server cannot have accepted the others while the first two
	// hold the memory: they wait, unanswered.
	for i := 2; i < 4; i++ {
		if _, err := cli.Recv(fds[i], make([]byte, 1), unix.MSG_DONTWAIT); !errors.Is(err, unix.EAGAIN) {
			t.Fatalf("client %d, over the limit: recv %v, want EAGAIN", i, err)
		}
	}
	cli.CloseFD(fds[0])
	cli.CloseFD(fds[1])
	answered(2)
	answered(3)
}
