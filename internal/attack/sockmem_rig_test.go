package attack

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/xstest"
)

// TestSocketMemoryLimitRig runs helloworld on the rig with
// net.inet.tcp.mem_limit set in config.ini to hold four connections. Ten
// kernel clients connect and send a request each: four are answered, the
// others wait in the accept queue while the stack counts refusals
// (tcp.mem_refused) and the reservations stay at the limit
// (tcp.mem_reserved). As the answered clients close, the waiting ones are
// accepted and answered in turn, and once all have closed nothing is left
// reserved.
func TestSocketMemoryLimitRig(t *testing.T) {
	// Fixed 64 KiB buffers: every connection reserves 128 KiB.
	const perConn, fit, clients = 128 << 10, 4, 10
	conf := []string{"[sysctl]",
		"net.inet.tcp.moderate_rcvbuf=0",
		"net.inet.tcp.sendspace=65536",
		"net.inet.tcp.recvspace=65536",
		fmt.Sprintf("net.inet.tcp.mem_limit=%d", fit*perConn)}
	_, p, addr, d := startHelloworld(t, func(*rig.Rig) []string { return conf }, "-backlog", "64")

	type client struct {
		c        *net.TCPConn
		answered chan error
	}
	cs := make([]*client, clients)
	for i := range cs {
		c, err := d.dial(addr, 10*time.Second)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		cl := &client{c: c, answered: make(chan error, 1)}
		cs[i] = cl
		t.Cleanup(func() { c.Close() })
		go func() { cl.answered <- httpGet(c, bufio.NewReader(c), time.Minute) }()
	}

	// Take answers as they come: at most fit clients can be answered while
	// nobody closes. Each answered client is closed only after its round
	// is counted, and the next ones follow.
	served := 0
	for round := 1; served < clients; round++ {
		var now []*client
		want := min(fit, clients-served)
		xstest.Until(30*time.Second, func() error {
			for _, cl := range cs {
				if cl == nil {
					continue
				}
				select {
				case err := <-cl.answered:
					if err != nil {
						t.Fatalf("round %d: a client's request failed: %v", round, err)
					}
					now = append(now, cl)
				default:
				}
			}
			if len(now) < want {
				return errors.New("not all answered")
			}
			return nil
		})
		if len(now) != want {
			t.Fatalf("round %d: %d clients answered, want %d", round, len(now), want)
		}
		// The previous round's connections are given back as the
		// server sees their FINs.
		var cnt map[string]uint64
		xstest.Until(10*time.Second, func() error {
			if cnt = p.Counters(t); cnt["tcp.mem_reserved"] != uint64(want*perConn) {
				return errors.New("not given back")
			}
			return nil
		})
		if got := cnt["tcp.mem_reserved"]; got != uint64(want*perConn) {
			t.Errorf("round %d: tcp.mem_reserved = %d with %d connections open, want %d", round, got, want, want*perConn)
		}
		if served+want < clients && cnt["tcp.mem_refused"] == 0 {
			t.Errorf("round %d: %d clients waiting and tcp.mem_refused is 0", round, clients-served-want)
		}
		// No more than fit answered: a client still waiting has no answer.
		for _, cl := range cs {
			if cl == nil || slices.Contains(now, cl) {
				continue
			}
			select {
			case err := <-cl.answered:
				t.Fatalf("round %d: a client over the limit was answered (%v)", round, err)
			default:
			}
		}
		for _, cl := range now {
			cl.c.Close()
			for i := range cs {
				if cs[i] == cl {
					cs[i] = nil
				}
			}
		}
		served += want
		t.Logf("round %d: %d answered, %d waiting; tcp.mem_refused %d", round, want, clients-served, cnt["tcp.mem_refused"])
	}

	// Everything is given back once the server has closed its side.
	xstest.WaitFor(t, 30*time.Second, "tcp.mem_reserved 0 after every client closed", func() error {
		if got := p.Counters(t)["tcp.mem_reserved"]; got != 0 {
			return fmt.Errorf("tcp.mem_reserved = %d", got)
		}
		return nil
	})
	// And the server serves as before.
	c, err := d.dial(addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := httpGet(c, bufio.NewReader(c), 10*time.Second); err != nil {
		t.Fatal(err)
	}
}
