package main

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/servertest"
	"github.com/xstack/xstack/posix"
)

// TestAcceptWaitsForMemory runs the server on an in-memory stack whose
// socket memory (net.inet.tcp.mem_limit) holds two connections. Four
// clients connect: two are served while the others wait in the accept
// queue (the server pauses accepting on ENOBUFS and keeps serving), and
// once the first two close, the waiting two are served too.
func TestAcceptWaitsForMemory(t *testing.T) {
	req := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	servertest.AcceptWaitsForMemory(t, 80, func(tab *posix.Sockets, at unix.Sockaddr) (func() error, error) {
		srv, err := newServer(tableSockets{Sockets: tab}, 10)
		if err != nil {
			return nil, err
		}
		_, err = srv.Listen(at, 16)
		return srv.poll, err
	}, func(int) []byte { return req }, func(int) []byte { return respKeepAlive })
}
