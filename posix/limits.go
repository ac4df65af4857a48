package posix

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	xstack "github.com/xstack/xstack/stack"
)

// applyDefaults gives a new TCP socket the per-socket defaults the stack's
// sysctls set at this moment (net.inet.tcp.keep*, always_keepalive and
// user_timeout: stack.Stack.SocketDefaults). Accepted sockets inherit the
// listener's keepalive settings, as on Linux, and the user timeout through
// gVisor.
func (s *socket) applyDefaults() {
	if s.stype != unix.SOCK_STREAM {
		return
	}
	d := s.t.stack.SocketDefaults()
	if d.KeepIdle > 0 {
		o := tcpip.KeepaliveIdleOption(time.Duration(d.KeepIdle) * time.Second)
		s.ep.SetSockOpt(&o)
	}
	if d.KeepIntvl > 0 {
		o := tcpip.KeepaliveIntervalOption(time.Duration(d.KeepIntvl) * time.Second)
		s.ep.SetSockOpt(&o)
	}
	if d.KeepCnt > 0 {
		s.ep.SetSockOptInt(tcpip.KeepaliveCountOption, d.KeepCnt)
	}
	if d.UserTimeout > 0 {
		o := tcpip.TCPUserTimeoutOption(d.UserTimeout)
		s.ep.SetSockOpt(&o)
	}
	if d.AlwaysKeepalive {
		s.ep.SocketOptions().SetKeepAlive(true)
	}
}

// inheritKeepalive copies the listener l's keepalive settings to the
// accepted socket s, as Linux's accepted sockets inherit SO_KEEPALIVE,
// TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT (gVisor does not carry them
// over).
//
// Only the settings that differ are set: each set takes the endpoint's
// lock and re-arms its keepalive timer, and a listener mostly has the
// defaults an accepted endpoint starts with. The options are read into
// s's fields, which are on the heap already: a local would escape through
// the option interface, an allocation per connection.
func (s *socket) inheritKeepalive(l *socket) {
	ka := &s.kaScratch
	if l.ep.GetSockOpt(&ka.lIdle) == nil && s.ep.GetSockOpt(&ka.idle) == nil && ka.idle != ka.lIdle {
		s.ep.SetSockOpt(&ka.lIdle)
	}
	if l.ep.GetSockOpt(&ka.lIntvl) == nil && s.ep.GetSockOpt(&ka.intvl) == nil && ka.intvl != ka.lIntvl {
		s.ep.SetSockOpt(&ka.lIntvl)
	}
	if n, err := l.ep.GetSockOptInt(tcpip.KeepaliveCountOption); err == nil {
		if m, err := s.ep.GetSockOptInt(tcpip.KeepaliveCountOption); err != nil || m != n {
			s.ep.SetSockOptInt(tcpip.KeepaliveCountOption, n)
		}
	}
	if l.ep.SocketOptions().GetKeepAlive() {
		s.ep.SocketOptions().SetKeepAlive(true)
	}
}

// SetMaxFDs sets the size of the descriptor table, RLIMIT_NOFILE's role:
// Socket, Accept and EpollCreate fail with EMFILE when every descriptor
// below n is in use. Accept then leaves the connection queued, as Linux
// does, so it can be accepted once a descriptor is closed. Lowering the
// limit closes nothing. The default is 1<<20 (Linux's nr_open); n is
// clamped to at least firstFD+1.
func (t *Sockets) SetMaxFDs(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.maxFD = max(n, firstFD+1)
}

// MaxFDs returns the size of the descriptor table (SetMaxFDs).
func (t *Sockets) MaxFDs() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.limitLocked()
}

// +checklocksread:t.mu
func (t *Sockets) limitLocked() int {
	if t.maxFD == 0 {
		return maxFDs
	}
	return t.maxFD
}

// hasFreeFD reports EMFILE when no descriptor is free, without taking one:
// Accept asks before it takes a connection off the queue.
func (t *Sockets) hasFreeFD() unix.Errno {
	t.mu.RLock()
	defer t.mu.RUnlock()
	fd := t.lowFree
	for fd < len(t.files) && t.files[fd] != nil {
		fd++
	}
	if fd >= t.limitLocked() {
		return unix.EMFILE
	}
	return 0
}

// ShortOfResources reports whether err is a failure for want of a
// descriptor or of socket-buffer memory (EMFILE, ENFILE, ENOBUFS, ENOMEM).
// Such a failure changes nothing: an Accept that fails so leaves the
// connection queued, to be accepted once a socket is closed. A server
// should stop asking until then (or for a short while) and keep serving
// the connections it has.
func ShortOfResources(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) ||
		errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM)
}

// Socket-buffer memory: net.inet.tcp.mem_limit (see the package doc).

// memParams are what a reservation is made with, read once per call.
type memParams struct {
	limit      int64 // net.inet.tcp.mem_limit; 0 means no limit
	sndDefault int64 // the send buffer gVisor gives a new endpoint
	rcvMax     int64 // the largest receive buffer auto-tuning grows to
	moderate   bool  // new endpoints auto-tune their receive buffer
}

func (t *Sockets) memParams() memParams {
	b := t.stack.TCPBuffers()
	return memParams{
		limit:      t.stack.SocketDefaults().MemLimit,
		sndDefault: int64(b.SendDefault),
		rcvMax:     int64(b.ReceiveMax),
		moderate:   b.Moderate,
	}
}

// need is the reservation of buffers of snd and rcv bytes, rcvAuto
// saying whether gVisor may grow the receive buffer.
func (p memParams) need(snd, rcv int64, rcvAuto bool) int64 {
	if rcvAuto {
		rcv = max(rcv, p.rcvMax)
	}
	return snd + rcv
}

// acceptMem is what a connection accepted on the listener l reserves:
// gVisor gives it the stack's default send buffer and the receive buffer
// the listener had when it started listening.
func (p memParams) acceptMem(l *socket) int64 {
	return p.need(p.sndDefault, l.ep.SocketOptions().GetReceiveBufferSize(), p.moderate)
}

// reserveLocked adds n bytes to the reservations if they fit under limit
// (0: no limit); a negative n always fits. A refusal is counted.
//
// +checklocks:t.memMu
func (t *Sockets) reserveLocked(n, limit int64) unix.Errno {
	if n > 0 && limit > 0 && t.memReserved+n > limit {
		t.memRefused.Add(1)
		return unix.ENOBUFS
	}
	t.memReserved += n
	return 0
}

// takeMem reserves n bytes for a socket that does not exist yet (an
// accept in progress): ENOBUFS when they do not fit under limit.
func (t *Sockets) takeMem(n, limit int64) unix.Errno {
	t.memMu.Lock()
	defer t.memMu.Unlock()
	return t.reserveLocked(n, limit)
}

// giveMem returns n bytes that takeMem reserved.
func (t *Sockets) giveMem(n int64) {
	t.memMu.Lock()
	t.memReserved -= n
	t.memMu.Unlock()
}

// reserveMem makes the new TCP socket s reserve its buffers, or fails with
// ENOBUFS.
func (s *socket) reserveMem() unix.Errno {
	p := s.t.memParams()
	ops := s.ep.SocketOptions()
	need := p.need(ops.GetSendBufferSize(), ops.GetReceiveBufferSize(), p.moderate)
	s.t.memMu.Lock()
	errno := s.t.reserveLocked(need, p.limit)
	if errno == 0 {
		s.mem, s.rcvAuto = need, p.moderate
	}
	s.t.memMu.Unlock()
	if errno == 0 && p.limit > 0 {
		s.pinSendBuffer()
	}
	return errno
}

// adoptMem gives the accepted socket s the held bytes its accept reserved
// (acceptMem), set to what its buffers turned out to need. The two agree
// unless the listener's receive buffer changed after Listen; the
// difference is taken whatever the limit, as the connection is already
// off the queue.
func (s *socket) adoptMem(held int64, p memParams) {
	ops := s.ep.SocketOptions()
	need := p.need(ops.GetSendBufferSize(), ops.GetReceiveBufferSize(), p.moderate)
	s.t.memMu.Lock()
	s.t.memReserved += need - held
	s.mem, s.rcvAuto = need, p.moderate
	s.t.memMu.Unlock()
	if p.limit > 0 {
		s.pinSendBuffer()
	}
}

// pinSendBuffer turns gVisor's send-buffer auto-tuning off for s, keeping
// the buffer's size, as setting SO_SNDBUF does.
func (s *socket) pinSendBuffer() {
	ops := s.ep.SocketOptions()
	ops.SetSendBufferSize(ops.GetSendBufferSize(), true)
}

// releaseMem gives s's reservation back (Listen, close).
func (s *socket) releaseMem() {
	s.t.memMu.Lock()
	s.t.memReserved -= s.mem
	s.mem = 0
	s.t.memMu.Unlock()
}

// setBufferSize is SO_SNDBUF (snd) or SO_RCVBUF with the size n already
// doubled and clamped. On a TCP socket that holds a reservation (one that
// can carry data, not a listener) the reservation follows the buffer: a
// raise that does not fit under the limit fails with ENOBUFS and leaves the
// buffer as it was; a cut gives memory back.
func (s *socket) setBufferSize(snd bool, n int64) error {
	ops := s.ep.SocketOptions()
	set := func() {
		if snd {
			ops.SetSendBufferSize(n, true)
		} else {
			ops.SetReceiveBufferSize(n, true)
		}
	}
	if s.stype != unix.SOCK_STREAM || tcp.EndpointState(s.ep.State()) == tcp.StateListen {
		set()
		return nil
	}
	p := s.t.memParams()
	// memMu stays held while gVisor resizes the buffer, so that the check,
	// the change and the count are one step for concurrent calls; gVisor
	// never calls back into the table from there.
	s.t.memMu.Lock()
	defer s.t.memMu.Unlock()
	sndSize, rcvSize, rcvAuto := ops.GetSendBufferSize(), ops.GetReceiveBufferSize(), s.rcvAuto
	if snd {
		sndSize = n
	} else {
		// SO_RCVBUF ends gVisor's auto-tuning of the receive buffer.
		rcvSize, rcvAuto = n, false
	}
	need := p.need(sndSize, rcvSize, rcvAuto)
	if errno := s.t.reserveLocked(need-s.mem, p.limit); errno != 0 {
		return errno
	}
	set()
	// gVisor may round a receive buffer up so that it can announce a
	// window: count what it kept.
	got := p.need(ops.GetSendBufferSize(), ops.GetReceiveBufferSize(), rcvAuto)
	s.t.memReserved += got - need
	s.mem, s.rcvAuto = got, rcvAuto
	return nil
}

// MemReserved returns the socket-buffer memory the table's TCP sockets
// have reserved, in bytes (see net.inet.tcp.mem_limit).
func (t *Sockets) MemReserved() int64 {
	t.memMu.Lock()
	defer t.memMu.Unlock()
	return t.memReserved
}

// MemRefused returns how many calls failed with ENOBUFS because the
// socket-buffer memory they needed was not under net.inet.tcp.mem_limit.
func (t *Sockets) MemRefused() uint64 { return t.memRefused.Load() }

// Counters returns the table's counters, for core.Lcore.SetSocketCounters:
// tcp.mem_reserved (bytes now, MemReserved) and tcp.mem_refused (calls
// refused, MemRefused).
func (t *Sockets) Counters() []xstack.Counter {
	return []xstack.Counter{
		{Name: "tcp.mem_reserved", Value: uint64(max(t.MemReserved(), 0))},
		{Name: "tcp.mem_refused", Value: t.MemRefused()},
	}
}
