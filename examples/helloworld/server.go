package main

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/examples/internal/sockapi"
)

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
	// maxOut bounds the responses a connection may have waiting: a
	// client that pipelines requests and does not read its responses
	// is not read from until they have been written, so that it holds
	// at most this much of the server's memory (and the socket buffers).
	maxOut = 64 << 10
)

// conn is one client connection's state.
type conn struct {
	in      []byte // received bytes not yet parsed
	out     []byte // response bytes not yet written
	closing bool   // close once out is written
	body    int    // request body bytes still to skip
	fd      int
	events  uint32 // what epoll watches for it

	// The header timer: while the connection owes the rest of a request
	// (from accept, and from the first byte of each later request until
	// its head and body are in), it sits on the server's timer list with
	// the time its request must be complete by.
	armed      bool
	deadline   time.Duration // since server.start
	prev, next *conn         // timer list links
}

// server is F-Stack's helloworld in Go: one epoll instance, non-blocking
// sockets, every request answered with the same page.
type server struct {
	*sockapi.Poller
	conns    []*conn // by fd
	free     []*conn
	buf      []byte
	requests uint64

	// headerTimeout closes a connection that has not sent a whole
	// request within it (slowloris); 0 disables it. timers is the list
	// of armed connections, earliest deadline first: every deadline is
	// now+headerTimeout when set, so appending keeps the order and
	// arming, disarming and expiring cost O(1) without allocating.
	headerTimeout time.Duration
	start         time.Time
	timerHead     *conn
	timerTail     *conn
	timedOut      uint64 // connections closed by the header timeout
}

func newServer(api sockets, waitMs int) (*server, error) {
	p, err := sockapi.NewPoller(api, maxEvents, waitMs)
	if err != nil {
		return nil, err
	}
	return &server{Poller: p, buf: make([]byte, 16384), start: time.Now()}, nil
}

// now is the time since the server started (monotonic).
func (s *server) now() time.Duration { return time.Since(s.start) }

// arm (re)starts c's header timer.
func (s *server) arm(c *conn) {
	if s.headerTimeout <= 0 {
		return
	}
	s.disarm(c)
	c.armed, c.deadline = true, s.now()+s.headerTimeout
	c.prev = s.timerTail
	if s.timerTail != nil {
		s.timerTail.next = c
	} else {
		s.timerHead = c
	}
	s.timerTail = c
}

// disarm stops c's header timer.
func (s *server) disarm(c *conn) {
	if !c.armed {
		return
	}
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		s.timerHead = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		s.timerTail = c.prev
	}
	c.armed, c.prev, c.next = false, nil, nil
}

// expire closes the connections whose header timer has run out.
func (s *server) expire() {
	if s.timerHead == nil {
		return
	}
	now := s.now()
	for c := s.timerHead; c != nil && c.deadline <= now; c = s.timerHead {
		s.timedOut++
		s.close(c.fd) // disarms c
	}
}

// listenAll listens on port over IPv4 and IPv6.
func (s *server) listenAll(port, backlog int) error {
	if _, err := s.Listen(&unix.SockaddrInet4{Port: port}, backlog); err != nil {
		return fmt.Errorf("listen on IPv4 port %d: %w", port, err)
	}
	if _, err := s.Listen(&unix.SockaddrInet6{Port: port}, backlog); err != nil {
		return fmt.Errorf("listen on IPv6 port %d: %w", port, err)
	}
	return nil
}

// poll handles the events that are ready and closes the connections
// whose header timer has run out; it is the loop callback.
func (s *server) poll() error {
	if err := s.Pass(s.ready); err != nil {
		return err
	}
	s.expire()
	return nil
}

// ready serves one socket that epoll reports ready.
func (s *server) ready(fd int, events uint32) {
	if s.Acc.IsListener(fd) {
		if !s.Acc.Paused() {
			s.accept(fd)
		}
		return
	}
	c := s.get(fd)
	if c == nil {
		return
	}
	if events&(unix.EPOLLERR|unix.EPOLLHUP) != 0 && events&unix.EPOLLIN == 0 {
		s.close(fd)
		return
	}
	if events&unix.EPOLLOUT != 0 && len(c.out) > 0 {
		if !s.flush(fd, c) {
			return
		}
	}
	if events&unix.EPOLLIN != 0 {
		s.read(fd, c)
	}
}

func (s *server) accept(lfd int) {
	for {
		fd, ok := s.Acc.Accept(lfd)
		if !ok {
			return
		}
		if err := s.Add(fd, unix.EPOLLIN); err != nil {
			continue
		}
		c := s.put(fd)
		c.fd, c.events = fd, unix.EPOLLIN
		s.arm(c) // the first request must arrive in time too
	}
}

func (s *server) get(fd int) *conn {
	if fd < 0 || fd >= len(s.conns) {
		return nil
	}
	return s.conns[fd]
}

func (s *server) put(fd int) *conn {
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
	return c
}

func (s *server) close(fd int) {
	if c := s.get(fd); c != nil {
		s.disarm(c)
		s.conns[fd] = nil
		c.in, c.out, c.closing, c.body = c.in[:0], c.out[:0], false, 0
		s.free = append(s.free, c)
	}
	s.CloseFD(fd)
}

// read drains the socket, answers every complete request, and writes.
// It stops reading while maxOut bytes of responses wait to be written.
func (s *server) read(fd int, c *conn) {
	for {
		n, err := s.API.Read(fd, s.buf)
		if n > 0 {
			c.in = append(c.in, s.buf[:n]...)
			before := s.requests
			s.handle(c)
			switch {
			case len(c.in) == 0 && c.body == 0:
				s.disarm(c) // between requests
			case !c.armed || s.requests != before:
				s.arm(c) // a new request has begun
			}
			if c.closing || len(c.in) > maxRequest || len(c.out) >= maxOut {
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
		n, err := s.API.Write(fd, c.out)
		if n > 0 {
			c.out = c.out[:copy(c.out, c.out[n:])]
			continue
		}
		if errors.Is(err, unix.EAGAIN) {
			s.watch(fd, c)
			return true
		}
		s.close(fd)
		return false
	}
	if c.closing {
		s.close(fd)
		return false
	}
	s.watch(fd, c)
	return true
}

// watch makes epoll report what c waits for: EPOLLOUT while responses
// wait to be written, EPOLLIN unless maxOut bytes of them do.
func (s *server) watch(fd int, c *conn) {
	var ev uint32 = unix.EPOLLIN
	if len(c.out) >= maxOut {
		ev = 0
	}
	if len(c.out) > 0 {
		ev |= unix.EPOLLOUT
	}
	if ev != c.events {
		c.events = ev
		s.Modify(fd, ev)
	}
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
