package main

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/examples/internal/sockapi"
)

// service is what a TCP connection gets.
type service uint8

const (
	echoService    service = iota // RFC 862: every byte comes back
	discardService                // RFC 863: every byte is thrown away
	chargenService                // RFC 864: the pattern, as fast as the socket takes it
)

var serviceNames = [...]string{echoService: "echo", discardService: "discard", chargenService: "chargen"}

func (s service) String() string {
	if int(s) < len(serviceNames) {
		return serviceNames[s]
	}
	return fmt.Sprintf("service(%d)", uint8(s))
}

// role is what a socket of the server is.
type role uint8

const (
	tcpListener role = iota
	udpEcho
	tcpConn
)

const (
	maxEvents = 256
	ioSize    = 64 << 10 // bytes per Read and per chargen Write
	// maxIO bounds the reads or writes one event gets per pass, so that
	// a busy connection cannot keep the loop from the others (epoll is
	// level-triggered: the rest comes on the next pass).
	maxIO = 16
)

// sock is one socket's state. Listeners carry the service their
// connections get.
type sock struct {
	role    role
	svc     service
	pending []byte // echo: bytes read and not yet written back
	off     int    // chargen: position in chargenPattern, < chargenPeriod
	events  uint32 // what epoll watches for it
}

// server serves echo (TCP and UDP), discard and chargen (TCP) on one epoll
// instance with non-blocking sockets, F-Stack style. It allocates per
// connection, never per read or write: reads go to one shared buffer and
// chargen writes from one shared pattern.
type server struct {
	*sockapi.Poller
	socks map[int]*sock
	buf   []byte
}

func newServer(api sockets, waitMs int) (*server, error) {
	p, err := sockapi.NewPoller(api, maxEvents, waitMs)
	if err != nil {
		return nil, err
	}
	return &server{Poller: p, socks: make(map[int]*sock), buf: make([]byte, ioSize)}, nil
}

// listenTCP opens svc's listening sockets on port, IPv4 and IPv6.
func (s *server) listenTCP(port int, svc service, backlog int) error {
	for _, sa := range []unix.Sockaddr{&unix.SockaddrInet4{Port: port}, &unix.SockaddrInet6{Port: port}} {
		if _, err := s.listenTCPAt(sa, svc, backlog); err != nil {
			return fmt.Errorf("%v on TCP port %d: %w", svc, port, err)
		}
	}
	return nil
}

// listenTCPAt opens one listening socket of svc on sa and returns it.
func (s *server) listenTCPAt(sa unix.Sockaddr, svc service, backlog int) (int, error) {
	fd, err := s.Listen(sa, backlog)
	if err != nil {
		return -1, err
	}
	s.socks[fd] = &sock{role: tcpListener, svc: svc, events: unix.EPOLLIN}
	return fd, nil
}

// listenUDP opens the UDP echo sockets on port, IPv4 and IPv6.
func (s *server) listenUDP(port int) error {
	for _, sa := range []unix.Sockaddr{&unix.SockaddrInet4{Port: port}, &unix.SockaddrInet6{Port: port}} {
		fd, err := sockapi.Open(s.API, sa, unix.SOCK_DGRAM, 0)
		if err != nil {
			return fmt.Errorf("echo on UDP port %d: %w", port, err)
		}
		if err := s.add(fd, &sock{role: udpEcho, events: unix.EPOLLIN}); err != nil {
			return err
		}
	}
	return nil
}

func (s *server) add(fd int, k *sock) error {
	if err := s.Add(fd, k.events); err != nil {
		return err
	}
	s.socks[fd] = k
	return nil
}

// watch makes epoll watch fd for events, if it does not already.
func (s *server) watch(fd int, k *sock, events uint32) {
	if k.events == events {
		return
	}
	if s.Modify(fd, events) == nil {
		k.events = events
	}
}

func (s *server) close(fd int) {
	delete(s.socks, fd)
	s.CloseFD(fd)
}

// poll handles the events that are ready; it is the loop callback.
func (s *server) poll() error { return s.Pass(s.ready) }

// ready serves one socket that epoll reports ready.
func (s *server) ready(fd int, events uint32) {
	k := s.socks[fd]
	switch {
	case k == nil:
	case k.role == tcpListener:
		if !s.Acc.Paused() {
			s.accept(fd, k.svc)
		}
	case k.role == udpEcho:
		s.echoUDP(fd)
	case k.svc == echoService:
		s.echo(fd, k)
	case k.svc == discardService:
		s.discard(fd)
	case k.svc == chargenService:
		s.chargen(fd, k, events)
	}
}

// connEvents are the events a new connection of svc waits for: chargen
// writes whenever the socket has room.
func connEvents(svc service) uint32 {
	if svc == chargenService {
		return unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP
	}
	return unix.EPOLLIN | unix.EPOLLRDHUP
}

func (s *server) accept(lfd int, svc service) {
	for {
		fd, ok := s.Acc.Accept(lfd)
		if !ok {
			return
		}
		s.add(fd, &sock{role: tcpConn, svc: svc, events: connEvents(svc)})
	}
}

func (s *server) echoUDP(fd int) {
	for range maxIO {
		n, from, err := s.API.RecvFrom(fd, s.buf, 0)
		if err != nil {
			return
		}
		s.API.SendTo(fd, s.buf[:n], 0, from)
	}
}

// echo writes back what is pending, then reads more while the socket takes
// it. A client that does not read gets no more bytes read from it (the
// server never buffers more than one read per connection).
func (s *server) echo(fd int, k *sock) {
	for range maxIO {
		if len(k.pending) > 0 {
			n, err := s.API.Write(fd, k.pending)
			if n > 0 {
				k.pending = k.pending[n:]
			}
			if errors.Is(err, unix.EAGAIN) || (err == nil && len(k.pending) > 0) {
				s.watch(fd, k, unix.EPOLLOUT|unix.EPOLLRDHUP)
				return
			}
			if err != nil {
				s.close(fd)
				return
			}
		}
		n, err := s.API.Read(fd, s.buf)
		if n > 0 {
			k.pending = append(k.pending[:0], s.buf[:n]...)
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			s.watch(fd, k, unix.EPOLLIN|unix.EPOLLRDHUP)
			return
		}
		// EOF: everything read has been written back; close our side.
		s.close(fd)
		return
	}
	// maxIO reached: come back on the next pass for whatever is left.
	if len(k.pending) > 0 {
		s.watch(fd, k, unix.EPOLLOUT|unix.EPOLLRDHUP)
	} else {
		s.watch(fd, k, unix.EPOLLIN|unix.EPOLLRDHUP)
	}
}

// discard reads and forgets. It closes on EOF or an error.
func (s *server) discard(fd int) {
	for range maxIO {
		n, err := s.API.Read(fd, s.buf)
		if n > 0 {
			continue
		}
		if !errors.Is(err, unix.EAGAIN) {
			s.close(fd)
		}
		return
	}
}

// chargen throws away what the client sends and writes the pattern while
// the socket takes it, until the client closes (EOF on read, or a reset
// that fails the write).
func (s *server) chargen(fd int, k *sock, events uint32) {
	if events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		for range maxIO {
			n, err := s.API.Read(fd, s.buf)
			if n > 0 {
				continue
			}
			if errors.Is(err, unix.EAGAIN) {
				break
			}
			s.close(fd)
			return
		}
	}
	for range maxIO {
		n, err := s.API.Write(fd, chargenPattern[k.off:k.off+ioSize])
		if n > 0 {
			k.off = (k.off + n) % chargenPeriod
		}
		if errors.Is(err, unix.EAGAIN) {
			return
		}
		if err != nil {
			s.close(fd)
			return
		}
	}
}

// RFC 864's pattern: lines of 72 printable ASCII characters (32..126) and
// CR LF, each line starting one character further along, so that it
// repeats after 95 lines.
const (
	chargenLine   = 72
	chargenPeriod = 95 * (chargenLine + 2)
)

// chargenPattern holds the pattern from every offset below chargenPeriod
// for at least ioSize bytes: a write of ioSize bytes from any position is
// one slice of it.
var chargenPattern = func() []byte {
	b := make([]byte, 0, chargenPeriod+ioSize+chargenPeriod)
	for len(b) < chargenPeriod+ioSize {
		for l := range 95 {
			for i := range chargenLine {
				b = append(b, byte(' '+(l+i)%95))
			}
			b = append(b, '\r', '\n')
		}
	}
	return b
}()
