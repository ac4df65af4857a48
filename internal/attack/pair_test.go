package attack

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/posix"
	"github.com/xstack/xstack/stack/stacktest"
)

// The in-memory tests run a server on stack B of a posixtest pair, on port
// 80, and clients on stack A.

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
