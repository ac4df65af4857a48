package sockapi

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/posix"
)

// AcceptBackoff is how long accepting pauses after Accept found no
// descriptor or socket memory, unless a connection closes sooner.
const AcceptBackoff = 100 * time.Millisecond

// Acceptor accepts a server's connections from its level-triggered
// listeners and pauses while the stack is short of descriptors or socket
// memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the connection then stays
// queued, and its listener would report it on every pass while the
// shortage lasts. Paused, the listeners are out of the epoll set, the
// server's connections keep being served and the queued ones wait; the
// server calls Resume when it closes a connection (which frees a
// descriptor and memory) and Poll on every pass, which resumes after
// AcceptBackoff in any case.
//
// An Acceptor belongs to its server's loop goroutine.
type Acceptor struct {
	api       Sockets
	epfd      int
	listeners []unix.EpollEvent // Fd and the events it is watched for
	paused    bool
	retry     time.Time
}

// NewAcceptor returns an Acceptor for the listeners the server adds to
// epoll instance epfd with Listen.
func NewAcceptor(api Sockets, epfd int) *Acceptor {
	return &Acceptor{api: api, epfd: epfd}
}

// Listen adds listening socket fd to the epoll set for events and to the
// listeners that a pause takes out.
func (a *Acceptor) Listen(fd int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	if err := a.api.EpollCtl(a.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return err
	}
	a.listeners = append(a.listeners, ev)
	return nil
}

// Paused reports whether accepting is paused.
func (a *Acceptor) Paused() bool { return a.paused }

// Accept takes one connection off listener lfd, non-blocking. It reports
// false when there is none to take: the backlog is drained (EAGAIN), the
// stack is short of resources (and accepting is now paused) or Accept
// failed otherwise, to be tried again on the next event.
func (a *Acceptor) Accept(lfd int) (int, bool) {
	fd, _, err := a.api.Accept4(lfd, unix.SOCK_NONBLOCK)
	if err != nil {
		if posix.ShortOfResources(err) {
			a.pause()
		}
		return -1, false
	}
	return fd, true
}

func (a *Acceptor) pause() {
	if a.paused {
		return
	}
	for _, l := range a.listeners {
		a.api.EpollCtl(a.epfd, unix.EPOLL_CTL_DEL, int(l.Fd), nil)
	}
	a.paused, a.retry = true, time.Now().Add(AcceptBackoff)
}

// Resume puts the listeners back into the epoll set, if paused: the
// queued connections are reported again.
func (a *Acceptor) Resume() {
	if !a.paused {
		return
	}
	for i := range a.listeners {
		a.api.EpollCtl(a.epfd, unix.EPOLL_CTL_ADD, int(a.listeners[i].Fd), &a.listeners[i])
	}
	a.paused = false
}

// Poll resumes accepting once AcceptBackoff has passed since the pause.
func (a *Acceptor) Poll() {
	if a.paused && !time.Now().Before(a.retry) {
		a.Resume()
	}
}

// IsListener reports whether fd is one of the listeners.
func (a *Acceptor) IsListener(fd int) bool {
	for _, l := range a.listeners {
		if int(l.Fd) == fd {
			return true
		}
	}
	return false
}

// Open makes a non-blocking socket of type typ (unix.SOCK_STREAM or
// unix.SOCK_DGRAM) bound to sa with SO_REUSEADDR, IPv6-only if sa is an
// IPv6 address (the servers bind IPv4 separately), and for a stream
// socket listening with backlog.
func Open(api Sockets, sa unix.Sockaddr, typ, backlog int) (int, error) {
	domain := unix.AF_INET
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		domain = unix.AF_INET6
	}
	fd, err := api.Socket(domain, typ|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, err
	}
	err = api.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err == nil && domain == unix.AF_INET6 {
		err = api.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if err == nil {
		err = api.Bind(fd, sa)
	}
	if err == nil && typ == unix.SOCK_STREAM {
		err = api.Listen(fd, backlog)
	}
	if err != nil {
		api.Close(fd)
		return -1, err
	}
	return fd, nil
}
