package posix

import (
	"sync"
	"sync/atomic"
	"time"
)

// corkDelay is the longest a TCP socket holds corked data back: Linux's
// ceiling for TCP_CORK, and about when Linux sends data that a MSG_MORE
// send left queued (its probe timer's 200 ms minimum).
const corkDelay = 200 * time.Millisecond

// corkDelayOverride replaces corkDelay when it is not zero (nanoseconds):
// tests lengthen the delay so that held data stays held while they look.
var corkDelayOverride atomic.Int64

// flushDelay is the flush timer's delay.
func flushDelay() time.Duration {
	if d := corkDelayOverride.Load(); d != 0 {
		return time.Duration(d)
	}
	return corkDelay
}

// corkState is a TCP socket's corking: TCP_CORK, and the cork that a send
// with MSG_MORE turns on (gVisor ignores tcpip.WriteOptions.More, so
// MSG_MORE is emulated with gVisor's cork).
//
// gVisor's own cork timer drains held data only the first time a
// connection corks (it never rearms), and gVisor sends neither the held
// data nor a FIN behind it on shutdown or close. The socket therefore keeps
// a timer of its own, which flushes whatever is still held corkDelay after
// a send first left data corked (unless the cork lets the data go before),
// and flushes on shutdown(SHUT_WR) and close, as Linux pushes pending data
// with its FIN.
type corkState struct {
	// mu orders the changes of gVisor's cork option with byMore, so that
	// a cork the application set with TCP_CORK is never taken for one
	// that MSG_MORE set. It is never held while waiting.
	mu sync.Mutex
	// byMore says that the cork is on because of a send with MSG_MORE,
	// not TCP_CORK: the next send without MSG_MORE turns it off, and
	// getsockopt(TCP_CORK) does not report it. Written under mu; read
	// without it on the send path.
	byMore atomic.Bool
	// timer runs flushCorked; it is made on first use and reused.
	// +checklocks:mu
	timer *time.Timer
	// armed says that the timer is to flush at due. A run of the timer
	// that finds it unarmed, or early, is a stale one (it was stopped too
	// late, or reset since) and does nothing.
	// +checklocks:mu
	armed bool
	// +checklocks:mu
	due time.Time
	// closed is set when the socket is released: the timer does nothing
	// after it.
	// +checklocks:mu
	closed bool
}

// corkForMore turns the cork on for a send with MSG_MORE unless it is on
// already (by TCP_CORK, or by an earlier MSG_MORE). Called with writeMu held.
func (s *socket) corkForMore() {
	ops := s.ep.SocketOptions()
	if ops.GetCorkOption() {
		return
	}
	s.cork.mu.Lock()
	if !ops.GetCorkOption() {
		ops.SetCorkOption(true)
		s.cork.byMore.Store(true)
	}
	s.cork.mu.Unlock()
}

// sent runs after a TCP send that queued data. A send without MSG_MORE
// ends a cork that MSG_MORE turned on, which sends what it held; data left
// corked otherwise starts the flush timer. Called with writeMu held.
func (s *socket) sent(more bool) {
	ops := s.ep.SocketOptions()
	if !more && s.cork.byMore.Load() {
		s.cork.mu.Lock()
		if s.cork.byMore.Load() {
			s.cork.byMore.Store(false)
			ops.SetCorkOption(false)
			s.disarmLocked()
		}
		s.cork.mu.Unlock()
		return
	}
	if !ops.GetCorkOption() {
		return
	}
	s.cork.mu.Lock()
	if !s.cork.armed && !s.cork.closed {
		d := flushDelay()
		s.cork.due = time.Now().Add(d)
		s.cork.armed = true
		if s.cork.timer == nil {
			s.cork.timer = time.AfterFunc(d, s.flushCorked)
		} else {
			s.cork.timer.Reset(d)
		}
	}
	s.cork.mu.Unlock()
}

// disarmLocked stops the flush timer: the cork has let its data go.
// +checklocks:s.cork.mu
func (s *socket) disarmLocked() {
	if s.cork.armed {
		s.cork.armed = false
		s.cork.timer.Stop()
	}
}

// flushCorked is the flush timer: it sends what the cork holds. A cork set
// with TCP_CORK stays on; one that MSG_MORE set is over.
func (s *socket) flushCorked() {
	s.cork.mu.Lock()
	defer s.cork.mu.Unlock()
	if s.cork.closed || !s.cork.armed || time.Now().Before(s.cork.due) {
		return
	}
	s.flushLocked()
}

// flushLocked sends what the cork holds: gVisor sends held data when the
// cork is turned off. A cork set with TCP_CORK is turned on again; one that
// MSG_MORE set is forgotten.
// +checklocks:s.cork.mu
func (s *socket) flushLocked() {
	s.disarmLocked()
	ops := s.ep.SocketOptions()
	if !ops.GetCorkOption() {
		return
	}
	ops.SetCorkOption(false)
	if s.cork.byMore.Load() {
		s.cork.byMore.Store(false)
		return
	}
	ops.SetCorkOption(true)
}

// setCork is setsockopt(TCP_CORK): the application takes the cork over
// from MSG_MORE. Turning it off sends what it held.
func (s *socket) setCork(on bool) {
	s.cork.mu.Lock()
	s.cork.byMore.Store(false)
	s.ep.SocketOptions().SetCorkOption(on)
	if !on {
		s.disarmLocked()
	}
	s.cork.mu.Unlock()
}

// getCork is getsockopt(TCP_CORK): only a cork the application set, as on
// Linux, where MSG_MORE leaves the option alone.
func (s *socket) getCork() bool {
	s.cork.mu.Lock()
	defer s.cork.mu.Unlock()
	return s.ep.SocketOptions().GetCorkOption() && !s.cork.byMore.Load()
}

// flushForFIN sends held data ahead of a FIN (shutdown for writing).
func (s *socket) flushForFIN() {
	s.cork.mu.Lock()
	s.flushLocked()
	s.cork.mu.Unlock()
}

// releaseCork stops the flush timer when the socket is released and, for
// a close that sends a FIN, sends what the cork holds first. A close that
// resets the connection (SO_LINGER with a zero timeout) discards it, as
// on Linux.
func (s *socket) releaseCork() {
	s.cork.mu.Lock()
	defer s.cork.mu.Unlock()
	s.cork.closed = true
	s.disarmLocked()
	ops := s.ep.SocketOptions()
	if l := ops.GetLinger(); l.Enabled && l.Timeout == 0 {
		return
	}
	if ops.GetCorkOption() {
		s.cork.byMore.Store(false)
		ops.SetCorkOption(false)
	}
}
