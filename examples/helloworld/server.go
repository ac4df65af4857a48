package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// sockets is the socket API the server needs. xstack's posix package and
// the kernel (golang.org/x/sys/unix) both provide it, so the same server
// logic runs on either stack.
type sockets interface {
	Socket(domain, typ, proto int) (int, error)
	SetsockoptInt(fd, level, opt, value int) error
	Bind(fd int, sa unix.Sockaddr) error
	Listen(fd, backlog int) error
	Accept4(fd, flags int) (int, unix.Sockaddr, error)
	Read(fd int, p []byte) (int, error)
	Write(fd int, p []byte) (int, error)
	Close(fd int) error
	EpollCreate1(flags int) (int, error)
	EpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error
	EpollWait(epfd int, events []unix.EpollEvent, msec int) (int, error)
}

// page is the body every request gets.
const page = "<!DOCTYPE html>\r\n<html>\r\n<head><title>xstack</title></head>\r\n" +
	"<body>\r\n<h1>Hello from xstack</h1>\r\n" +
	"<p>This page was served by a userspace TCP/IP stack over AF_XDP.</p>\r\n" +
	"</body>\r\n</html>\r\n"

var (
	respKeepAlive = []byte("HTTP/1.1 200 OK\r\nServer: xstack\r\nContent-Type: text/html\r\nContent-Length: " +
		strconv.Itoa(len(page)) + "\r\nConnection: keep-alive\r\n\r\n" + page)
	respClose = []byte("HTTP/1.1 200 OK\r\nServer: xstack\r\nContent-Type: text/html\r\nContent-Length: " +
		strconv.Itoa(len(page)) + "\r\nConnection: close\r\n\r\n" + page)
	respBad = []byte("HTTP/1.1 400 Bad Request\r\nServer: xstack\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
)

const (
	maxEvents  = 512
	maxRequest = 8192 // a request head larger than this gets 400
)

// conn is one client connection's state.
type conn struct {
	in      []byte // received bytes not yet parsed
	out     []byte // response bytes not yet written
	closing bool   // close once out is written
	body    int    // request body bytes still to skip
}

// server is F-Stack's helloworld in Go: one epoll instance, non-blocking
// sockets, every request answered with the same page.
type server struct {
	api       sockets
	epfd      int
	listeners []int
	conns     []*conn // by fd
	free      []*conn
	events    []unix.EpollEvent
	buf       []byte
	waitMs    int // EpollWait timeout: 0 inside the xstack loop
	requests  uint64
}

func newServer(api sockets, waitMs int) (*server, error) {
	epfd, err := api.EpollCreate1(0)
	if err != nil {
		return nil, err
	}
	return &server{api: api, epfd: epfd, events: make([]unix.EpollEvent, maxEvents), buf: make([]byte, 16384), waitMs: waitMs}, nil
}

// listen opens a non-blocking listening socket on sa.
func (s *server) listen(sa unix.Sockaddr, backlog int) error {
	domain := unix.AF_INET
	if _, ok := sa.(*unix.SockaddrInet6); ok {
		domain = unix.AF_INET6
	}
	fd, err := s.api.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return err
	}
	if err := s.api.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		s.api.Close(fd)
		return err
	}
	if domain == unix.AF_INET6 {
		if err := s.api.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			s.api.Close(fd)
			return err
		}
	}
	if err := s.api.Bind(fd, sa); err != nil {
		s.api.Close(fd)
		return err
	}
	if err := s.api.Listen(fd, backlog); err != nil {
		s.api.Close(fd)
		return err
	}
	if err := s.api.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
		s.api.Close(fd)
		return err
	}
	s.listeners = append(s.listeners, fd)
	return nil
}

// listenAll listens on port over IPv4 and IPv6.
func (s *server) listenAll(port, backlog int) error {
	if err := s.listen(&unix.SockaddrInet4{Port: port}, backlog); err != nil {
		return fmt.Errorf("listen on IPv4 port %d: %w", port, err)
	}
	if err := s.listen(&unix.SockaddrInet6{Port: port}, backlog); err != nil {
		return fmt.Errorf("listen on IPv6 port %d: %w", port, err)
	}
	return nil
}

func (s *server) isListener(fd int) bool {
	for _, l := range s.listeners {
		if l == fd {
			return true
		}
	}
	return false
}

// poll handles the events that are ready; it is the loop callback.
func (s *server) poll() error {
	n, err := s.api.EpollWait(s.epfd, s.events, s.waitMs)
	if err != nil {
		if errors.Is(err, unix.EINTR) {
			return nil
		}
		return err
	}
	for i := 0; i < n; i++ {
		ev := s.events[i]
		fd := int(ev.Fd)
		if s.isListener(fd) {
			s.accept(fd)
			continue
		}
		c := s.get(fd)
		if c == nil {
			continue
		}
		if ev.Events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 && ev.Events&unix.EPOLLIN == 0 {
			s.close(fd)
			continue
		}
		if ev.Events&unix.EPOLLOUT != 0 && len(c.out) > 0 {
			if !s.flush(fd, c) {
				continue
			}
		}
		if ev.Events&unix.EPOLLIN != 0 {
			s.read(fd, c)
		}
	}
	return nil
}

func (s *server) accept(lfd int) {
	for {
		fd, _, err := s.api.Accept4(lfd, unix.SOCK_NONBLOCK)
		if err != nil {
			return // EAGAIN: backlog drained; anything else: retry on the next event
		}
		if err := s.api.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			s.api.Close(fd)
			continue
		}
		s.put(fd)
	}
}

func (s *server) get(fd int) *conn {
	if fd < 0 || fd >= len(s.conns) {
		return nil
	}
	return s.conns[fd]
}

func (s *server) put(fd int) {
	for fd >= len(s.conns) {
		s.conns = append(s.conns, nil)
	}
	var c *conn
	if n := len(s.free); n > 0 {
		c = s.free[n-1]
		s.free = s.free[:n-1]
	} else {
		c = &conn{in: make([]byte, 0, 4096), out: make([]byte, 0, 4096)}
	}
	s.conns[fd] = c
}

func (s *server) close(fd int) {
	if c := s.get(fd); c != nil {
		s.conns[fd] = nil
		c.in, c.out, c.closing, c.body = c.in[:0], c.out[:0], false, 0
		s.free = append(s.free, c)
	}
	s.api.Close(fd) // closing removes it from the epoll set
}

// read drains the socket, answers every complete request, and writes.
func (s *server) read(fd int, c *conn) {
	for {
		n, err := s.api.Read(fd, s.buf)
		if n > 0 {
			c.in = append(c.in, s.buf[:n]...)
			s.handle(c)
			if c.closing || len(c.in) > maxRequest {
				break
			}
			continue
		}
		if err != nil && errors.Is(err, unix.EAGAIN) {
			break
		}
		// EOF or a hard error: the client is gone.
		if len(c.out) > 0 && err == nil {
			c.closing = true // half-closed client: answer, then close
			break
		}
		s.close(fd)
		return
	}
	if len(c.in) > maxRequest {
		c.in = c.in[:0]
		c.out = append(c.out, respBad...)
		c.closing = true
	}
	s.flush(fd, c)
}

// handle turns complete requests in c.in into responses in c.out.
func (s *server) handle(c *conn) {
	for !c.closing {
		if c.body > 0 {
			k := min(c.body, len(c.in))
			c.body -= k
			c.in = c.in[:copy(c.in, c.in[k:])]
			if c.body > 0 {
				return
			}
		}
		end := bytes.Index(c.in, []byte("\r\n\r\n"))
		if end < 0 {
			return
		}
		head := c.in[:end+2]
		keep, body, ok := parseHead(head)
		c.in = c.in[:copy(c.in, c.in[end+4:])]
		s.requests++
		switch {
		case !ok:
			c.out = append(c.out, respBad...)
			c.closing = true
		case keep:
			c.out = append(c.out, respKeepAlive...)
			c.body = body
		default:
			c.out = append(c.out, respClose...)
			c.closing = true
		}
	}
}

// flush writes c.out; it reports false if the connection was closed.
func (s *server) flush(fd int, c *conn) bool {
	for len(c.out) > 0 {
		n, err := s.api.Write(fd, c.out)
		if n > 0 {
			c.out = c.out[:copy(c.out, c.out[n:])]
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			s.api.EpollCtl(s.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT, Fd: int32(fd)})
			return true
		}
		s.close(fd)
		return false
	}
	if c.closing {
		s.close(fd)
		return false
	}
	return true
}

// parseHead checks a request head (request line and headers, ending in
// CRLF) and reports whether the connection stays open after the response
// and how many body bytes follow.
func parseHead(h []byte) (keepAlive bool, body int, ok bool) {
	eol := bytes.Index(h, []byte("\r\n"))
	line := h[:eol]
	sp1 := bytes.IndexByte(line, ' ')
	sp2 := bytes.LastIndexByte(line, ' ')
	if sp1 <= 0 || sp2 <= sp1+1 {
		return false, 0, false
	}
	proto := line[sp2+1:]
	switch string(proto) {
	case "HTTP/1.1":
		keepAlive = true
	case "HTTP/1.0":
		keepAlive = false
	default:
		return false, 0, false
	}
	rest := h[eol+2:]
	for len(rest) > 0 {
		i := bytes.Index(rest, []byte("\r\n"))
		hl := rest[:i]
		rest = rest[i+2:]
		colon := bytes.IndexByte(hl, ':')
		if colon <= 0 {
			return false, 0, false
		}
		name := hl[:colon]
		val := bytes.TrimSpace(hl[colon+1:])
		switch {
		case bytes.EqualFold(name, []byte("Connection")):
			if containsToken(val, "close") {
				keepAlive = false
			} else if containsToken(val, "keep-alive") {
				keepAlive = true
			}
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, err := strconv.Atoi(string(val))
			if err != nil || n < 0 {
				return false, 0, false
			}
			body = n
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return false, 0, false // chunked request bodies are not served
		}
	}
	return keepAlive, body, true
}

func containsToken(v []byte, tok string) bool {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var t []byte
		if i < 0 {
			t, v = v, nil
		} else {
			t, v = v[:i], v[i+1:]
		}
		if bytes.EqualFold(bytes.TrimSpace(t), []byte(tok)) {
			return true
		}
	}
	return false
}
