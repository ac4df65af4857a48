package posix

import (
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"

	xstack "github.com/xstack/xstack/stack"
)

// SetSocketDefaults makes every TCP socket that Socket creates take the
// per-socket defaults f returns at that moment (the net.inet.tcp.keep*,
// always_keepalive and user_timeout sysctls: stack.Stack.SocketDefaults).
// Accepted sockets inherit the listener's keepalive settings, as on Linux,
// and the user timeout through gVisor. Init does this for the lcore's
// stack; call it before the table is used.
func (t *Sockets) SetSocketDefaults(f func() xstack.SocketDefaults) {
	t.defaults = f
}

// applyDefaults gives a new TCP socket the sysctl defaults.
func (s *socket) applyDefaults() {
	if s.stype != unix.SOCK_STREAM || s.t.defaults == nil {
		return
	}
	d := s.t.defaults()
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
func (s *socket) inheritKeepalive(l *socket) {
	var idle tcpip.KeepaliveIdleOption
	if l.ep.GetSockOpt(&idle) == nil {
		s.ep.SetSockOpt(&idle)
	}
	var intvl tcpip.KeepaliveIntervalOption
	if l.ep.GetSockOpt(&intvl) == nil {
		s.ep.SetSockOpt(&intvl)
	}
	if n, err := l.ep.GetSockOptInt(tcpip.KeepaliveCountOption); err == nil {
		s.ep.SetSockOptInt(tcpip.KeepaliveCountOption, n)
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
