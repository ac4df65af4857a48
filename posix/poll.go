package posix

import (
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Poll is poll(2) over this table's descriptors. Each entry's Revents is
// set to the events that hold now, from Events plus POLLERR and POLLHUP
// (always reported), or POLLNVAL for a descriptor that is not open; a
// negative Fd is skipped. msec 0 polls, msec < 0 waits without a deadline.
// On the loop goroutine inside its callback it never waits (see EnterLoop).
// An epoll instance reports POLLIN while it has registrations on its ready
// list, but a Poll waiting on it is not woken by them (a known limit).
func (t *Sockets) Poll(fds []unix.PollFd, msec int) (int, error) {
	if len(fds) > maxFDs {
		return 0, unix.EINVAL
	}
	files := make([]*file, len(fds))
	for i := range fds {
		if fds[i].Fd >= 0 {
			files[i] = t.get(int(fds[i].Fd))
		}
	}
	defer func() {
		for _, f := range files {
			if f != nil {
				f.put()
			}
		}
	}()
	if n := pollScan(fds, files); n > 0 || msec == 0 || t.onLoopGoroutine() {
		return n, nil
	}

	// Subscribe to every socket, then scan again so that no change between
	// the first scan and the subscription is lost.
	ch := make(chan struct{}, 1)
	entries := make([]waiter.Entry, len(fds))
	for i, f := range files {
		if f == nil || f.sock == nil {
			continue
		}
		entries[i].Init(waiter.ChannelNotifier(ch), entryMask(uint32(uint16(fds[i].Events))))
		f.sock.wq.EventRegister(&entries[i])
	}
	defer func() {
		for i, f := range files {
			if f != nil && f.sock != nil {
				f.sock.wq.EventUnregister(&entries[i])
			}
		}
	}()
	var expired <-chan time.Time
	if msec > 0 {
		tm := time.NewTimer(time.Duration(msec) * time.Millisecond)
		defer tm.Stop()
		expired = tm.C
	}
	for {
		if n := pollScan(fds, files); n > 0 {
			return n, nil
		}
		select {
		case <-ch:
		case <-expired:
			return pollScan(fds, files), nil
		case <-t.done:
			return 0, unix.EBADF
		}
	}
}

// pollScan fills in Revents and returns how many entries have any.
func pollScan(fds []unix.PollFd, files []*file) int {
	n := 0
	for i := range fds {
		fds[i].Revents = 0
		if fds[i].Fd < 0 {
			continue
		}
		f := files[i]
		var r uint32
		switch {
		case f == nil:
			r = unix.POLLNVAL
		case f.sock != nil:
			want := uint32(uint16(fds[i].Events)) | unix.POLLERR | unix.POLLHUP
			r = f.sock.poll() & want
		default:
			f.ep.readyMu.Lock()
			if f.ep.nready > 0 && fds[i].Events&unix.POLLIN != 0 {
				r = unix.POLLIN
			}
			f.ep.readyMu.Unlock()
		}
		if r != 0 {
			fds[i].Revents = int16(r)
			n++
		}
	}
	return n
}
