package posix

import (
	"bytes"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"
)

// maxBacklog is Linux's default net.core.somaxconn; listen clamps to it.
const maxBacklog = 4096

// socket is one gVisor endpoint behind an fd.
type socket struct {
	t      *Sockets
	f      *file
	family int // AF_INET or AF_INET6
	stype  int // SOCK_STREAM or SOCK_DGRAM
	proto  int // IPPROTO_TCP or IPPROTO_UDP
	ep     tcpip.Endpoint
	wq     *waiter.Queue

	// errSeen is set once a hard error (reset, refused...) has been
	// returned to the application; EPOLLERR stops then, as Linux clears
	// sk_err when it reports it.
	errSeen atomic.Bool
	// shutRd and shutWr record shutdown(2) for poll (RCV_SHUTDOWN and
	// SEND_SHUTDOWN in sk_shutdown).
	shutRd, shutWr atomic.Bool

	// readMu serializes receives and accepts (Linux holds the socket lock
	// for them too) and guards the receive scratch state.
	readMu sync.Mutex
	// +checklocks:readMu
	rbuf tcpip.SliceWriter
	// +checklocks:readMu
	rwait blocker

	// writeMu serializes sends and connects and guards the send scratch.
	writeMu sync.Mutex
	// +checklocks:writeMu
	wbuf bytes.Reader
	// +checklocks:writeMu
	wwait blocker

	// epMu guards items, the epoll registrations of this socket, which
	// are removed when the socket is released (Linux's eventpoll_release).
	epMu sync.Mutex
	// +checklocks:epMu
	items []*epItem
}

// blocker is a reusable waiter entry for a blocking call; its channel is
// made on first use.
type blocker struct {
	entry waiter.Entry
	ch    chan struct{}
}

// register subscribes b to mask on wq.
func (b *blocker) register(wq *waiter.Queue, mask waiter.EventMask) {
	if b.ch == nil {
		b.ch = make(chan struct{}, 1)
	}
	b.entry.Init(waiter.ChannelNotifier(b.ch), mask)
	wq.EventRegister(&b.entry)
}

// Socket is socket(2) for AF_INET and AF_INET6 with SOCK_STREAM or
// SOCK_DGRAM, optionally or'ed with SOCK_NONBLOCK and SOCK_CLOEXEC. proto is
// 0 or the type's protocol (IPPROTO_TCP, IPPROTO_UDP).
func (t *Sockets) Socket(domain, typ, proto int) (int, error) {
	if domain != unix.AF_INET && domain != unix.AF_INET6 {
		return -1, unix.EAFNOSUPPORT
	}
	flags := typ &^ 0xf
	typ &= 0xf
	if flags&^(unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC) != 0 {
		return -1, unix.EINVAL
	}
	var transProto tcpip.TransportProtocolNumber
	switch typ {
	case unix.SOCK_STREAM:
		if proto != 0 && proto != unix.IPPROTO_TCP {
			return -1, unix.EPROTONOSUPPORT
		}
		proto, transProto = unix.IPPROTO_TCP, tcp.ProtocolNumber
	case unix.SOCK_DGRAM:
		if proto != 0 && proto != unix.IPPROTO_UDP {
			return -1, unix.EPROTONOSUPPORT
		}
		proto, transProto = unix.IPPROTO_UDP, udp.ProtocolNumber
	default:
		return -1, unix.ESOCKTNOSUPPORT
	}
	netProto := header.IPv4ProtocolNumber
	if domain == unix.AF_INET6 {
		netProto = header.IPv6ProtocolNumber
	}
	if t.isClosed() {
		return -1, unix.ENETDOWN
	}
	wq := new(waiter.Queue)
	ep, err := t.stack.NewEndpoint(transProto, netProto, wq)
	if err != nil {
		if _, ok := err.(*tcpip.ErrUnknownProtocol); ok {
			// The stack was built without this family.
			return -1, unix.EAFNOSUPPORT
		}
		return -1, errnoOf(err)
	}
	s := t.newSocket(domain, typ, proto, ep, wq)
	s.f.nonblock.Store(flags&unix.SOCK_NONBLOCK != 0)
	s.f.cloexec.Store(flags&unix.SOCK_CLOEXEC != 0)
	fd, errno := t.install(s.f)
	if errno != 0 {
		ep.Close()
		return -1, errno
	}
	return fd, nil
}

func (t *Sockets) isClosed() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

func (t *Sockets) newSocket(family, typ, proto int, ep tcpip.Endpoint, wq *waiter.Queue) *socket {
	s := &socket{t: t, family: family, stype: typ, proto: proto, ep: ep, wq: wq}
	s.f = newFile()
	s.f.sock = s
	return s
}

// release runs when the last reference is gone: it leaves every epoll
// instance, then closes the endpoint with close(2)'s semantics.
func (s *socket) release() {
	for {
		s.epMu.Lock()
		var it *epItem
		if len(s.items) > 0 {
			it = s.items[0]
		}
		s.epMu.Unlock()
		if it == nil {
			break
		}
		it.ep.remove(it)
	}
	s.ep.Close()
}

// mayBlock reports whether a call that would block should wait: the socket
// is blocking, dontwait was not asked for, and the caller is not the lcore
// loop inside its callback.
func (s *socket) mayBlock(dontwait bool) bool {
	return !dontwait && !s.f.nonblock.Load() && !s.t.onLoopGoroutine()
}

// wait parks until b is notified or the fd or the table is closed.
func (s *socket) wait(b *blocker) unix.Errno {
	select {
	case <-b.ch:
		return 0
	case <-s.f.closing:
		return unix.EBADF
	case <-s.t.done:
		return unix.EBADF
	}
}

// errno converts err and notes a hard error as reported.
func (s *socket) errno(err tcpip.Error) unix.Errno {
	if isHardError(err) {
		s.errSeen.Store(true)
	}
	return errnoOf(err)
}

// Bind is bind(2).
func (t *Sockets) Bind(fd int, sa unix.Sockaddr) error {
	s, errno := t.socket(fd)
	if errno != 0 {
		return errno
	}
	defer s.f.put()
	addr, errno := s.fullAddress(sa, opBind)
	if errno != 0 {
		return errno
	}
	if err := s.ep.Bind(addr); err != nil {
		return s.errno(err)
	}
	return nil
}

// Listen is listen(2). backlog is clamped to [0, 4096] like Linux with the
// default somaxconn; UDP sockets fail with EOPNOTSUPP.
func (t *Sockets) Listen(fd, backlog int) error {
	s, errno := t.socket(fd)
	if errno != 0 {
		return errno
	}
	defer s.f.put()
	if backlog < 0 || backlog > maxBacklog {
		backlog = maxBacklog
	}
	if err := s.ep.Listen(backlog); err != nil {
		return s.errno(err)
	}
	return nil
}

// Accept is accept(2).
func (t *Sockets) Accept(fd int) (int, unix.Sockaddr, error) { return t.Accept4(fd, 0) }

// Accept4 is accept4(2): flags may hold SOCK_NONBLOCK and SOCK_CLOEXEC for
// the new socket, which otherwise does not inherit the listener's
// O_NONBLOCK (as on Linux).
func (t *Sockets) Accept4(fd, flags int) (int, unix.Sockaddr, error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return -1, nil, errno
	}
	defer s.f.put()
	if flags&^(unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC) != 0 {
		return -1, nil, unix.EINVAL
	}
	if s.stype != unix.SOCK_STREAM {
		return -1, nil, unix.EOPNOTSUPP
	}
	var peer tcpip.FullAddress
	nep, nwq, err := s.accept(&peer)
	if err != 0 {
		return -1, nil, err
	}
	ns := t.newSocket(s.family, s.stype, s.proto, nep, nwq)
	ns.f.nonblock.Store(flags&unix.SOCK_NONBLOCK != 0)
	ns.f.cloexec.Store(flags&unix.SOCK_CLOEXEC != 0)
	nfd, errno := t.install(ns.f)
	if errno != 0 {
		nep.Close()
		return -1, nil, errno
	}
	return nfd, s.sockaddr(peer), nil
}

func (s *socket) accept(peer *tcpip.FullAddress) (tcpip.Endpoint, *waiter.Queue, unix.Errno) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	registered := false
	defer func() {
		if registered {
			s.wq.EventUnregister(&s.rwait.entry)
		}
	}()
	for {
		nep, nwq, err := s.ep.Accept(peer)
		if err == nil {
			return nep, nwq, 0
		}
		if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
			return nil, nil, s.errno(err)
		}
		if !s.mayBlock(false) {
			return nil, nil, unix.EAGAIN
		}
		if !registered {
			s.rwait.register(s.wq, waiter.ReadableEvents|waiter.EventHUp|waiter.EventErr)
			registered = true
			continue // retry once registered so no wake-up is lost
		}
		if errno := s.wait(&s.rwait); errno != 0 {
			return nil, nil, errno
		}
	}
}

// Connect is connect(2). A blocking socket waits for the handshake; a
// non-blocking one (or any socket on the loop goroutine) returns EINPROGRESS
// and reports completion as EPOLLOUT, with the result in SO_ERROR.
func (t *Sockets) Connect(fd int, sa unix.Sockaddr) error {
	s, errno := t.socket(fd)
	if errno != 0 {
		return errno
	}
	defer s.f.put()
	addr, errno := s.fullAddress(sa, opConnect)
	if errno != 0 {
		return errno
	}
	return s.connect(addr)
}

func (s *socket) connect(addr tcpip.FullAddress) error {
	if s.stype != unix.SOCK_STREAM {
		if err := s.ep.Connect(addr); err != nil {
			return s.errno(err)
		}
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	block := s.mayBlock(false)
	if block {
		// Register before connecting so the completion cannot be missed.
		s.wwait.register(s.wq, waiter.WritableEvents|waiter.EventHUp|waiter.EventErr)
		defer s.wq.EventUnregister(&s.wwait.entry)
	}
	err := s.ep.Connect(addr)
	for {
		switch err.(type) {
		case nil:
			return nil
		case *tcpip.ErrConnectStarted, *tcpip.ErrAlreadyConnecting:
			// Under way: wait, or say so.
		case *tcpip.ErrNoPortAvailable:
			// TCP, unlike UDP, reports ephemeral port exhaustion as
			// EADDRNOTAVAIL (inet_hash_connect).
			return unix.EADDRNOTAVAIL
		default:
			return s.errno(err)
		}
		if !block {
			return errnoOf(err)
		}
		if errno := s.wait(&s.wwait); errno != 0 {
			return errno
		}
		// Connecting again reports the outcome (nil once, then EISCONN).
		err = s.ep.Connect(addr)
	}
}

// Read is read(2).
func (t *Sockets) Read(fd int, p []byte) (int, error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return 0, rwErrno(errno)
	}
	n, _, errno := s.recv(p, false, false, nil)
	s.f.put()
	if errno != 0 {
		return n, errno
	}
	return n, nil
}

// rwErrno adjusts a lookup error for read(2) and write(2): an epoll instance
// has no read or write operation, which Linux reports as EINVAL.
func rwErrno(errno unix.Errno) unix.Errno {
	if errno == unix.ENOTSOCK {
		return unix.EINVAL
	}
	return errno
}

// RecvFrom is recvfrom(2). flags may hold MSG_DONTWAIT, MSG_PEEK and
// MSG_TRUNC (return a datagram's full length). from is nil for TCP, as with
// Go's unix.Recvfrom.
func (t *Sockets) RecvFrom(fd int, p []byte, flags int) (int, unix.Sockaddr, error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return 0, nil, errno
	}
	defer s.f.put()
	if flags&^(unix.MSG_DONTWAIT|unix.MSG_PEEK|unix.MSG_TRUNC|unix.MSG_NOSIGNAL|unix.MSG_CMSG_CLOEXEC) != 0 {
		return 0, nil, unix.EOPNOTSUPP
	}
	var from *tcpip.FullAddress
	var addr tcpip.FullAddress
	if s.stype == unix.SOCK_DGRAM {
		from = &addr
	}
	n, total, errno := s.recv(p, flags&unix.MSG_DONTWAIT != 0, flags&unix.MSG_PEEK != 0, from)
	if errno != 0 {
		return n, nil, errno
	}
	if flags&unix.MSG_TRUNC != 0 && s.stype == unix.SOCK_DGRAM {
		n = total
	}
	if from == nil {
		return n, nil, nil
	}
	return n, s.sockaddr(addr), nil
}

// recv reads into p and returns the bytes read and, for datagrams, the
// datagram's full length (for MSG_TRUNC). When from is non-nil (datagram
// sockets) it also receives the sender's address.
func (s *socket) recv(p []byte, dontwait, peek bool, from *tcpip.FullAddress) (n, total int, errno unix.Errno) {
	if len(p) == 0 && s.stype == unix.SOCK_STREAM {
		// tcp_recvmsg copies nothing and returns 0 at once, except
		// on a listener.
		if tcp.EndpointState(s.ep.State()) == tcp.StateListen {
			return 0, 0, unix.ENOTCONN
		}
		return 0, 0, 0
	}
	s.readMu.Lock()
	defer s.readMu.Unlock()
	registered := false
	for {
		s.rbuf = p
		res, err := s.ep.Read(&s.rbuf, tcpip.ReadOptions{Peek: peek, NeedRemoteAddr: from != nil})
		s.rbuf = nil
		errno = 0
		switch err.(type) {
		case nil:
			if from != nil {
				*from = res.RemoteAddr
			}
		case *tcpip.ErrClosedForReceive:
			// End of file: the peer's FIN, or shutdown(SHUT_RD).
		case *tcpip.ErrWouldBlock:
			errno = unix.EAGAIN
		default:
			errno = s.errno(err)
		}
		if errno != unix.EAGAIN || !s.mayBlock(dontwait) {
			if registered {
				s.wq.EventUnregister(&s.rwait.entry)
			}
			return res.Count, res.Total, errno
		}
		if !registered {
			s.rwait.register(s.wq, waiter.ReadableEvents|waiter.EventRdHUp|waiter.EventHUp|waiter.EventErr)
			registered = true
			continue
		}
		if errno := s.wait(&s.rwait); errno != 0 {
			s.wq.EventUnregister(&s.rwait.entry)
			return 0, 0, errno
		}
	}
}

// Write is write(2). On a blocking TCP socket it returns when all of p is
// queued (or an error ends the connection after part of it was).
func (t *Sockets) Write(fd int, p []byte) (int, error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return 0, rwErrno(errno)
	}
	n, errno := s.send(p, false, nil)
	s.f.put()
	if errno != 0 {
		return n, errno
	}
	return n, nil
}

// SendTo is sendto(2). to may be nil for a connected socket; TCP ignores it
// as Linux does. flags may hold MSG_DONTWAIT; MSG_NOSIGNAL and MSG_MORE are
// accepted (no signals are ever raised; corking is not implemented).
func (t *Sockets) SendTo(fd int, p []byte, flags int, to unix.Sockaddr) (int, error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return 0, errno
	}
	defer s.f.put()
	if flags&^(unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL|unix.MSG_MORE|unix.MSG_EOR) != 0 {
		return 0, unix.EOPNOTSUPP
	}
	var addr *tcpip.FullAddress
	if to != nil && s.stype == unix.SOCK_DGRAM {
		a, errno := s.fullAddress(to, opSendTo)
		if errno != 0 {
			return 0, errno
		}
		addr = &a
	}
	n, errno := s.send(p, flags&unix.MSG_DONTWAIT != 0, addr)
	if errno != 0 {
		return n, errno
	}
	return n, nil
}

func (s *socket) send(p []byte, dontwait bool, to *tcpip.FullAddress) (int, unix.Errno) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	registered := false
	defer func() {
		if registered {
			s.wq.EventUnregister(&s.wwait.entry)
		}
	}()
	total := 0
	for {
		s.wbuf.Reset(p[total:])
		n, err := s.ep.Write(&s.wbuf, tcpip.WriteOptions{To: to})
		s.wbuf.Reset(nil)
		total += int(n)
		switch err.(type) {
		case nil:
			if total == len(p) || s.stype != unix.SOCK_STREAM {
				return total, 0
			}
			if !s.mayBlock(dontwait) {
				return total, 0 // a short write, as Linux's non-blocking send
			}
			continue
		case *tcpip.ErrWouldBlock:
		default:
			if total > 0 {
				return total, 0 // the error is reported by the next call
			}
			return 0, s.errno(err)
		}
		if !s.mayBlock(dontwait) {
			if total > 0 {
				return total, 0
			}
			return 0, unix.EAGAIN
		}
		if !registered {
			s.wwait.register(s.wq, waiter.WritableEvents|waiter.EventHUp|waiter.EventErr)
			registered = true
			continue
		}
		if errno := s.wait(&s.wwait); errno != 0 {
			if total > 0 {
				return total, 0
			}
			return 0, errno
		}
	}
}

// Shutdown is shutdown(2).
func (t *Sockets) Shutdown(fd, how int) error {
	s, errno := t.socket(fd)
	if errno != 0 {
		return errno
	}
	defer s.f.put()
	var flags tcpip.ShutdownFlags
	switch how {
	case unix.SHUT_RD:
		flags = tcpip.ShutdownRead
	case unix.SHUT_WR:
		flags = tcpip.ShutdownWrite
	case unix.SHUT_RDWR:
		flags = tcpip.ShutdownRead | tcpip.ShutdownWrite
	default:
		return unix.EINVAL
	}
	if err := s.ep.Shutdown(flags); err != nil {
		return s.errno(err)
	}
	if flags&tcpip.ShutdownRead != 0 {
		s.shutRd.Store(true)
	}
	if flags&tcpip.ShutdownWrite != 0 {
		s.shutWr.Store(true)
	}
	// Wake epoll registrations: shutdown changes poll's answer, and
	// gVisor does not notify for every case (SHUT_RD on TCP).
	s.wq.Notify(waiter.EventRdHUp | waiter.ReadableEvents | waiter.WritableEvents)
	return nil
}

// Getsockname is getsockname(2).
func (t *Sockets) Getsockname(fd int) (unix.Sockaddr, error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return nil, errno
	}
	defer s.f.put()
	a, err := s.ep.GetLocalAddress()
	if err != nil {
		return nil, s.errno(err)
	}
	return s.sockaddr(a), nil
}

// Getpeername is getpeername(2): ENOTCONN until connected.
func (t *Sockets) Getpeername(fd int) (unix.Sockaddr, error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return nil, errno
	}
	defer s.f.put()
	a, err := s.ep.GetRemoteAddress()
	if err != nil {
		return nil, s.errno(err)
	}
	return s.sockaddr(a), nil
}

func (s *socket) ioctlGetInt(req uint) (int, error) {
	switch req {
	case unix.SIOCINQ: // == FIONREAD
		if s.stype == unix.SOCK_STREAM && tcp.EndpointState(s.ep.State()) == tcp.StateListen {
			return 0, unix.EINVAL
		}
		v, err := s.ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption)
		if err != nil {
			return 0, errnoOf(err)
		}
		return v, nil
	case unix.SIOCOUTQ: // == TIOCOUTQ
		if s.stype == unix.SOCK_STREAM && tcp.EndpointState(s.ep.State()) == tcp.StateListen {
			return 0, unix.EINVAL
		}
		v, err := s.ep.GetSockOptInt(tcpip.SendQueueSizeOption)
		if err != nil {
			return 0, errnoOf(err)
		}
		return v, nil
	}
	return 0, unix.ENOTTY
}
