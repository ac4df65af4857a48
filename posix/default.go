package posix

import (
	"context"
	"net"
	"net/netip"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The package-level functions below are the F-Stack-style API (ff_socket,
// ff_epoll_wait...): each forwards to the Sockets installed by SetDefault,
// which core's Init calls for the lcore this process runs. Before SetDefault,
// or after SetDefault(nil), they fail as on a closed table (EBADF; ENETDOWN
// for Socket and EpollCreate).

var defaultSockets atomic.Pointer[Sockets]

// noSockets answers for the package-level functions when no default is set.
var noSockets = func() *Sockets {
	t := NewSockets(nil)
	t.Close()
	return t
}()

// SetDefault makes t the table behind the package-level functions.
func SetDefault(t *Sockets) { defaultSockets.Store(t) }

// Default returns the table behind the package-level functions, or nil.
func Default() *Sockets { return defaultSockets.Load() }

func def() *Sockets {
	if t := defaultSockets.Load(); t != nil {
		return t
	}
	return noSockets
}

// Socket calls Default().Socket.
func Socket(domain, typ, proto int) (int, error) { return def().Socket(domain, typ, proto) }

// Bind calls Default().Bind.
func Bind(fd int, sa unix.Sockaddr) error { return def().Bind(fd, sa) }

// Listen calls Default().Listen.
func Listen(fd, backlog int) error { return def().Listen(fd, backlog) }

// Accept calls Default().Accept.
func Accept(fd int) (int, unix.Sockaddr, error) { return def().Accept(fd) }

// Accept4 calls Default().Accept4.
func Accept4(fd, flags int) (int, unix.Sockaddr, error) { return def().Accept4(fd, flags) }

// Connect calls Default().Connect.
func Connect(fd int, sa unix.Sockaddr) error { return def().Connect(fd, sa) }

// Read calls Default().Read.
func Read(fd int, p []byte) (int, error) { return def().Read(fd, p) }

// Write calls Default().Write.
func Write(fd int, p []byte) (int, error) { return def().Write(fd, p) }

// RecvFrom calls Default().RecvFrom.
func RecvFrom(fd int, p []byte, flags int) (int, unix.Sockaddr, error) {
	return def().RecvFrom(fd, p, flags)
}

// SendTo calls Default().SendTo.
func SendTo(fd int, p []byte, flags int, to unix.Sockaddr) (int, error) {
	return def().SendTo(fd, p, flags, to)
}

// Close calls Default().CloseFD: close(2).
func Close(fd int) error { return def().CloseFD(fd) }

// Shutdown calls Default().Shutdown.
func Shutdown(fd, how int) error { return def().Shutdown(fd, how) }

// Getsockname calls Default().Getsockname.
func Getsockname(fd int) (unix.Sockaddr, error) { return def().Getsockname(fd) }

// Getpeername calls Default().Getpeername.
func Getpeername(fd int) (unix.Sockaddr, error) { return def().Getpeername(fd) }

// Fcntl calls Default().Fcntl.
func Fcntl(fd, cmd, arg int) (int, error) { return def().Fcntl(fd, cmd, arg) }

// IoctlSetInt calls Default().IoctlSetInt.
func IoctlSetInt(fd int, req uint, value int) error { return def().IoctlSetInt(fd, req, value) }

// IoctlGetInt calls Default().IoctlGetInt.
func IoctlGetInt(fd int, req uint) (int, error) { return def().IoctlGetInt(fd, req) }

// SetsockoptInt calls Default().SetsockoptInt.
func SetsockoptInt(fd, level, opt, value int) error {
	return def().SetsockoptInt(fd, level, opt, value)
}

// GetsockoptInt calls Default().GetsockoptInt.
func GetsockoptInt(fd, level, opt int) (int, error) { return def().GetsockoptInt(fd, level, opt) }

// SetsockoptLinger calls Default().SetsockoptLinger.
func SetsockoptLinger(fd, level, opt int, l *unix.Linger) error {
	return def().SetsockoptLinger(fd, level, opt, l)
}

// GetsockoptLinger calls Default().GetsockoptLinger.
func GetsockoptLinger(fd, level, opt int) (*unix.Linger, error) {
	return def().GetsockoptLinger(fd, level, opt)
}

// EpollCreate calls Default().EpollCreate.
func EpollCreate(flags int) (int, error) { return def().EpollCreate(flags) }

// EpollCtl calls Default().EpollCtl.
func EpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error { return def().EpollCtl(epfd, op, fd, ev) }

// EpollWait calls Default().EpollWait.
func EpollWait(epfd int, events []unix.EpollEvent, msec int) (int, error) {
	return def().EpollWait(epfd, events, msec)
}

// Readv calls Default().Readv.
func Readv(fd int, iovs [][]byte) (int, error) { return def().Readv(fd, iovs) }

// Writev calls Default().Writev.
func Writev(fd int, iovs [][]byte) (int, error) { return def().Writev(fd, iovs) }

// Recv calls Default().Recv.
func Recv(fd int, p []byte, flags int) (int, error) { return def().Recv(fd, p, flags) }

// Send calls Default().Send.
func Send(fd int, p []byte, flags int) (int, error) { return def().Send(fd, p, flags) }

// RecvMsg calls Default().RecvMsg.
func RecvMsg(fd int, iovs [][]byte, flags int) (n, recvflags int, from unix.Sockaddr, err error) {
	return def().RecvMsg(fd, iovs, flags)
}

// SendMsg calls Default().SendMsg.
func SendMsg(fd int, iovs [][]byte, to unix.Sockaddr, flags int) (int, error) {
	return def().SendMsg(fd, iovs, to, flags)
}

// GetsockoptTCPInfo calls Default().GetsockoptTCPInfo.
func GetsockoptTCPInfo(fd, level, opt int) (*unix.TCPInfo, error) {
	return def().GetsockoptTCPInfo(fd, level, opt)
}

// Poll calls Default().Poll.
func Poll(fds []unix.PollFd, msec int) (int, error) { return def().Poll(fds, msec) }

// RouteAdd calls Default().RouteAdd (ff_route_ctl with FF_ROUTE_ADD).
func RouteAdd(dst netip.Prefix, gateway netip.Addr) error { return def().RouteAdd(dst, gateway) }

// RouteDel calls Default().RouteDel (ff_route_ctl with FF_ROUTE_DEL).
func RouteDel(dst netip.Prefix, gateway netip.Addr) error { return def().RouteDel(dst, gateway) }

// NetListen calls Default().NetListen.
func NetListen(network, address string) (net.Listener, error) {
	return def().NetListen(network, address)
}

// NetDial calls Default().NetDial.
func NetDial(ctx context.Context, network, address string) (net.Conn, error) {
	return def().NetDial(ctx, network, address)
}

// NetListenPacket calls Default().NetListenPacket.
func NetListenPacket(network, address string) (net.PacketConn, error) {
	return def().NetListenPacket(network, address)
}
