package posix

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// epollExclusiveOK are the events EPOLLEXCLUSIVE may be combined with
// (Linux's EPOLLEXCLUSIVE_OK_BITS).
const epollExclusiveOK = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDNORM | unix.EPOLLRDBAND |
	unix.EPOLLWRNORM | unix.EPOLLWRBAND | unix.EPOLLERR | unix.EPOLLHUP | unix.EPOLLWAKEUP |
	unix.EPOLLET | unix.EPOLLEXCLUSIVE

// eventPoll is an epoll instance. Its locking follows Linux's eventpoll: mu
// (ep->mtx) serializes EpollCtl and the scan of EpollWait, and readyMu
// (ep->lock) guards the ready list, which waiter callbacks append to from
// gVisor's goroutines. Order: mu, then an endpoint's locks, then readyMu;
// mu before socket.epMu.
type eventPoll struct {
	t *Sockets
	f *file

	mu sync.Mutex
	// items holds one registration per socket.
	// +checklocks:mu
	items map[*socket]*epItem

	readyMu sync.Mutex
	// head and tail are the ready list, linked through epItem.next/prev.
	// +checklocks:readyMu
	head, tail *epItem
	// +checklocks:readyMu
	nready int

	// wake has room for one token; callbacks drop one in when a waiter
	// may be blocked (waiters > 0).
	wake    chan struct{}
	waiters atomic.Int32
}

// epItem is one (socket, epoll) registration: Linux's epitem.
type epItem struct {
	ep    *eventPoll
	sock  *socket
	entry waiter.Entry // on sock.wq; its listener is the item itself

	// event is what EpollCtl set, with EPOLLERR|EPOLLHUP always added.
	// +checklocks:ep.mu
	event unix.EpollEvent
	// +checklocks:ep.mu
	removed bool

	// +checklocks:ep.readyMu
	next, prev *epItem
	// queued is set while the item is on the ready list.
	// +checklocks:ep.readyMu
	queued bool
	// armed is cleared when an EPOLLONESHOT item fires, until EPOLL_CTL_MOD.
	// +checklocks:ep.readyMu
	armed bool
}

var _ waiter.EventListener = (*epItem)(nil)

// NotifyEvent implements waiter.EventListener: the socket may have become
// ready, so queue the item for EpollWait to look at. It runs under the
// endpoint's waiter queue lock, on whatever goroutine changed the endpoint.
func (it *epItem) NotifyEvent(waiter.EventMask) {
	ep := it.ep
	ep.readyMu.Lock()
	if it.armed && !it.queued {
		ep.pushLocked(it)
	}
	ep.readyMu.Unlock()
	if ep.waiters.Load() > 0 {
		ep.signal()
	}
}

func (ep *eventPoll) signal() {
	select {
	case ep.wake <- struct{}{}:
	default:
	}
}

// +checklocks:ep.readyMu
func (ep *eventPoll) pushLocked(it *epItem) {
	it.queued = true
	it.next, it.prev = nil, ep.tail
	if ep.tail != nil {
		ep.tail.next = it
	} else {
		ep.head = it
	}
	ep.tail = it
	ep.nready++
}

// +checklocks:ep.readyMu
func (ep *eventPoll) unlinkLocked(it *epItem) {
	if it.prev != nil {
		it.prev.next = it.next
	} else {
		ep.head = it.next
	}
	if it.next != nil {
		it.next.prev = it.prev
	} else {
		ep.tail = it.prev
	}
	it.next, it.prev = nil, nil
	it.queued = false
	ep.nready--
}

// EpollCreate is epoll_create1(2): flags is 0 or EPOLL_CLOEXEC.
func (t *Sockets) EpollCreate(flags int) (int, error) {
	if flags&^unix.EPOLL_CLOEXEC != 0 {
		return -1, unix.EINVAL
	}
	ep := &eventPoll{t: t, items: make(map[*socket]*epItem), wake: make(chan struct{}, 1)}
	ep.f = newFile()
	ep.f.ep = ep
	ep.f.cloexec.Store(flags&unix.EPOLL_CLOEXEC != 0)
	fd, errno := t.install(ep.f)
	if errno != 0 {
		return -1, errno
	}
	return fd, nil
}

// EpollCtl is epoll_ctl(2) with Linux's errors: EFAULT for a nil event on
// ADD/MOD, EBADF for a bad epfd or fd, EINVAL when epfd is not an epoll
// instance, when fd == epfd, for an unknown op or a bad EPOLLEXCLUSIVE
// combination, EEXIST for ADD of a registered fd, ENOENT for MOD/DEL of an
// unregistered one. Adding an epoll instance is not supported (EPERM).
func (t *Sockets) EpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	hasEvent := op == unix.EPOLL_CTL_ADD || op == unix.EPOLL_CTL_MOD
	if hasEvent && ev == nil {
		return unix.EFAULT
	}
	ef := t.get(epfd)
	if ef == nil {
		return unix.EBADF
	}
	defer ef.put()
	tf := t.get(fd)
	if tf == nil {
		return unix.EBADF
	}
	defer tf.put()
	var event unix.EpollEvent
	if hasEvent {
		event = *ev
		event.Events |= unix.EPOLLERR | unix.EPOLLHUP
		if event.Events&unix.EPOLLEXCLUSIVE != 0 {
			if op == unix.EPOLL_CTL_MOD {
				return unix.EINVAL
			}
			if tf.ep != nil || event.Events&^uint32(epollExclusiveOK) != 0 {
				return unix.EINVAL
			}
		}
	}
	if ef == tf || ef.ep == nil {
		return unix.EINVAL
	}
	if tf.sock == nil {
		return unix.EPERM
	}
	ep, s := ef.ep, tf.sock

	ep.mu.Lock()
	defer ep.mu.Unlock()
	it := ep.items[s]
	switch op {
	case unix.EPOLL_CTL_ADD:
		if it != nil {
			return unix.EEXIST
		}
		s.epMu.Lock()
		if it = &s.item; it.ep != nil {
			// The socket is in another instance already.
			it = new(epItem)
		}
		*it = epItem{ep: ep, sock: s, event: event}
		s.items = append(s.items, it)
		s.epMu.Unlock()
		ep.items[s] = it
		it.entry.Init(it, entryMask(event.Events))
		s.wq.EventRegister(&it.entry)
	case unix.EPOLL_CTL_MOD:
		if it == nil {
			return unix.ENOENT
		}
		if it.event.Events&unix.EPOLLEXCLUSIVE != 0 {
			return unix.EINVAL
		}
		it.event = event
		it.entry.SetQueuedMask(s.wq, entryMask(event.Events))
	case unix.EPOLL_CTL_DEL:
		if it == nil {
			return unix.ENOENT
		}
		ep.removeLocked(it)
		return nil
	default:
		return unix.EINVAL
	}
	// Queue the item so the next EpollWait polls it: it is reported if
	// it is ready now, as ep_insert and ep_modify do.
	ep.readyMu.Lock()
	it.armed = true
	if !it.queued {
		ep.pushLocked(it)
	}
	ep.readyMu.Unlock()
	if ep.waiters.Load() > 0 {
		ep.signal()
	}
	if t.inLoop.Load() && s.poll()&event.Events != 0 {
		// A callback that accepts and registers a connection whose
		// request is in already gets to answer it in this pass
		// (RunCallback).
		t.readyAdded.Store(true)
	}
	return nil
}

// entryMask is the set of gVisor events that can change the answer to the
// given epoll events; the waiter entry subscribes to just those so a reader
// is not woken by every ACK that frees send space.
func entryMask(events uint32) waiter.EventMask {
	m := waiter.EventHUp | waiter.EventErr
	if events&(unix.EPOLLIN|unix.EPOLLRDNORM|unix.EPOLLRDBAND|unix.EPOLLPRI|unix.EPOLLRDHUP) != 0 {
		m |= waiter.ReadableEvents | waiter.EventPri | waiter.EventRdHUp
	}
	if events&(unix.EPOLLOUT|unix.EPOLLWRNORM|unix.EPOLLWRBAND) != 0 {
		m |= waiter.WritableEvents
	}
	return m
}

// remove takes it out of ep unless EpollCtl or the instance's release did
// already.
func (ep *eventPoll) remove(it *epItem) {
	ep.mu.Lock()
	if !it.removed {
		ep.removeLocked(it)
	}
	ep.mu.Unlock()
}

// +checklocks:ep.mu
func (ep *eventPoll) removeLocked(it *epItem) {
	it.removed = true
	s := it.sock
	s.wq.EventUnregister(&it.entry)
	ep.readyMu.Lock()
	if it.queued {
		ep.unlinkLocked(it)
	}
	it.armed = false
	ep.readyMu.Unlock()
	delete(ep.items, s)
	s.epMu.Lock()
	for i, x := range s.items {
		if x == it {
			last := len(s.items) - 1
			s.items[i] = s.items[last]
			s.items[last] = nil
			s.items = s.items[:last]
			break
		}
	}
	if it == &s.item {
		// Free for the socket's next registration: nothing refers to
		// it any more (its waiter entry is off the queue, it is off the
		// ready list and out of both sets).
		it.ep = nil
	}
	s.epMu.Unlock()
}

// release runs when the last reference to the instance is gone.
func (ep *eventPoll) release() {
	ep.mu.Lock()
	for _, it := range ep.items {
		ep.removeLocked(it)
	}
	ep.mu.Unlock()
}

var timerPool = sync.Pool{New: func() any {
	tm := time.NewTimer(time.Hour)
	tm.Stop()
	return tm
}}

// EpollWait is epoll_wait(2). msec 0 polls without blocking or allocating;
// msec < 0 waits without a deadline. On the loop goroutine inside its
// callback it never waits (see EnterLoop). EINVAL for an empty events slice
// or an epfd that is not an epoll instance.
func (t *Sockets) EpollWait(epfd int, events []unix.EpollEvent, msec int) (int, error) {
	if len(events) == 0 {
		return 0, unix.EINVAL
	}
	f := t.get(epfd)
	if f == nil {
		return 0, unix.EBADF
	}
	defer f.put()
	if f.ep == nil {
		return 0, unix.EINVAL
	}
	ep := f.ep
	if n := ep.scan(events); n > 0 || msec == 0 || t.onLoopGoroutine() {
		return n, nil
	}

	var expired <-chan time.Time
	if msec > 0 {
		tm := timerPool.Get().(*time.Timer)
		tm.Reset(time.Duration(msec) * time.Millisecond)
		defer func() {
			tm.Stop()
			timerPool.Put(tm)
		}()
		expired = tm.C
	}
	closing := f.closed()
	ep.waiters.Add(1)
	defer ep.waiters.Add(-1)
	for {
		// Scan again now that waiters is raised: a callback that ran
		// before it was raised did not signal.
		if n := ep.scan(events); n > 0 {
			return n, nil
		}
		select {
		case <-ep.wake:
		case <-expired:
			return ep.scan(events), nil
		case <-closing:
			return 0, unix.EBADF
		case <-t.done:
			return 0, unix.EBADF
		}
	}
}

// scan reports up to len(events) ready items, polling each socket for its
// current state. Level-triggered items that are reported go back on the ready
// list for the next call; edge-triggered ones wait for their next callback;
// one-shot ones are disarmed. Items appended while scanning are left for the
// next call, so each item is reported at most once per call.
func (ep *eventPoll) scan(events []unix.EpollEvent) int {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	ep.readyMu.Lock()
	count := ep.nready
	ep.readyMu.Unlock()
	n := 0
	for ; count > 0 && n < len(events); count-- {
		ep.readyMu.Lock()
		it := ep.head
		if it == nil {
			ep.readyMu.Unlock()
			break
		}
		ep.unlinkLocked(it)
		armed := it.armed
		ep.readyMu.Unlock()
		if !armed {
			continue
		}
		r := it.sock.poll() & it.event.Events
		if r == 0 {
			continue
		}
		events[n] = it.event
		events[n].Events = r
		n++
		ep.readyMu.Lock()
		switch {
		case it.event.Events&unix.EPOLLONESHOT != 0:
			it.armed = false
		case it.event.Events&unix.EPOLLET == 0:
			if !it.queued {
				ep.pushLocked(it)
			}
		}
		ep.readyMu.Unlock()
	}
	if n > 0 && ep.waiters.Load() > 1 {
		// Pass the wake-up on: another waiter may find the rest.
		ep.signal()
	}
	return n
}

// poll returns the socket's readiness as Linux's tcp_poll or datagram_poll
// would, in epoll bits.
func (s *socket) poll() uint32 {
	if s.stype == unix.SOCK_STREAM {
		return s.pollTCP()
	}
	r := uint32(s.ep.Readiness(waiter.ReadableEvents | waiter.WritableEvents | waiter.EventErr))
	rcvShut, sndShut := s.shutRd.Load(), s.shutWr.Load()
	if rcvShut {
		r |= unix.EPOLLIN | unix.EPOLLRDNORM | unix.EPOLLRDHUP
	}
	if rcvShut && sndShut {
		r |= unix.EPOLLHUP
	}
	return r
}

func (s *socket) pollTCP() uint32 {
	st := tcp.EndpointState(s.ep.State())
	var rcvShut, sndShut bool
	switch st {
	case tcp.StateListen:
		return uint32(s.ep.Readiness(waiter.ReadableEvents))
	case tcp.StateInitial, tcp.StateBound:
		// TCP_CLOSE with nothing shut down: writable and hung up.
		return unix.EPOLLOUT | unix.EPOLLWRNORM | unix.EPOLLHUP
	case tcp.StateConnecting, tcp.StateSynSent, tcp.StateSynRecv:
		return 0
	case tcp.StateEstablished:
	case tcp.StateFinWait1, tcp.StateFinWait2:
		sndShut = true
	case tcp.StateCloseWait:
		rcvShut = true
	default: // Closing, LastAck, TimeWait, Close, Error
		rcvShut, sndShut = true, true
	}
	rcvShut = rcvShut || s.shutRd.Load()
	sndShut = sndShut || s.shutWr.Load()
	g := uint32(s.ep.Readiness(waiter.ReadableEvents | waiter.WritableEvents))
	var m uint32
	if rcvShut && sndShut {
		m |= unix.EPOLLHUP
	}
	if rcvShut {
		m |= unix.EPOLLIN | unix.EPOLLRDNORM | unix.EPOLLRDHUP
	}
	m |= g & (unix.EPOLLIN | unix.EPOLLRDNORM)
	if sndShut {
		m |= unix.EPOLLOUT | unix.EPOLLWRNORM
	} else {
		m |= g & (unix.EPOLLOUT | unix.EPOLLWRNORM)
	}
	if st == tcp.StateError && !s.errSeen.Load() {
		m |= unix.EPOLLERR
	}
	return m
}
