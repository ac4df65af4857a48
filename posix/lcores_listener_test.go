package posix_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/xstack/xstack/posix"
)

// TestLcoresListenerSteals: two lcores (two stacks, as in thread mode),
// every connection arrives on the first; Accepts whose home is the second
// lcore steal them, and every connection is accepted once.
func TestLcoresListenerSteals(t *testing.T) {
	e1, e2 := newEnv(t), newEnv(t)
	l, err := posix.NetListenLcores([]*posix.Sockets{e1.B, e2.B}, "tcp4", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const n = 10
	var clients []net.Conn
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := e1.A.NetDial(ctx, "tcp4", "198.18.0.2:8080")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		clients = append(clients, c)
	}
	for i := 0; i < n; i++ {
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	accepted, stolen := l.Stats()
	if accepted != n || stolen == 0 || stolen == n {
		t.Errorf("accepted %d, stolen %d; want %d accepted, some but not all stolen", accepted, stolen, n)
	}

	// An Accept with nothing queued waits, and Close wakes it.
	err = wokenBy(t, "posix.(*LcoresListener).Accept", func() error {
		_, err := l.Accept()
		return err
	}, func() { l.Close() })
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
}
