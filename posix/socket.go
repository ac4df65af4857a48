package posix

import (
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
	// +checklocks:t.memMu
	rcvAuto bool

	// readMu serializes receives and accepts (Linux holds the socket lock
	// for them too) and guards the receive scratch state.
	readMu sync.Mutex
	// +checklocks:readMu
	rbuf iovWriter
	// +checklocks:readMu
	rwait blocker

	// writeMu serializes sends and connects and guards the send scratch.
	writeMu sync.Mutex
	// +checklocks:writeMu
	wbuf iovReader
	// +checklocks:writeMu
	wwait blocker
	// wto is the destination of the datagram being sent: a copy kept
	// here, so that the caller's address does not escape to the heap.
	// +checklocks:writeMu
	wto tcpip.FullAddress

	// cork is a TCP socket's corking: TCP_CORK and MSG_MORE (cork.go).
	cork corkState

	// epMu guards items, the epoll registrations of this socket, which
	// are removed when the socket is released (Linux's eventpoll_release).
	epMu sync.Mutex
	// +checklocks:epMu
	items []*epItem

	// mem is the socket-buffer memory this TCP socket has reserved
	// (limits.go); rcvAuto says that gVisor may still grow its receive
	// buffer, so that mem counts the receive range's maximum. (rcvAuto
	// sits with the flags above: the socket keeps to its size class.)
	// +checklocks:t.memMu
	mem int64

	// What a served connection needs of posix is allocated with the
	// socket, in one object in the 704-byte size class: its table entry
	// (f points to file), its first epoll registration (item, which
	// items starts on, in items1) and the IPv4 peer address accept
	// returns (peer4). None of it is referred to once the socket is
	// released, so nothing of it outlives the connection's descriptor
	// (gVisor holds only the endpoint and its waiter queue).
	file   file
	item   epItem
	items1 [1]*epItem
	// peer4 is the IPv4 peer address Accept returned (peerSockaddr).
	peer4 unix.SockaddrInet4
	// kaScratch is where accept reads the keepalive options it copies
	// from the listener (inheritKeepalive); only accept4 uses it, before
	// the socket is installed.
	kaScratch struct {
		idle, lIdle   tcpip.KeepaliveIdleOption
		intvl, lIntvl tcpip.KeepaliveIntervalOption
	}
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
// 0 or the type's protocol (IPPROTO_TCP, IPPROTO_UDP). A TCP socket
// reserves its buffers: ENOBUFS when they do not fit under
// net.inet.tcp.mem_limit (see the package doc).
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
	// The waiter queue is an object of its own: the endpoint holds it
	// as long as it lives, through TIME-WAIT, and the socket need not.
	wq := new(waiter.Queue)
	ep, err := t.stack.NewEndpoint(transProto, netProto, wq)
	if err != nil {
		if _, ok := err.(*tcpip.ErrUnknownProtocol); ok {
			// The stack was built without this family.
			return -1, unix.EAFNOSUPPORT
		}
		return -1, errnoOf(err)
	}
	s := t.newSocket(domain, typ, proto)
	s.ep, s.wq = ep, wq
	if typ == unix.SOCK_STREAM {
		if errno := s.reserveMem(); errno != 0 {
			ep.Close()
			return -1, errno
		}
	}
	s.applyDefaults()
	s.f.nonblock.Store(flags&unix.SOCK_NONBLOCK != 0)
	s.f.cloexec.Store(flags&unix.SOCK_CLOEXEC != 0)
	fd, errno := t.install(s.f)
	if errno != 0 {
		s.releaseMem()
		ep.Close()
		return -1, errno
	}
	return fd, nil
}

func (t *Sockets) isClosed() bool { return expired(t.done) }

// newSocket returns a socket without an endpoint yet (ep and wq), holding
// the one reference of its file.
func (t *Sockets) newSocket(family, typ, proto int) *socket {
	s := &socket{t: t, family: family, stype: typ, proto: proto}
	s.f = &s.file
	s.f.refs.Store(1)
	s.f.sock = s
	s.items = s.items1[:0]
	return s
}

// release runs when the last reference is gone: it leaves every epoll
// instance, then closes the endpoint with close(2)'s semantics and gives
// its socket-buffer reservation back.
func (s *socket) release() {
	for {
		s.epMu.Lock()
		var it *epItem
		var ep *eventPoll
		if len(s.items) > 0 {
			// it.ep is read here: the instance's own release may
			// take it out and clear it meanwhile (see removeLocked).
			it = s.items[0]
			ep = it.ep
		}
		s.epMu.Unlock()
		if it == nil {
			break
		}
		ep.remove(it)
	}
	if s.stype == unix.SOCK_STREAM {
		s.releaseCork()
	}
	s.ep.Close()
	if s.stype == unix.SOCK_STREAM {
		s.releaseMem()
	}
}

// armKeepalive starts the keepalive timer of a newly established TCP
// connection that has SO_KEEPALIVE set. gVisor arms it only when a segment
// arrives after the handshake (or the option is set again), so an idle
// connection that enabled keepalive before connect would never probe.
func (s *socket) armKeepalive() {
	if s.stype != unix.SOCK_STREAM {
		return
	}
	if ops := s.ep.SocketOptions(); ops.GetKeepAlive() {
		ops.SetKeepAlive(true)
	}
}

// mayBlock reports whether a call that would block should wait: the socket
// is blocking, dontwait was not asked for, and the caller is not the lcore
// loop inside its callback.
func (s *socket) mayBlock(dontwait bool) bool {
	return !dontwait && !s.f.nonblock.Load() && !s.t.onLoopGoroutine()
}

// errnoDeadline is returned by wait when the caller's deadline channel
// fired. It is not a Linux errno and never leaves the package: the net.Conn
// adapters turn it into os.ErrDeadlineExceeded.
const errnoDeadline = ^unix.Errno(0)

// wait parks until b is notified, the deadline channel (nil: none) fires,
// or the fd or the table is closed.
func (s *socket) wait(b *blocker, deadline <-chan struct{}) unix.Errno {
	select {
	case <-b.ch:
		return 0
	case <-deadline:
		return errnoDeadline
	case <-s.f.closed():
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
// default somaxconn; UDP sockets fail with EOPNOTSUPP. The listener gives
// its socket-buffer reservation back: it holds no data.
func (t *Sockets) Listen(fd, backlog int) error {
	s, errno := t.socket(fd)
	if errno != 0 {
		return errno
	}
	defer s.f.put()
	if backlog < 0 || backlog > maxBacklog {
		backlog = maxBacklog
	}
	// Linux queues up to backlog+1 connections (sk_acceptq_is_full is
	// "more than backlog"); gVisor's queue is full at its capacity.
	if err := s.ep.Listen(backlog + 1); err != nil {
		return s.errno(err)
	}
	// A listener holds no data: its buffers' reservation goes back.
	if s.stype == unix.SOCK_STREAM {
		s.releaseMem()
	}
	return nil
}

// Accept is accept(2).
func (t *Sockets) Accept(fd int) (int, unix.Sockaddr, error) { return t.Accept4(fd, 0) }

// Accept4 is accept4(2): flags may hold SOCK_NONBLOCK and SOCK_CLOEXEC for
// the new socket, which otherwise does not inherit the listener's
// O_NONBLOCK (as on Linux). With no free descriptor (EMFILE), or when the
// new socket's buffers do not fit under net.inet.tcp.mem_limit (ENOBUFS),
// it fails at once and leaves the connection queued, to be accepted once a
// socket is closed.
func (t *Sockets) Accept4(fd, flags int) (int, unix.Sockaddr, error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return -1, nil, errno
	}
	defer s.f.put()
	nfd, ns, peer, errno := t.accept4(s, flags, nil, false)
	if errno != 0 {
		return -1, nil, errno
	}
	return nfd, ns.peerSockaddr(peer), nil
}

// accept4 accepts a connection on s and installs it. With extraRef the new
// socket gets a second reference, for a net.Conn adapter, before it is
// visible in the table.
func (t *Sockets) accept4(s *socket, flags int, deadline <-chan struct{}, extraRef bool) (int, *socket, tcpip.FullAddress, unix.Errno) {
	var peer tcpip.FullAddress
	if flags&^(unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC) != 0 {
		return -1, nil, peer, unix.EINVAL
	}
	if s.stype != unix.SOCK_STREAM {
		return -1, nil, peer, unix.EOPNOTSUPP
	}
	// Like Linux, find a free descriptor before taking the connection off
	// the queue: with the table full the connection stays queued. Its
	// buffers are reserved before it is taken off the queue too, so that
	// it stays queued (ENOBUFS) while socket memory is short.
	if errno := t.hasFreeFD(); errno != 0 {
		return -1, nil, peer, errno
	}
	mp := t.memParams()
	need := mp.acceptMem(s)
	nep, nwq, errno := s.accept(&peer, deadline, need, mp.limit)
	if errno != 0 {
		return -1, nil, peer, errno
	}
	ns := t.newSocket(s.family, s.stype, s.proto)
	ns.ep, ns.wq = nep, nwq
	ns.adoptMem(need, mp)
	ns.inheritKeepalive(s)
	ns.armKeepalive()
	ns.f.nonblock.Store(flags&unix.SOCK_NONBLOCK != 0)
	ns.f.cloexec.Store(flags&unix.SOCK_CLOEXEC != 0)
	if extraRef {
		ns.f.refs.Add(1)
	}
	nfd, errno := t.install(ns.f)
	if errno != 0 {
		ns.releaseMem()
		nep.Close()
		return -1, nil, peer, errno
	}
	return nfd, ns, peer, 0
}

// accept takes a connection off s's queue, waiting for one unless s may
// not block. Each attempt first reserves need bytes of socket-buffer memory
// (ENOBUFS when they do not fit under limit, the connection staying queued)
// and gives them back when no connection was taken: the caller gets a
// connection with need reserved, and a waiting accept holds no reservation.
func (s *socket) accept(peer *tcpip.FullAddress, deadline <-chan struct{}, need, limit int64) (tcpip.Endpoint, *waiter.Queue, unix.Errno) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	registered := false
	defer func() {
		if registered {
			s.wq.EventUnregister(&s.rwait.entry)
		}
	}()
	for {
		if errno := s.t.takeMem(need, limit); errno != 0 {
			return nil, nil, errno
		}
		// The peer's address is read from the new endpoint rather than
		// through Accept's pointer, which escapes through the interface:
		// an allocation per connection.
		nep, nwq, err := s.ep.Accept(nil)
		if err == nil {
			if peer != nil {
				*peer, _ = nep.GetRemoteAddress()
			}
			return nep, nwq, 0
		}
		s.t.giveMem(need)
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
		if errno := s.wait(&s.rwait, deadline); errno != 0 {
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
	return s.connect(addr, nil)
}

func (s *socket) connect(addr tcpip.FullAddress, deadline <-chan struct{}) error {
	if s.stype != unix.SOCK_STREAM {
		if err := s.ep.Connect(addr); err != nil {
			return s.errno(err)
		}
		return nil
	}
	if tcp.EndpointState(s.ep.State()) == tcp.StateListen {
		// inet_stream_connect: a socket that is not TCP_CLOSE is
		// "connected" as far as connect is concerned.
		return unix.EISCONN
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	block := s.mayBlock(false)
	if block {
		// Register before connecting so the completion cannot be missed.
		s.wwait.register(s.wq, waiter.WritableEvents|waiter.EventHUp|waiter.EventErr)
		defer s.wq.EventUnregister(&s.wwait.entry)
	}
	err := s.t.stack.ConnectTCP(s.ep, addr)
	for {
		switch err.(type) {
		case nil:
			s.armKeepalive()
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
		if errno := s.wait(&s.wwait, deadline); errno != 0 {
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
	n, _, errno := s.recv(p, nil, recvOpts{})
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

// recvFlags are the recv flags this package implements. MSG_NOSIGNAL and
// MSG_CMSG_CLOEXEC have nothing to do here and are accepted. Any other
// flag, MSG_OOB among them (gVisor has no urgent data), is EOPNOTSUPP.
const recvFlags = unix.MSG_DONTWAIT | unix.MSG_PEEK | unix.MSG_TRUNC | unix.MSG_WAITALL | unix.MSG_NOSIGNAL | unix.MSG_CMSG_CLOEXEC

// recvOptsOf turns recv flags into options.
func recvOptsOf(flags int) recvOpts {
	return recvOpts{
		dontwait: flags&unix.MSG_DONTWAIT != 0,
		peek:     flags&unix.MSG_PEEK != 0,
		waitall:  flags&unix.MSG_WAITALL != 0,
	}
}

// RecvFrom is recvfrom(2). flags may hold MSG_DONTWAIT, MSG_PEEK,
// MSG_TRUNC (return a datagram's full length) and MSG_WAITALL. from is nil
// for TCP, as with Go's unix.Recvfrom.
//
// MSG_WAITALL on a blocking TCP socket waits until the buffer is full, as
// Linux's tcp_recvmsg does; it returns less only at end of file, on an
// error or when the fd is closed, and then returns the bytes it has (the
// error is returned only if there are none; a connection error is left
// for the next call). With MSG_PEEK as well it waits in the same way for
// the buffer's length to be queued and copies it without consuming it, as
// Linux does.
// With MSG_DONTWAIT, on a non-blocking socket or on the loop goroutine
// MSG_WAITALL changes nothing. On a UDP socket it is accepted and has no
// effect, as on Linux: a receive returns one datagram.
func (t *Sockets) RecvFrom(fd int, p []byte, flags int) (int, unix.Sockaddr, error) {
	n, _, from, err := t.recvmsg(fd, p, nil, flags)
	return n, from, err
}

// Recv is recv(2): RecvFrom without the sender's address.
func (t *Sockets) Recv(fd int, p []byte, flags int) (int, error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return 0, errno
	}
	defer s.f.put()
	if flags&^recvFlags != 0 {
		return 0, unix.EOPNOTSUPP
	}
	n, total, errno := s.recv(p, nil, recvOptsOf(flags))
	if errno != 0 {
		return n, errno
	}
	if flags&unix.MSG_TRUNC != 0 && s.stype == unix.SOCK_DGRAM {
		n = total
	}
	return n, nil
}

// Readv is readv(2): it fills the buffers of iovs in order, as one read.
func (t *Sockets) Readv(fd int, iovs [][]byte) (int, error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return 0, rwErrno(errno)
	}
	n, _, errno := s.recv(nil, iovs, recvOpts{})
	s.f.put()
	if errno != 0 {
		return n, errno
	}
	return n, nil
}

// RecvMsg is recvmsg(2) without control messages: it reads into the
// buffers of iovs in order and returns the bytes read, the message flags
// (MSG_TRUNC when a datagram was longer than the buffers) and, for datagram
// sockets, the sender. flags are RecvFrom's; with MSG_TRUNC a datagram's
// full length is returned.
func (t *Sockets) RecvMsg(fd int, iovs [][]byte, flags int) (n, recvflags int, from unix.Sockaddr, err error) {
	return t.recvmsg(fd, nil, iovs, flags)
}

func (t *Sockets) recvmsg(fd int, p []byte, iovs [][]byte, flags int) (n, recvflags int, from unix.Sockaddr, err error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return 0, 0, nil, errno
	}
	defer s.f.put()
	if flags&^recvFlags != 0 {
		return 0, 0, nil, unix.EOPNOTSUPP
	}
	o := recvOptsOf(flags)
	var addr tcpip.FullAddress
	if s.stype == unix.SOCK_DGRAM {
		o.from = &addr
	}
	n, total, errno := s.recv(p, iovs, o)
	if errno != 0 {
		return n, 0, nil, errno
	}
	if s.stype == unix.SOCK_DGRAM {
		if total > n {
			recvflags |= unix.MSG_TRUNC
		}
		if flags&unix.MSG_TRUNC != 0 {
			n = total
		}
		return n, recvflags, s.sockaddr(addr), nil
	}
	return n, 0, nil, nil
}

// recvOpts are the options of one receive.
type recvOpts struct {
	dontwait bool               // MSG_DONTWAIT
	peek     bool               // MSG_PEEK
	waitall  bool               // MSG_WAITALL
	from     *tcpip.FullAddress // set to the sender (datagram sockets)
	deadline <-chan struct{}    // a blocked call gives up when it fires
}

// recv reads into p, or into the buffers of iovs when iovs is not nil, and
// returns the bytes read and, for datagrams, the datagram's full length
// (for MSG_TRUNC). With o.waitall a blocking TCP receive goes on until the
// buffers are full (see RecvFrom).
func (s *socket) recv(p []byte, iovs [][]byte, o recvOpts) (n, total int, errno unix.Errno) {
	size := len(p)
	if iovs != nil {
		size = iovLen(iovs)
	}
	if size == 0 && s.stype == unix.SOCK_STREAM {
		// tcp_recvmsg copies nothing and returns 0 at once, except
		// on a listener.
		if tcp.EndpointState(s.ep.State()) == tcp.StateListen {
			return 0, 0, unix.ENOTCONN
		}
		return 0, 0, 0
	}
	s.readMu.Lock()
	defer s.readMu.Unlock()
	if o.waitall && s.stype == unix.SOCK_STREAM && s.mayBlock(o.dontwait) {
		n, errno = s.recvAll(p, iovs, size, o)
		return n, n, errno
	}
	registered := false
	for {
		s.rbuf.reset(p, iovs)
		res, err := s.ep.Read(&s.rbuf, tcpip.ReadOptions{Peek: o.peek, NeedRemoteAddr: o.from != nil})
		s.rbuf.reset(nil, nil)
		errno = 0
		switch err.(type) {
		case nil:
			if o.from != nil {
				*o.from = res.RemoteAddr
			}
		case *tcpip.ErrClosedForReceive:
			// End of file: the peer's FIN, or shutdown(SHUT_RD).
		case *tcpip.ErrBadBuffer:
			// A zero-length buffer for a datagram: Linux consumes the
			// datagram and returns 0.
			if o.from != nil {
				*o.from = res.RemoteAddr
			}
			res.Count = 0
		case *tcpip.ErrWouldBlock:
			errno = unix.EAGAIN
		default:
			errno = s.errno(err)
		}
		if errno != unix.EAGAIN || !s.mayBlock(o.dontwait) {
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
		if errno := s.wait(&s.rwait, o.deadline); errno != 0 {
			s.wq.EventUnregister(&s.rwait.entry)
			return 0, 0, errno
		}
	}
}

// recvAll is a blocking TCP receive with MSG_WAITALL: it reads until the
// size bytes of the buffers are filled, as tcp_recvmsg does with a target
// of the whole length. It stops early at end of file, on an error, or when
// the wait ends (the deadline, or the fd is closed), and then returns what
// it has, or the error if it has nothing. With o.peek every attempt copies
// the queue's head again, until size bytes are queued.
// +checklocks:s.readMu
func (s *socket) recvAll(p []byte, iovs [][]byte, size int, o recvOpts) (int, unix.Errno) {
	registered := false
	defer func() {
		if registered {
			s.wq.EventUnregister(&s.rwait.entry)
		}
	}()
	got := 0
	for {
		if got > 0 && !o.peek && s.pendingError() {
			// Reading now would take the error that ended the
			// connection; Linux leaves it for the next call.
			return got, 0
		}
		s.rbuf.reset(p, iovs)
		if !o.peek {
			s.rbuf.skip(got)
		}
		res, err := s.ep.Read(&s.rbuf, tcpip.ReadOptions{Peek: o.peek})
		s.rbuf.reset(nil, nil)
		switch err.(type) {
		case nil:
			if o.peek {
				got = res.Count
			} else {
				got += res.Count
			}
			if got >= size {
				return got, 0
			}
			// The queue is empty, or, peeking, shorter than size.
			// A peek sees no end of file while data is queued: stop
			// once no more can come.
			if o.peek && s.readDone() {
				return got, 0
			}
		case *tcpip.ErrWouldBlock:
		case *tcpip.ErrClosedForReceive:
			return got, 0 // end of file
		default:
			if got > 0 {
				return got, 0
			}
			return 0, s.errno(err)
		}
		if !registered {
			s.rwait.register(s.wq, waiter.ReadableEvents|waiter.EventRdHUp|waiter.EventHUp|waiter.EventErr)
			registered = true
			continue // retry once registered so no wake-up is lost
		}
		if errno := s.wait(&s.rwait, o.deadline); errno != 0 {
			if got > 0 {
				return got, 0
			}
			return 0, errno
		}
	}
}

// pendingError reports whether a TCP endpoint has failed (a reset, a
// timeout) and holds no more data to read: its next Read returns the error.
func (s *socket) pendingError() bool {
	if tcp.EndpointState(s.ep.State()) != tcp.StateError {
		return false
	}
	v, err := s.ep.GetSockOptInt(tcpip.ReceiveQueueSizeOption)
	return err == nil && v == 0
}

// readDone reports whether no more data can arrive on a TCP endpoint: it
// has the peer's FIN, was shut down for reading, or has failed.
func (s *socket) readDone() bool {
	const done = waiter.EventRdHUp | waiter.EventHUp | waiter.EventErr
	return s.ep.Readiness(waiter.ReadableEvents|done)&done != 0
}

// Write is write(2). On a blocking TCP socket it returns when all of p is
// queued (or an error ends the connection after part of it was).
func (t *Sockets) Write(fd int, p []byte) (int, error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return 0, rwErrno(errno)
	}
	n, errno := s.send(p, nil, sendOpts{})
	s.f.put()
	if errno != 0 {
		return n, errno
	}
	return n, nil
}

// Writev is writev(2): the buffers of iovs are sent in order, as one write
// (one datagram on a UDP socket).
func (t *Sockets) Writev(fd int, iovs [][]byte) (int, error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return 0, rwErrno(errno)
	}
	n, errno := s.send(nil, iovs, sendOpts{})
	s.f.put()
	if errno != 0 {
		return n, errno
	}
	return n, nil
}

// sendFlags are the send flags accepted. MSG_DONTWAIT makes the send
// non-blocking. MSG_MORE on a TCP socket holds the data back until a send
// without MSG_MORE, as Linux does (see SendTo); on a UDP socket it is
// accepted and ignored. MSG_NOSIGNAL is accepted because no signals are
// ever raised. MSG_EOR is accepted and has no effect: Linux's TCP uses it
// only to keep later data out of the last segment, which does not change
// what the peer reads.
const sendFlags = unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL | unix.MSG_MORE | unix.MSG_EOR

// SendTo is sendto(2). to may be nil for a connected socket; TCP ignores it
// as Linux does. flags may hold MSG_DONTWAIT, MSG_MORE, MSG_NOSIGNAL and
// MSG_EOR.
//
// MSG_MORE on a TCP socket corks it, as Linux does: the data waits for more
// to fill a segment, and the next send without MSG_MORE (Write included)
// sends everything held. Held data that no later send releases is sent at
// the latest 200 ms after the socket began to hold it, as with TCP_CORK,
// and shutdown(SHUT_WR) and close send it ahead of their FIN, as on Linux.
// If TCP_CORK is on, MSG_MORE changes nothing; setting TCP_CORK, on or
// off, ends a cork that MSG_MORE began, and getsockopt reports TCP_CORK as
// the application set it. On a UDP socket MSG_MORE is accepted and
// ignored: each send is one datagram, where Linux would append the data to
// a pending datagram that the next send without MSG_MORE completes.
func (t *Sockets) SendTo(fd int, p []byte, flags int, to unix.Sockaddr) (int, error) {
	return t.sendmsg(fd, p, nil, to, flags)
}

// Send is send(2): SendTo without an address.
func (t *Sockets) Send(fd int, p []byte, flags int) (int, error) {
	return t.sendmsg(fd, p, nil, nil, flags)
}

// SendMsg is sendmsg(2) without control messages: the buffers of iovs are
// sent in order as one message, to to (nil on a connected socket).
func (t *Sockets) SendMsg(fd int, iovs [][]byte, to unix.Sockaddr, flags int) (int, error) {
	if iovs == nil {
		iovs = [][]byte{}
	}
	return t.sendmsg(fd, nil, iovs, to, flags)
}

func (t *Sockets) sendmsg(fd int, p []byte, iovs [][]byte, to unix.Sockaddr, flags int) (int, error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return 0, errno
	}
	defer s.f.put()
	if flags&^sendFlags != 0 {
		return 0, unix.EOPNOTSUPP
	}
	o := sendOpts{dontwait: flags&unix.MSG_DONTWAIT != 0, more: flags&unix.MSG_MORE != 0}
	var addr tcpip.FullAddress
	if to != nil && s.stype == unix.SOCK_DGRAM {
		a, errno := s.fullAddress(to, opSendTo)
		if errno != 0 {
			return 0, errno
		}
		addr = a
		o.to = &addr
	}
	n, errno := s.send(p, iovs, o)
	if errno != 0 {
		return n, errno
	}
	return n, nil
}

// sendOpts are the options of one send.
type sendOpts struct {
	dontwait bool               // MSG_DONTWAIT
	more     bool               // MSG_MORE
	to       *tcpip.FullAddress // destination of a datagram
	deadline <-chan struct{}    // a blocked call gives up when it fires
}

// send writes p, or the buffers of iovs when iovs is not nil. On a TCP
// socket o.more corks the socket for this send (cork.go), and a send
// without it that queues data ends such a cork.
func (s *socket) send(p []byte, iovs [][]byte, o sendOpts) (int, unix.Errno) {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.stype != unix.SOCK_STREAM {
		return s.sendLocked(p, iovs, o)
	}
	if o.more {
		s.corkForMore()
	}
	n, errno := s.sendLocked(p, iovs, o)
	if n > 0 {
		// Linux pushes (or, with MSG_MORE, holds) only when the send
		// copied data: a send that queued nothing changes nothing.
		s.sent(o.more)
	}
	return n, errno
}

// sendLocked is send's loop.
// +checklocks:s.writeMu
func (s *socket) sendLocked(p []byte, iovs [][]byte, o sendOpts) (int, unix.Errno) {
	registered := false
	defer func() {
		if registered {
			s.wq.EventUnregister(&s.wwait.entry)
		}
	}()
	size := len(p)
	if iovs != nil {
		size = iovLen(iovs)
	}
	var wo tcpip.WriteOptions
	if o.to != nil {
		s.wto = *o.to
		wo.To = &s.wto
	}
	total := 0
	for {
		s.wbuf.reset(p, iovs, total)
		n, err := s.ep.Write(&s.wbuf, wo)
		s.wbuf.reset(nil, nil, 0)
		total += int(n)
		switch err.(type) {
		case nil:
			if total == size || s.stype != unix.SOCK_STREAM {
				return total, 0
			}
			if !s.mayBlock(o.dontwait) {
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
		if !s.mayBlock(o.dontwait) {
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
		if errno := s.wait(&s.wwait, o.deadline); errno != 0 {
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
	if errno := s.shutdown(how); errno != 0 {
		return errno
	}
	return nil
}

func (s *socket) shutdown(how int) unix.Errno {
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
	if flags&tcpip.ShutdownWrite != 0 && s.stype == unix.SOCK_STREAM {
		// Linux pushes pending data with its FIN; gVisor would
		// hold corked data, and the FIN behind it.
		s.flushForFIN()
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
	return 0
}

// Getsockname is getsockname(2).
func (t *Sockets) Getsockname(fd int) (unix.Sockaddr, error) {
	return t.sockName(fd, tcpip.Endpoint.GetLocalAddress)
}

// Getpeername is getpeername(2): ENOTCONN until connected.
func (t *Sockets) Getpeername(fd int) (unix.Sockaddr, error) {
	return t.sockName(fd, tcpip.Endpoint.GetRemoteAddress)
}

// sockName is the address get reads from fd's endpoint, as a sockaddr.
func (t *Sockets) sockName(fd int, get func(tcpip.Endpoint) (tcpip.FullAddress, tcpip.Error)) (unix.Sockaddr, error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return nil, errno
	}
	defer s.f.put()
	a, err := get(s.ep)
	if err != nil {
		return nil, s.errno(err)
	}
	return s.sockaddr(a), nil
}

func (s *socket) ioctlGetInt(req uint) (int, error) {
	switch req {
	case unix.SIOCINQ, unix.SIOCOUTQ: // == FIONREAD, TIOCOUTQ
		if s.stype == unix.SOCK_STREAM && tcp.EndpointState(s.ep.State()) == tcp.StateListen {
			return 0, unix.EINVAL
		}
		opt := tcpip.ReceiveQueueSizeOption
		if req == unix.SIOCOUTQ {
			opt = tcpip.SendQueueSizeOption
		}
		v, err := s.ep.GetSockOptInt(opt)
		if err != nil {
			return 0, errnoOf(err)
		}
		return v, nil
	}
	return 0, unix.ENOTTY
}
