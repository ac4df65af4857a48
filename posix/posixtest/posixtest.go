// Package posixtest puts a socket table on each stack of an in-memory stack
// pair (stack/stacktest), so that posix and the programs above it are
// tested without privileges over xstack's own stack and link endpoint, and
// runs an application's event-loop callback for a test.
//
// Table A is on stack A (addresses stacktest.AddrA4 and AddrA6), table B
// on stack B; by convention A is the client side and B the server.
package posixtest

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/posix"
	"github.com/xstack/xstack/stack/stacktest"
)

// Pair is two socket tables on two connected stacks.
type Pair struct {
	Stacks *stacktest.Pair
	A, B   *posix.Sockets
}

// NewPair builds a stacktest pair with the default options and a table on
// each stack. Cleanup closes the tables, then the stacks.
func NewPair(tb testing.TB) *Pair {
	tb.Helper()
	return NewPairWith(tb, stacktest.Options{})
}

// NewPairWith is NewPair over a stack pair built as o says.
func NewPairWith(tb testing.TB, o stacktest.Options) *Pair {
	tb.Helper()
	sp := stacktest.NewPairWith(tb, o)
	p := &Pair{Stacks: sp, A: posix.NewSockets(sp.A), B: posix.NewSockets(sp.B)}
	// Registered after the stacks' cleanup, so run before it: the loops
	// still carry the FINs and RSTs that closing the tables sends.
	tb.Cleanup(p.A.Close)
	tb.Cleanup(p.B.Close)
	return p
}

// MemLimited sets net.inet.tcp.mem_limit on stack B so that its socket
// memory holds conns TCP connections, and returns the tables, cli over A
// and srv over B.
func (p *Pair) MemLimited(tb testing.TB, conns int) (cli, srv *posix.Sockets) {
	tb.Helper()
	fd, err := p.B.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		tb.Fatal(err)
	}
	per := p.B.MemReserved() // what one connection reserves
	p.B.CloseFD(fd)
	SetMemLimit(tb, p.B, int64(conns)*per)
	return p.A, p.B
}

// SetMemLimit sets net.inet.tcp.mem_limit of t's stack to n bytes (0: no
// limit), as the sysctl tool would.
func SetMemLimit(tb testing.TB, t *posix.Sockets, n int64) {
	tb.Helper()
	if err := t.Stack().SetSysctl("net.inet.tcp.mem_limit", strconv.FormatInt(n, 10)); err != nil {
		tb.Fatal(err)
	}
}

// Loop calls poll, an event loop's callback, over and over on a goroutine
// of its own until cleanup; an error fails the test and ends the loop.
func Loop(tb testing.TB, poll func() error) {
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			if err := poll(); err != nil {
				tb.Error(err)
				return
			}
		}
	}()
	tb.Cleanup(func() {
		stop.Store(true)
		wg.Wait()
	})
}
