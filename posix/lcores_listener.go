package posix

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/waiter"
)

// LcoresListener is one net.Listener over every lcore of a thread-mode
// process (Affinity-Accept): each lcore has its own listening socket, and
// an Accept takes a connection from its home lcore first and steals from
// the others only when the home queue is empty. Accepts are given home
// lcores in turn, so that goroutines calling Accept in a loop spread over
// the lcores.
type LcoresListener struct {
	ls   []*TCPListener
	next atomic.Uint32

	ready   chan struct{} // one token: some listener became readable
	entries []waiter.Entry
	wqs     []*waiter.Queue

	closeOnce sync.Once
	done      chan struct{}

	accepted, stolen atomic.Uint64
}

var _ net.Listener = (*LcoresListener)(nil)

// NetListenLcores listens on address on every table (one per lcore, from
// InitLcores) and returns the combined listener.
func NetListenLcores(tables []*Sockets, network, address string) (*LcoresListener, error) {
	m := &LcoresListener{ready: make(chan struct{}, 1), done: make(chan struct{})}
	for _, t := range tables {
		nl, err := t.NetListen(network, address)
		if err != nil {
			m.Close()
			return nil, err
		}
		l := nl.(*TCPListener)
		// Accept never blocks on one lcore's socket: it polls them all
		// and waits on ready.
		l.s.f.nonblock.Store(true)
		m.ls = append(m.ls, l)
	}
	notify := func(waiter.EventMask) {
		select {
		case m.ready <- struct{}{}:
		default:
		}
	}
	m.entries = make([]waiter.Entry, len(m.ls))
	for i, l := range m.ls {
		m.entries[i] = waiter.NewFunctionEntry(waiter.ReadableEvents, notify)
		m.wqs = append(m.wqs, l.s.wq)
		l.s.wq.EventRegister(&m.entries[i])
	}
	return m, nil
}

// Accept implements net.Listener. An lcore whose table has no free
// descriptor (EMFILE) or no socket memory (ENOBUFS) keeps its connections
// queued and is passed over; when no lcore gave a connection, that error is
// returned (temporary, as TCPListener.Accept's), so that the caller backs
// off and tries again.
func (m *LcoresListener) Accept() (net.Conn, error) {
	n := uint32(len(m.ls))
	home := m.next.Add(1) % n
	for {
		var short error
		for k := uint32(0); k < n; k++ {
			c, err := m.ls[(home+k)%n].tryAccept()
			if err == nil {
				m.accepted.Add(1)
				if k > 0 {
					m.stolen.Add(1)
				}
				return c, nil
			}
			switch {
			case errors.Is(err, unix.EAGAIN):
			case ShortOfResources(err):
				if short == nil {
					short = err
				}
			default:
				return nil, err
			}
		}
		if short != nil {
			return nil, short
		}
		select {
		case <-m.ready:
		case <-m.done:
			return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: m.Addr(), Err: net.ErrClosed}
		}
	}
}

// tryAccept accepts a connection if one is queued, or fails with EAGAIN.
func (l *TCPListener) tryAccept() (net.Conn, error) {
	if !l.acquire() {
		return nil, l.opError("accept", net.ErrClosed)
	}
	defer l.s.f.put()
	nfd, ns, _, errno := l.t.accept4(l.s, 0, nil, true)
	if errno == unix.EAGAIN {
		return nil, errno
	}
	if errno != 0 {
		return nil, l.fail("accept", errno)
	}
	c := &TCPConn{}
	c.init(l.t, nfd, ns, l.netw)
	return c, nil
}

// Stats returns how many connections Accept returned and how many of them
// it took from another lcore than the call's home lcore.
func (m *LcoresListener) Stats() (accepted, stolen uint64) {
	return m.accepted.Load(), m.stolen.Load()
}

// Addr implements net.Listener.
func (m *LcoresListener) Addr() net.Addr {
	if len(m.ls) == 0 {
		return nil
	}
	return m.ls[0].Addr()
}

// Close implements net.Listener: it closes every lcore's socket and wakes
// blocked Accepts. It is idempotent.
func (m *LcoresListener) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.done)
		for i, wq := range m.wqs {
			wq.EventUnregister(&m.entries[i])
		}
		for _, l := range m.ls {
			if cerr := l.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}
	})
	return err
}
