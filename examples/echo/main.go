// Command echo is a TCP and UDP echo server on xstack: every byte a TCP
// client sends comes back on the same connection, and every UDP datagram
// goes back to its sender. It is written in the F-Stack style: non-blocking
// sockets and one epoll instance, polled from the lcore loop.
//
//	echo -c config.ini [-port 7]
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/posix"
)

type conn struct {
	pending []byte // bytes read and not yet written back
}

type server struct {
	epfd   int
	tcp    []int // listening sockets
	udp    []int // datagram sockets
	conns  map[int]*conn
	events []unix.EpollEvent
	buf    []byte
}

func main() {
	var opts posix.Options
	opts.RegisterFlags(flag.CommandLine)
	port := flag.Int("port", 7, "TCP and UDP port")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("echo: ")
	if err := posix.InitWith(opts); err != nil {
		log.Fatal(err)
	}
	s := &server{conns: make(map[int]*conn), events: make([]unix.EpollEvent, 256), buf: make([]byte, 65536)}
	if err := s.open(*port); err != nil {
		posix.Teardown()
		log.Fatal(err)
	}
	log.Printf("echoing TCP and UDP on port %d (IPv4 and IPv6)", *port)
	if err := posix.Run(s.poll); err != nil {
		log.Fatal(err)
	}
}

func (s *server) open(port int) error {
	var err error
	if s.epfd, err = posix.EpollCreate(0); err != nil {
		return err
	}
	for _, sa := range []unix.Sockaddr{&unix.SockaddrInet4{Port: port}, &unix.SockaddrInet6{Port: port}} {
		for _, typ := range []int{unix.SOCK_STREAM, unix.SOCK_DGRAM} {
			fd, err := listen(sa, typ)
			if err != nil {
				return err
			}
			if err := posix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
				return err
			}
			if typ == unix.SOCK_STREAM {
				s.tcp = append(s.tcp, fd)
			} else {
				s.udp = append(s.udp, fd)
			}
		}
	}
	return nil
}

func listen(sa unix.Sockaddr, typ int) (int, error) {
	domain := unix.AF_INET
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		domain = unix.AF_INET6
	}
	fd, err := posix.Socket(domain, typ|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, err
	}
	if domain == unix.AF_INET6 {
		if err := posix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return -1, err
		}
	}
	if err := posix.Bind(fd, sa); err != nil {
		return -1, fmt.Errorf("bind %v: %w", sa, err)
	}
	if typ == unix.SOCK_STREAM {
		if err := posix.Listen(fd, 1024); err != nil {
			return -1, err
		}
	}
	return fd, nil
}

func contains(fds []int, fd int) bool {
	for _, f := range fds {
		if f == fd {
			return true
		}
	}
	return false
}

func (s *server) poll() error {
	n, err := posix.EpollWait(s.epfd, s.events, 0)
	if err != nil {
		return err
	}
	for _, ev := range s.events[:n] {
		fd := int(ev.Fd)
		switch {
		case contains(s.tcp, fd):
			s.accept(fd)
		case contains(s.udp, fd):
			s.echoUDP(fd)
		default:
			s.echoTCP(fd, ev.Events)
		}
	}
	return nil
}

func (s *server) accept(lfd int) {
	for {
		fd, _, err := posix.Accept4(lfd, unix.SOCK_NONBLOCK)
		if err != nil {
			return
		}
		if err := posix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}); err != nil {
			posix.Close(fd)
			continue
		}
		s.conns[fd] = &conn{}
	}
}

func (s *server) echoUDP(fd int) {
	for {
		n, from, err := posix.RecvFrom(fd, s.buf, 0)
		if err != nil {
			return
		}
		posix.SendTo(fd, s.buf[:n], 0, from)
	}
}

func (s *server) close(fd int) {
	delete(s.conns, fd)
	posix.Close(fd)
}

// echoTCP writes back what is pending, then reads more while the socket
// takes it. A client that does not read gets no more bytes read from it
// (the echo server never buffers more than one read).
func (s *server) echoTCP(fd int, events uint32) {
	c := s.conns[fd]
	if c == nil {
		return
	}
	for {
		if len(c.pending) > 0 {
			n, err := posix.Write(fd, c.pending)
			if n > 0 {
				c.pending = c.pending[n:]
			}
			if errors.Is(err, unix.EAGAIN) || (err == nil && len(c.pending) > 0) {
				posix.EpollCtl(s.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLRDHUP, Fd: int32(fd)})
				return
			}
			if err != nil {
				s.close(fd)
				return
			}
		}
		n, err := posix.Read(fd, s.buf)
		if n > 0 {
			c.pending = append(c.pending[:0], s.buf[:n]...)
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			posix.EpollCtl(s.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)})
			return
		}
		// EOF: everything read has been written back; close our side.
		s.close(fd)
		return
	}
}
