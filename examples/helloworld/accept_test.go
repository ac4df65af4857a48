package main

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/posix/posixtest"
	"github.com/xstack/xstack/stack/stacktest"
)

// TestAcceptWaitsForMemory runs the server on an in-memory stack whose
// socket memory (net.inet.tcp.mem_limit) holds two connections. Four
// clients connect: two are served while the others wait in the accept
// queue (the server pauses accepting on ENOBUFS and keeps serving), and
// once the first two close, the waiting two are served too.
func TestAcceptWaitsForMemory(t *testing.T) {
	cli, tab := posixtest.NewPair(t).MemLimited(t, 2)
	srv, err := newServer(tableSockets{Sockets: tab}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.listen(&unix.SockaddrInet4{Addr: stacktest.AddrB4, Port: 80}, 16); err != nil {
		t.Fatal(err)
	}
	posixtest.Loop(t, srv.poll)

	req := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	var fds [4]int
	for i := range fds {
		var err error
		fds[i], err = cli.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := cli.Connect(fds[i], &unix.SockaddrInet4{Addr: stacktest.AddrB4, Port: 80}); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Write(fds[i], req); err != nil {
			t.Fatal(err)
		}
	}
	response := func(fd int) {
		t.Helper()
		got := make([]byte, len(respKeepAlive))
		for off := 0; off < len(got); {
			n, err := cli.Read(fd, got[off:])
			if err != nil || n == 0 {
				t.Fatalf("fd %d: response cut after %d bytes: %v", fd, off, err)
			}
			off += n
		}
		if !bytes.Equal(got, respKeepAlive) {
			t.Fatalf("fd %d: response %q", fd, got)
		}
	}
	response(fds[0])
	response(fds[1])
	// The server cannot have accepted the others while the first two
	// hold the memory: they wait, unanswered.
	for _, fd := range fds[2:] {
		if _, err := cli.Recv(fd, make([]byte, 1), unix.MSG_DONTWAIT); !errors.Is(err, unix.EAGAIN) {
			t.Fatalf("fd %d, over the limit: recv %v, want EAGAIN", fd, err)
		}
	}
	cli.CloseFD(fds[0])
	cli.CloseFD(fds[1])
	response(fds[2])
	response(fds[3])
}
