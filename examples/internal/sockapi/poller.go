package sockapi

import "golang.org/x/sys/unix"

// Poller is the event loop an example server runs on, F-Stack style: one
// level-triggered epoll instance on API with non-blocking sockets, the
// Acceptor of the server's listeners, and the buffer each wait fills. The
// server supplies what to do with one ready descriptor (Pass's handle);
// the waiting, the listeners, the epoll set and the accept pauses are the
// Poller's, so that every server does them the same way.
//
// A Poller belongs to its server's loop goroutine.
type Poller struct {
	API  Sockets
	Epfd int
	// Acc accepts from the listeners, pausing while the stack is short
	// of descriptors or socket memory.
	Acc *Acceptor

	events []unix.EpollEvent
	waitMs int // EpollWait timeout: 0 inside the xstack loop
}

// NewPoller creates an epoll instance on api whose waits report up to
// maxEvents descriptors and block up to waitMs milliseconds (0 when the
// xstack loop calls Pass, which must not block).
func NewPoller(api Sockets, maxEvents, waitMs int) (*Poller, error) {
	epfd, err := api.EpollCreate1(0)
	if err != nil {
		return nil, err
	}
	return &Poller{API: api, Epfd: epfd, Acc: NewAcceptor(api, epfd),
		events: make([]unix.EpollEvent, maxEvents), waitMs: waitMs}, nil
}

// Pass is one pass of the server's loop: it waits once for the
// descriptors that are ready, hands each to handle with its events, and
// then resumes accepting if the Acceptor's backoff has passed.
func (p *Poller) Pass(handle func(fd int, events uint32)) error {
	evs, err := EpollWait(p.API, p.Epfd, p.events, p.waitMs)
	if err != nil {
		return err
	}
	for _, ev := range evs {
		handle(int(ev.Fd), ev.Events)
	}
	p.Acc.Poll()
	return nil
}

// Listen opens a non-blocking TCP listener on sa (see Open) and hands it
// to the Acceptor, which watches it for EPOLLIN. It returns the listener.
func (p *Poller) Listen(sa unix.Sockaddr, backlog int) (int, error) {
	fd, err := Open(p.API, sa, unix.SOCK_STREAM, backlog)
	if err != nil {
		return -1, err
	}
	if err := p.Acc.Listen(fd, unix.EPOLLIN); err != nil {
		p.API.Close(fd)
		return -1, err
	}
	return fd, nil
}

// Add adds fd to the epoll set for events. If it cannot, it closes fd:
// a socket the loop never hears of would only leak.
func (p *Poller) Add(fd int, events uint32) error {
	if err := p.API.EpollCtl(p.Epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: events, Fd: int32(fd)}); err != nil {
		p.API.Close(fd)
		return err
	}
	return nil
}

// Modify makes epoll watch fd, already in the set, for events instead.
func (p *Poller) Modify(fd int, events uint32) error {
	return p.API.EpollCtl(p.Epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: events, Fd: int32(fd)})
}

// CloseFD closes fd, which takes it out of the epoll set, and resumes
// accepting: a close frees a descriptor and socket memory.
func (p *Poller) CloseFD(fd int) {
	p.API.Close(fd)
	p.Acc.Resume()
}
