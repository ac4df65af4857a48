package main

import (
	"bytes"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/servertest"
	"github.com/xstack/xstack/posix"
)

// TestAcceptWaitsForMemory runs the echo service on an in-memory stack
// whose socket memory (net.inet.tcp.mem_limit) holds two connections. Four
// clients connect and send: two get their bytes back while the others wait
// in the accept queue (the server pauses accepting on ENOBUFS and keeps
// serving), and once the first two close, the waiting two get theirs.
func TestAcceptWaitsForMemory(t *testing.T) {
	msg := func(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("client %d;", i)), 1000) }
	servertest.AcceptWaitsForMemory(t, 7, func(tab *posix.Sockets, at unix.Sockaddr) (func() error, error) {
		srv, err := newServer(tableSockets{Sockets: tab}, 10)
		if err != nil {
			return nil, err
		}
		_, err = srv.listenTCPAt(at, echoService, 16)
		return srv.poll, err
	}, msg, msg)
}
