package main

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/posix/posixtest"
	"github.com/xstack/xstack/stack/stacktest"
)

// TestAcceptWaitsForMemory runs the echo service on an in-memory stack
// whose socket memory (net.inet.tcp.mem_limit) holds two connections. Four
// clients connect and send: two get their bytes back while the others wait
// in the accept queue (the server pauses accepting on ENOBUFS and keeps
// serving), and once the first two close, the waiting two get theirs.
func TestAcceptWaitsForMemory(t *testing.T) {
	cli, tab := posixtest.NewPair(t).MemLimited(t, 2)
	srv, err := newServer(tableSockets{Sockets: tab}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.listenTCPAt(&unix.SockaddrInet4{Addr: stacktest.AddrB4, Port: 7}, echoService, 16); err != nil {
		t.Fatal(err)
	}
	posixtest.Loop(t, srv.poll)

	msg := func(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("client %d;", i)), 1000) }
	var fds [4]int
	for i := range fds {
		var err error
		fds[i], err = cli.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := cli.Connect(fds[i], &unix.SockaddrInet4{Addr: stacktest.AddrB4, Port: 7}); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Write(fds[i], msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	echoed := func(i int) {
		t.Helper()
		want := msg(i)
		got := make([]byte, len(want))
		for off := 0; off < len(got); {
			n, err := cli.Read(fds[i], got[off:])
			if err != nil || n == 0 {
				t.Fatalf("client %d: echo cut after %d bytes: %v", i, off, err)
			}
			off += n
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("client %d: echo differs", i)
		}
	}
	echoed(0)
	echoed(1)
	// The server cannot have accepted the others while the first two
	// hold the memory: they wait, unanswered.
	for i := 2; i < 4; i++ {
		if _, err := cli.Recv(fds[i], make([]byte, 1), unix.MSG_DONTWAIT); !errors.Is(err, unix.EAGAIN) {
			t.Fatalf("client %d, over the limit: recv %v, want EAGAIN", i, err)
		}
	}
	cli.CloseFD(fds[0])
	cli.CloseFD(fds[1])
	echoed(2)
	echoed(3)
}
