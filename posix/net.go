package posix

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// The net adapters: net.Listener, net.Conn and net.PacketConn values over
// sockets of a Sockets table, so that net/http, bufio and io.Copy run on
// the stack unchanged. Their calls block, as Go's own do, and honour
// deadlines; they must not be made on the lcore loop goroutine inside its
// callback, where they fail with ErrLoopBlocking instead of stalling the
// stack. Errors are *net.OpError values that wrap net.ErrClosed after
// Close, os.ErrDeadlineExceeded when a deadline passes, and otherwise an
// *os.SyscallError holding the unix.Errno, so errors.Is works against all
// three.

// ErrLoopBlocking is the error of an adapter call that would have to wait
// while made on the lcore loop goroutine inside its callback (or on a
// socket someone set O_NONBLOCK on): waiting there would stall the stack.
var ErrLoopBlocking = errors.New("posix: blocking net call on the lcore loop goroutine; use non-blocking posix calls in the loop callback, or call from another goroutine")

var (
	_ net.Listener   = (*TCPListener)(nil)
	_ net.Conn       = (*TCPConn)(nil)
	_ net.Conn       = (*UDPConn)(nil)
	_ net.PacketConn = (*UDPConn)(nil)
)

// deadline is one direction's deadline as a channel that is closed when it
// passes, so that a blocked call can select on it and a new deadline set
// while it waits takes effect at once.
type deadline struct {
	mu sync.Mutex
	// +checklocks:mu
	timer *time.Timer
	// ch is closed when the deadline passes; it is replaced when a new
	// deadline is set after that.
	// +checklocks:mu
	ch chan struct{}
}

func (d *deadline) channel() <-chan struct{} {
	d.mu.Lock()
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	ch := d.ch
	d.mu.Unlock()
	return ch
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	if d.timer != nil && !d.timer.Stop() {
		// The timer has fired or is firing: its channel is (about to
		// be) closed, so calls from now on need a fresh one.
		d.ch = make(chan struct{})
	}
	d.timer = nil
	select {
	case <-d.ch:
		d.ch = make(chan struct{}) // closed by an earlier past deadline
	default:
	}
	if t.IsZero() {
		return
	}
	left := time.Until(t)
	if left <= 0 {
		close(d.ch)
		return
	}
	ch := d.ch // the timer closes this one even if d.ch is replaced later
	d.timer = time.AfterFunc(left, func() { close(ch) })
}

func (d *deadline) stop() {
	d.mu.Lock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.mu.Unlock()
}

// expired reports whether ch, which fires by being closed (a deadline, a
// table's done channel), has fired.
func expired(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// sockConn is what the adapters share: a socket held by reference (not by
// fd, which may be reused once closed), the fd it was installed at, its
// addresses and deadlines.
type sockConn struct {
	t      *Sockets
	fd     int
	s      *socket
	netw   string
	laddr  net.Addr
	raddr  net.Addr
	closed atomic.Bool
	once   sync.Once
	rd, wd deadline
}

// init makes c hold s, which must carry a reference for c.
func (c *sockConn) init(t *Sockets, fd int, s *socket, netw string) {
	c.t, c.fd, c.s, c.netw = t, fd, s, netw
	if a, err := s.ep.GetLocalAddress(); err == nil {
		c.laddr = s.netAddr(a)
	}
	if a, err := s.ep.GetRemoteAddress(); err == nil {
		c.raddr = s.netAddr(a)
	}
}

// acquire takes a reference for one call; false once closed.
func (c *sockConn) acquire() bool {
	return !c.closed.Load() && c.s.f.tryGet()
}

// FD returns the socket's descriptor in its table, for the posix calls
// (setsockopt, epoll...). Closing it directly leaves the adapter failing
// with EBADF; Close the adapter instead.
func (c *sockConn) FD() int { return c.fd }

// LocalAddr implements net.Conn.
func (c *sockConn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr implements net.Conn.
func (c *sockConn) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline implements net.Conn.
func (c *sockConn) SetDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.opError("set", net.ErrClosed)
	}
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

// SetReadDeadline implements net.Conn.
func (c *sockConn) SetReadDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.opError("set", net.ErrClosed)
	}
	c.rd.set(t)
	return nil
}

// SetWriteDeadline implements net.Conn.
func (c *sockConn) SetWriteDeadline(t time.Time) error {
	if c.closed.Load() {
		return c.opError("set", net.ErrClosed)
	}
	c.wd.set(t)
	return nil
}

// Close implements net.Conn: it closes the descriptor, waking blocked calls
// (they return net.ErrClosed), and the endpoint once no call uses it.
func (c *sockConn) Close() error {
	first := false
	c.once.Do(func() {
		first = true
		c.closed.Store(true)
		c.rd.stop()
		c.wd.stop()
		c.t.closeFile(c.fd, c.s.f)
		c.s.f.put()
	})
	if !first {
		return c.opError("close", net.ErrClosed)
	}
	return nil
}

// opError wraps err as Go's net package does.
func (c *sockConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: c.netw, Source: c.laddr, Addr: c.raddr, Err: err}
}

// fail converts an errno from a socket call into the adapter's error.
func (c *sockConn) fail(op string, errno unix.Errno) error {
	switch {
	case c.closed.Load() || (errno == unix.EBADF && c.t.isClosed()):
		return c.opError(op, net.ErrClosed)
	case errno == errnoDeadline:
		return c.opError(op, os.ErrDeadlineExceeded)
	case errno == unix.EAGAIN || errno == unix.EINPROGRESS:
		return c.opError(op, ErrLoopBlocking)
	case errno == unix.ENOBUFS && op == "accept":
		// The connection stays queued until socket memory is back:
		// a temporary failure, so that accept loops (net/http's
		// Server.Serve) back off and accept again instead of giving
		// up. unix.Errno says EMFILE is temporary, but not ENOBUFS.
		return c.opError(op, temporaryError{os.NewSyscallError(op, errno)})
	}
	return c.opError(op, os.NewSyscallError(op, errno))
}

// temporaryError marks an error as temporary for net.Error's Temporary,
// which accept loops still ask; errors.Is and errors.As see through it.
type temporaryError struct{ err error }

func (e temporaryError) Error() string   { return e.err.Error() }
func (e temporaryError) Unwrap() error   { return e.err }
func (e temporaryError) Temporary() bool { return true }
func (e temporaryError) Timeout() bool   { return false }

// read is Read for both protocols; it makes no allocation unless it fails.
func (c *sockConn) read(b []byte) (int, error) {
	if !c.acquire() {
		return 0, c.opError("read", net.ErrClosed)
	}
	defer c.s.f.put()
	dl := c.rd.channel()
	if expired(dl) {
		return 0, c.opError("read", os.ErrDeadlineExceeded)
	}
	n, _, errno := c.s.recv(b, nil, recvOpts{deadline: dl})
	if errno != 0 {
		return n, c.fail("read", errno)
	}
	if n == 0 && len(b) > 0 && c.s.stype == unix.SOCK_STREAM {
		return 0, io.EOF
	}
	return n, nil
}

// write is Write for both protocols: a stream takes all of b or fails.
func (c *sockConn) write(b []byte, to *tcpip.FullAddress) (int, error) {
	if !c.acquire() {
		return 0, c.opError("write", net.ErrClosed)
	}
	defer c.s.f.put()
	dl := c.wd.channel()
	total := 0
	for {
		if expired(dl) {
			return total, c.opError("write", os.ErrDeadlineExceeded)
		}
		n, errno := c.s.send(b[total:], nil, sendOpts{to: to, deadline: dl})
		total += n
		if errno != 0 {
			return total, c.fail("write", errno)
		}
		if total == len(b) || c.s.stype != unix.SOCK_STREAM {
			return total, nil
		}
	}
}

// TCPConn is a net.Conn over a TCP socket.
type TCPConn struct{ sockConn }

// Read implements net.Conn; io.EOF after the peer's FIN.
func (c *TCPConn) Read(b []byte) (int, error) { return c.read(b) }

// Write implements net.Conn.
func (c *TCPConn) Write(b []byte) (int, error) { return c.write(b, nil) }

// CloseWrite shuts down the sending side (a FIN), as net.TCPConn's does.
func (c *TCPConn) CloseWrite() error { return c.shutdown("close", unix.SHUT_WR) }

// CloseRead shuts down the receiving side.
func (c *TCPConn) CloseRead() error { return c.shutdown("close", unix.SHUT_RD) }

func (c *sockConn) shutdown(op string, how int) error {
	if !c.acquire() {
		return c.opError(op, net.ErrClosed)
	}
	defer c.s.f.put()
	if errno := c.s.shutdown(how); errno != 0 {
		return c.fail(op, errno)
	}
	return nil
}

// SetNoDelay sets TCP_NODELAY.
func (c *TCPConn) SetNoDelay(on bool) error {
	return c.setInt("set", unix.IPPROTO_TCP, unix.TCP_NODELAY, b2i(on))
}

// SetKeepAlive sets SO_KEEPALIVE.
func (c *TCPConn) SetKeepAlive(on bool) error {
	return c.setInt("set", unix.SOL_SOCKET, unix.SO_KEEPALIVE, b2i(on))
}

// SetLinger sets SO_LINGER as net.TCPConn.SetLinger does: sec < 0 is the
// default (a FIN on close), 0 resets the connection on Close.
func (c *TCPConn) SetLinger(sec int) error {
	if !c.acquire() {
		return c.opError("set", net.ErrClosed)
	}
	defer c.s.f.put()
	l := tcpip.LingerOption{Enabled: sec >= 0, Timeout: time.Duration(max(sec, 0)) * time.Second}
	c.s.ep.SocketOptions().SetLinger(l)
	return nil
}

func (c *sockConn) setInt(op string, level, opt, v int) error {
	if !c.acquire() {
		return c.opError(op, net.ErrClosed)
	}
	defer c.s.f.put()
	if err := c.s.setsockoptInt(level, opt, v); err != nil {
		return c.opError(op, os.NewSyscallError("setsockopt", err))
	}
	return nil
}

// UDPConn is a net.PacketConn over a UDP socket, and a net.Conn once
// connected (NetDial).
type UDPConn struct{ sockConn }

// Read implements net.Conn: one datagram from the connected peer.
func (c *UDPConn) Read(b []byte) (int, error) { return c.read(b) }

// Write implements net.Conn: one datagram to the connected peer.
func (c *UDPConn) Write(b []byte) (int, error) { return c.write(b, nil) }

// ReadFrom implements net.PacketConn.
func (c *UDPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, ap, err := c.ReadFromUDPAddrPort(b)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(ap), nil
}

// ReadFromUDPAddrPort is ReadFrom without allocating the address.
func (c *UDPConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	if !c.acquire() {
		return 0, netip.AddrPort{}, c.opError("read", net.ErrClosed)
	}
	defer c.s.f.put()
	dl := c.rd.channel()
	if expired(dl) {
		return 0, netip.AddrPort{}, c.opError("read", os.ErrDeadlineExceeded)
	}
	var from tcpip.FullAddress
	n, _, errno := c.s.recv(b, nil, recvOpts{from: &from, deadline: dl})
	if errno != 0 {
		return n, netip.AddrPort{}, c.fail("read", errno)
	}
	return n, addrPort(from), nil
}

// WriteTo implements net.PacketConn; addr is a *net.UDPAddr.
func (c *UDPConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, c.opError("write", &net.AddrError{Err: "not a *net.UDPAddr", Addr: addr.String()})
	}
	return c.WriteToUDPAddrPort(b, ua.AddrPort())
}

// WriteToUDPAddrPort is WriteTo with a netip.AddrPort.
func (c *UDPConn) WriteToUDPAddrPort(b []byte, ap netip.AddrPort) (int, error) {
	fa, errno := c.s.fullAddress(sockaddrOf(ap), opSendTo)
	if errno != 0 {
		return 0, c.opError("write", os.NewSyscallError("sendto", errno))
	}
	return c.write(b, &fa)
}

// TCPListener is a net.Listener over a listening TCP socket.
type TCPListener struct{ sockConn }

// Addr implements net.Listener.
func (l *TCPListener) Addr() net.Addr { return l.laddr }

// Accept implements net.Listener: it waits for a connection (until the
// deadline set with SetDeadline, if any) and returns it as a *TCPConn.
// With no free descriptor (EMFILE) or no socket memory (ENOBUFS,
// net.inet.tcp.mem_limit) it fails at once with an error whose Temporary
// method says true, and the connection stays queued for a later Accept.
func (l *TCPListener) Accept() (net.Conn, error) {
	if !l.acquire() {
		return nil, l.opError("accept", net.ErrClosed)
	}
	defer l.s.f.put()
	dl := l.rd.channel()
	if expired(dl) {
		return nil, l.opError("accept", os.ErrDeadlineExceeded)
	}
	nfd, ns, _, errno := l.t.accept4(l.s, 0, dl, true)
	if errno != 0 {
		return nil, l.fail("accept", errno)
	}
	c := &TCPConn{}
	c.init(l.t, nfd, ns, l.netw)
	return c, nil
}

// SetDeadline sets the deadline of Accept.
func (l *TCPListener) SetDeadline(t time.Time) error { return l.SetReadDeadline(t) }

// NetListen announces on a local address, as net.Listen does: network is
// "tcp", "tcp4" or "tcp6"; address is "host:port" with an IP literal or
// an empty host (all addresses; "tcp" then listens on IPv4 and IPv6 with one
// dual-stack socket). SO_REUSEADDR is set, as Go does.
func (t *Sockets) NetListen(network, address string) (net.Listener, error) {
	fd, s, err := t.netBound(network, address, unix.SOCK_STREAM, "tcp")
	if err != nil {
		return nil, err
	}
	if err := t.Listen(fd, maxBacklog); err != nil {
		t.closeFile(fd, s.f)
		s.f.put()
		return nil, &net.OpError{Op: "listen", Net: network, Err: os.NewSyscallError("listen", err)}
	}
	l := &TCPListener{}
	l.init(t, fd, s, network)
	return l, nil
}

// netBound makes a socket of type typ for network and binds it to address,
// for NetListen and NetListenPacket.
func (t *Sockets) netBound(network, address string, typ int, proto string) (int, *socket, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "listen", Net: network, Err: err}
	}
	domain, sa, err := resolve(network, address, true, proto)
	if err != nil {
		return -1, nil, opErr(err)
	}
	fd, s, err := t.netSocket(domain, typ, network, sa)
	if err != nil {
		return -1, nil, opErr(err)
	}
	if err := t.Bind(fd, sa); err != nil {
		t.closeFile(fd, s.f)
		s.f.put()
		return -1, nil, opErr(os.NewSyscallError("bind", err))
	}
	return fd, s, nil
}

// NetListenPacket is net.ListenPacket for "udp", "udp4" and "udp6".
func (t *Sockets) NetListenPacket(network, address string) (net.PacketConn, error) {
	fd, s, err := t.netBound(network, address, unix.SOCK_DGRAM, "udp")
	if err != nil {
		return nil, err
	}
	c := &UDPConn{}
	c.init(t, fd, s, network)
	return c, nil
}

// NetDial connects to address (an IP literal and a port) on network "tcp",
// "tcp4", "tcp6", "udp", "udp4" or "udp6", as net.Dialer.DialContext does:
// ctx bounds the TCP handshake.
func (t *Sockets) NetDial(ctx context.Context, network, address string) (net.Conn, error) {
	opErr := func(err error) error {
		return &net.OpError{Op: "dial", Net: network, Err: err}
	}
	proto := "tcp"
	typ := unix.SOCK_STREAM
	if len(network) >= 3 && network[:3] == "udp" {
		proto, typ = "udp", unix.SOCK_DGRAM
	}
	domain, sa, err := resolve(network, address, false, proto)
	if err != nil {
		return nil, opErr(err)
	}
	fd, s, err := t.netSocket(domain, typ, network, nil)
	if err != nil {
		return nil, opErr(err)
	}
	fail := func(err error) (net.Conn, error) {
		t.closeFile(fd, s.f)
		s.f.put()
		return nil, opErr(err)
	}
	addr, errno := s.fullAddress(sa, opConnect)
	if errno != 0 {
		return fail(os.NewSyscallError("connect", errno))
	}
	if err := s.connect(addr, ctx.Done()); err != nil {
		switch {
		case err == errnoDeadline:
			cerr := ctx.Err()
			if errors.Is(cerr, context.DeadlineExceeded) {
				cerr = os.ErrDeadlineExceeded
			}
			return fail(cerr)
		case err == unix.EINPROGRESS || err == unix.EALREADY:
			return fail(ErrLoopBlocking)
		}
		return fail(os.NewSyscallError("connect", err))
	}
	if typ == unix.SOCK_DGRAM {
		c := &UDPConn{}
		c.init(t, fd, s, network)
		return c, nil
	}
	c := &TCPConn{}
	c.init(t, fd, s, network)
	return c, nil
}

// netSocket opens a blocking socket for an adapter and returns it with a
// reference for the adapter. A wildcard IPv6 listen on "tcp"/"udp" is
// dual-stack; "tcp6"/"udp6" are IPv6 only.
func (t *Sockets) netSocket(domain, typ int, network string, local unix.Sockaddr) (int, *socket, error) {
	fd, err := t.Socket(domain, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, nil, os.NewSyscallError("socket", err)
	}
	s, errno := t.socket(fd) // the adapter's reference
	if errno != 0 {
		return -1, nil, os.NewSyscallError("socket", errno)
	}
	ops := s.ep.SocketOptions()
	if local != nil {
		ops.SetReuseAddress(true)
	}
	if domain == unix.AF_INET6 {
		last := network[len(network)-1]
		ops.SetV6Only(last == '6')
	}
	return fd, s, nil
}

// resolve parses "host:port" for network. The host must be an IP literal
// or, when listening, empty.
func resolve(network, address string, listen bool, proto string) (int, unix.Sockaddr, error) {
	switch network {
	case proto, proto + "4", proto + "6":
	default:
		return 0, nil, net.UnknownNetworkError(network)
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return 0, nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return 0, nil, &net.AddrError{Err: "invalid port", Addr: address}
	}
	var ip netip.Addr
	if host != "" {
		ip, err = netip.ParseAddr(host)
		if err != nil {
			return 0, nil, &net.AddrError{Err: "host must be an IP address (xstack does not resolve names)", Addr: address}
		}
	} else if !listen {
		return 0, nil, &net.AddrError{Err: "missing address", Addr: address}
	}
	last := network[len(network)-1]
	switch {
	case last == '4' && ip.IsValid() && !ip.Unmap().Is4():
		return 0, nil, &net.AddrError{Err: "not an IPv4 address", Addr: address}
	case last == '6' && ip.Is4():
		return 0, nil, &net.AddrError{Err: "not an IPv6 address", Addr: address}
	}
	if last == '4' || (last != '6' && ip.IsValid() && ip.Unmap().Is4() && !(listen && ip.Unmap().IsUnspecified())) {
		sa := &unix.SockaddrInet4{Port: int(port)}
		if ip.IsValid() {
			sa.Addr = ip.Unmap().As4()
		}
		return unix.AF_INET, sa, nil
	}
	sa := &unix.SockaddrInet6{Port: int(port)}
	if ip.IsValid() && !ip.IsUnspecified() {
		sa.Addr = ip.As16()
	}
	return unix.AF_INET6, sa, nil
}

// netAddr converts a gVisor address into the net.Addr of s's protocol.
func (s *socket) netAddr(fa tcpip.FullAddress) net.Addr {
	ap := addrPort(fa)
	if s.stype == unix.SOCK_STREAM {
		return net.TCPAddrFromAddrPort(ap)
	}
	return net.UDPAddrFromAddrPort(ap)
}

// addrPort converts a gVisor address; v4-mapped addresses come out as IPv4.
func addrPort(fa tcpip.FullAddress) netip.AddrPort {
	a, _ := netip.AddrFromSlice(fa.Addr.AsSlice())
	return netip.AddrPortFrom(a.Unmap(), fa.Port)
}

func sockaddrOf(ap netip.AddrPort) unix.Sockaddr {
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	return &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
}
