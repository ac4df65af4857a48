// Package ctltest fakes the processes a tool talks to, for tests of the
// tools and of internal/ctl that need no stack: a live process that
// answers requests on its control socket, one that dies while a tool talks
// to it, and the socket a process killed with SIGKILL leaves behind.
//
// A fake serves its socket from goroutines of its own until the test
// ends; the test's cleanup closes it and waits for them.
package ctltest

import (
	"bufio"
	"encoding/json"
	"net"
	"os"
	"sync"
	"testing"

	"github.com/xstack/xstack/internal/ctl"
)

// Handler answers the n-th request (from 1) of a fake process: a result
// to send, or an error to send as an error reply.
type Handler func(n int, req ctl.Request) (any, error)

// Forever makes Serve answer every request.
const Forever = -1

// Serve runs a fake process with proc-id id in runDir that answers
// requests with h: the first answers of them (all with Forever), then it
// hangs up on each request without a reply, as a process that died while
// a tool talked to it.
func Serve(t testing.TB, runDir string, id, answers int, h Handler) {
	t.Helper()
	ln, err := net.Listen("unix", ctl.SocketPath(runDir, id))
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
		n  int // requests answered, +checklocks:mu
	)
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	serveConn := func(c net.Conn) {
		defer wg.Done()
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			line, err := ctl.ReadLine(br, ctl.MaxRequest)
			if err != nil {
				return
			}
			mu.Lock()
			if answers != Forever && n >= answers {
				mu.Unlock()
				return
			}
			n++
			seq := n
			mu.Unlock()
			rep := ctl.Reply{V: ctl.Version}
			req, err := ctl.ParseRequest(line)
			var res any
			if err == nil {
				res, err = h(seq, req)
			}
			if err == nil {
				rep.Result, err = json.Marshal(res)
			}
			if err != nil {
				rep.Error = err.Error()
			}
			b, _ := json.Marshal(rep)
			if _, err := c.Write(append(b, '\n')); err != nil {
				return
			}
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go serveConn(c)
		}
	}()
}

// Stale leaves <runDir>/<id>.sock as a process killed with SIGKILL leaves
// it: a socket that nothing listens on. It is removed when the test ends.
func Stale(t testing.TB, runDir string, id int) {
	t.Helper()
	if err := os.MkdirAll(runDir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := ctl.SocketPath(runDir, id)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	t.Cleanup(func() { os.Remove(path) })
}
