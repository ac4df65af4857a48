package posix

import (
	"os"
	"time"
)

// SetCorkDelay makes the flush timer of corked TCP data wait d instead of
// 200 ms until restore is called.
func SetCorkDelay(d time.Duration) (restore func()) {
	corkDelayOverride.Store(int64(d))
	return func() { corkDelayOverride.Store(0) }
}

// RecvDeadline is Recv with a deadline, as the net.Conn adapters' Read has
// one: a blocked call gives up when deadline is closed, with
// os.ErrDeadlineExceeded if it has read nothing.
func (t *Sockets) RecvDeadline(fd int, p []byte, flags int, deadline <-chan struct{}) (int, error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return 0, errno
	}
	defer s.f.put()
	o := recvOptsOf(flags)
	o.deadline = deadline
	n, _, errno := s.recv(p, nil, o)
	switch errno {
	case 0:
		return n, nil
	case errnoDeadline:
		return n, os.ErrDeadlineExceeded
	}
	return n, errno
}
