package attack

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/xstest"
	"github.com/xstack/xstack/posix/posixtest"
)

// TestAcceptBacklogFull makes more connections than a listener's backlog
// holds while the application does not accept, on an in-memory stack
// pair. The stack sheds the excess (SYNs dropped or answered with cookies,
// final ACKs dropped, all counted) without failing any client call; once
// the application accepts again, every client gets through by itself,
// through its own retransmissions, and its first bytes arrive intact.
func TestAcceptBacklogFull(t *testing.T) {
	p := posixtest.NewPair(t)
	cli, srv := p.A, p.B

	const backlog, clients = 2, 12
	lfd := listenB(t, srv, unix.SOCK_NONBLOCK, backlog)

	// The clients connect (blocking, as most do) and send their greeting;
	// nothing is accepted yet.
	var wg sync.WaitGroup
	errs := make([]error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fd, err := dialB(cli)
			if err == nil {
				_, err = cli.Write(fd, []byte(fmt.Sprintf("hello %02d", i)))
			}
			errs[i] = err
		}()
	}
	st := p.Stacks.B.Stats().TCP
	shed := func() uint64 {
		return st.ListenOverflowSynDrop.Value() + st.ListenOverflowAckDrop.Value() + st.ListenOverflowSynCookieSent.Value()
	}
	if err := xstest.Until(10*time.Second, func() error {
		if shed() == 0 {
			return errors.New("no overflow counted")
		}
		return nil
	}); err != nil {
		t.Errorf("%d connections to a backlog of %d, and the stack counted no overflow (SYN drops, ACK drops, cookies)", clients, backlog)
	}
	t.Logf("with nothing accepted: SYNs dropped %d, final ACKs dropped %d, cookies sent %d",
		st.ListenOverflowSynDrop.Value(), st.ListenOverflowAckDrop.Value(), st.ListenOverflowSynCookieSent.Value())

	// The application accepts again: every client must arrive, greeting
	// intact, within a few SYN retransmissions.
	got := map[string]bool{}
	buf := make([]byte, 16)
	xstest.Until(30*time.Second, func() error {
		for len(got) < clients {
			fd, _, err := srv.Accept(lfd)
			if errors.Is(err, unix.EAGAIN) {
				return fmt.Errorf("%d of %d clients arrived", len(got), clients)
			}
			if err != nil {
				t.Fatalf("Accept: %v", err)
			}
			n := 0
			for n < 8 {
				k, err := srv.Read(fd, buf[n:8])
				if err != nil {
					t.Fatalf("read on accepted connection: %v", err)
				}
				if k == 0 {
					t.Fatalf("accepted connection closed after %q", buf[:n])
				}
				n += k
			}
			if got[string(buf[:n])] {
				t.Fatalf("greeting %q arrived twice", buf[:n])
			}
			got[string(buf[:n])] = true
			srv.CloseFD(fd)
		}
		return nil
	})
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("client %d: %v", i, err)
		}
	}
	if len(got) != clients {
		t.Fatalf("%d of %d clients arrived once the application accepted again", len(got), clients)
	}
	t.Logf("after accepting again: all %d clients arrived; cookies validated %d", clients, st.ListenOverflowSynCookieRcvd.Value())
}
