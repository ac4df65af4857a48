// Package posix is xstack's application API: a POSIX-shaped socket interface
// with epoll over one lcore's gVisor stack, in the manner of F-Stack's ff_*
// functions.
//
// # What it owns
//
// A Sockets is one lcore's file-descriptor table and epoll instances over the
// lcore's *stack.Stack (xstack's, not gVisor's): the table asks it for
// endpoints, socket defaults, ports and routes, and does its I/O on the gVisor
// endpoints it gets, as gVisor's gonet adapters do. File descriptors are small ints handed out lowest
// first, as POSIX requires, starting at 3 so that a zero-valued field is never
// a socket. Every error is a unix.Errno, the one Linux returns in the same
// situation, so errors.Is(err, unix.ECONNREFUSED) works; no tcpip.Error
// leaves this package. Writing to a closed or reset connection returns EPIPE
// (or the pending ECONNRESET first, as Linux does); there are no signals.
//
// The calls: Socket, Bind, Listen, Accept, Accept4, Connect, Read, Readv,
// Write, Writev, Send, SendTo, SendMsg, Recv, RecvFrom, RecvMsg, Shutdown,
// CloseFD, Getsockname, Getpeername, SetsockoptInt/GetsockoptInt (and
// SO_LINGER, TCP_INFO), Fcntl, IoctlSetInt/IoctlGetInt, EpollCreate,
// EpollCtl, EpollWait, Poll, and RouteAdd/RouteDel/Routes on the lcore's
// route table (F-Stack's ff_route_ctl; the route tool changes the same table
// through the same stack.Stack methods). SendMsg and RecvMsg carry no
// control messages.
//
// The package-level functions (Socket, Bind, EpollWait, ...) forward to the
// Sockets installed with SetDefault; Init does that, F-Stack style. The
// methods have the same names, except that close(2) is (*Sockets).CloseFD:
// (*Sockets).Close closes the whole table.
//
// # Who calls it, on which goroutine
//
// gVisor endpoints are goroutine-safe, and so is every method here: calls may
// come from any goroutine, and a socket may be read on one goroutine while it
// is written on another. Sockets are blocking by default, as on Linux; a
// blocking call parks on the endpoint's waiter queue until gVisor's own
// goroutines (TCP processors, timers) or the lcore loop's packet delivery make
// progress.
//
// The lcore loop is the exception. It drives the stack: the application's
// loop callback (F-Stack's ff_run loop function) runs on the goroutine that
// delivers the NIC's frames, so a call that blocked there would stall the
// stack for good. The loop therefore brackets the callback with EnterLoop and
// LeaveLoop; in between, a call on that goroutine that would block returns at
// once instead: EAGAIN for Read, Write, Accept and friends, EINPROGRESS for
// Connect (EALREADY when a connect is already under way), and EpollWait
// behaves as if msec were 0. This is a deliberate difference from Linux;
// F-Stack also requires non-blocking sockets in the loop. Other goroutines
// keep their blocking semantics while the loop runs.
//
// Epoll readiness comes from the waiter.Queue of each endpoint: every
// (socket, epoll) registration owns a waiter.Entry whose callback puts the
// registration on the epoll instance's ready list. EpollWait then asks the
// endpoint for its actual readiness, so level-triggered registrations are
// re-reported while the condition holds and dropped when it no longer does,
// exactly as Linux's ep_send_events does.
//
// # The net adapters
//
// NetListen, NetDial and NetListenPacket (and the *TCPListener, *TCPConn
// and *UDPConn they return) give net.Listener, net.Conn and net.PacketConn
// values over sockets of the table, with deadlines and CloseWrite, so that
// net/http, bufio and io.Copy run unchanged on goroutines while the lcore
// loop runs (Run(nil)). Their errors are *net.OpError values wrapping
// net.ErrClosed, os.ErrDeadlineExceeded or the unix.Errno, so errors.Is
// works for all three. They block, so they are for ordinary goroutines: on
// the loop goroutine inside its callback a call that would wait fails at
// once with ErrLoopBlocking rather than stalling the stack. Addresses are
// IP literals; there is no name resolution.
//
// # Socket-buffer memory
//
// net.inet.tcp.mem_limit (stack.SocketDefaults.MemLimit, 0 = no limit)
// bounds the memory one table's TCP sockets may hold in their buffers. It
// works by reservation, so that the answer never depends on traffic: every
// TCP socket that can carry data reserves the most its buffers may hold,
// its send buffer size plus its receive buffer size, or plus the receive
// range's maximum while gVisor may grow the receive buffer
// (net.inet.tcp.moderate_rcvbuf, until SO_RCVBUF is set). Socket reserves
// for a new socket, Accept for a connection before it takes it off the
// queue, SO_SNDBUF and SO_RCVBUF the difference they make; Listen (a
// listener holds no data) and the last close give the reservation back. A
// reservation that does not fit fails with ENOBUFS and changes nothing:
// Socket creates no socket, Accept leaves the connection queued (as it does
// on EMFILE) and setsockopt leaves the buffer as it was. The stack thus
// sheds new work while memory is short and takes it again, by itself, once
// sockets are closed. With a limit set, a socket keeps the send buffer size
// it was reserved at: gVisor's send-buffer auto-tuning, which would grow the
// buffer past its reservation, is turned off for it as SO_SNDBUF turns it
// off. UDP sockets reserve nothing (a full UDP buffer drops datagrams).
// MemReserved and MemRefused report the reservations and the refusals; an
// lcore shows them as the counters tcp.mem_reserved and tcp.mem_refused.
//
// # Hot path
//
// Read, Write and EpollWait with msec == 0 make no allocations in steady
// state, nor do the net.Conn adapters' Read and Write on top of them (see
// the allocation tests and benchmarks). Poll allocates its subscriptions
// when it has to wait.
//
// # Known differences from Linux
//
//   - Calls on the loop goroutine between EnterLoop and LeaveLoop never block
//     (above).
//   - Close(fd) wakes calls blocked on that socket in other goroutines; they
//     return EBADF. Linux leaves them blocked until the connection makes
//     progress. The endpoint itself is closed when the last such call returns.
//   - SO_LINGER with a non-zero timeout is recorded but Close does not wait
//     for the send queue to drain; a zero timeout resets the connection (RST)
//     as on Linux.
//   - Only AF_INET and AF_INET6 with SOCK_STREAM and SOCK_DGRAM exist;
//     SOCK_RAW and other types fail with ESOCKTNOSUPPORT.
//   - An epoll instance cannot be added to another epoll instance (EPERM).
//   - EPOLLEXCLUSIVE is accepted (with Linux's checks) and every waiter is
//     woken; EPOLLWAKEUP is accepted and ignored.
//   - EPOLLERR clears once the pending error has been returned by a call or
//     read with SO_ERROR, as on Linux, but only errors that gVisor keeps as
//     the endpoint's hard error (reset, refused, timed out) raise it.
//   - After Sockets.Close every fd call fails with EBADF and Socket and
//     EpollCreate fail with ENETDOWN.
//   - TCP_NODELAY is on by default (gVisor's default; Go's net package sets
//     it too): gVisor sends no delayed ACKs, and Nagle against a kernel
//     peer's delayed ACKs stalls request/response traffic.
//   - A TCP socket whose connect failed cannot connect again (ECONNABORTED;
//     gVisor keeps the endpoint in its error state). Open a new socket.
//   - Receive flags other than MSG_DONTWAIT, MSG_PEEK, MSG_TRUNC and
//     MSG_WAITALL (and the no-ops MSG_NOSIGNAL, MSG_CMSG_CLOEXEC) are
//     EOPNOTSUPP. That includes MSG_OOB: gVisor has no urgent data. Linux
//     answers MSG_OOB on a TCP socket without urgent data with EINVAL and
//     ignores it on a UDP socket.
//   - MSG_MORE on a UDP socket is accepted and ignored: every send is a
//     datagram of its own. Linux appends the data to a pending datagram
//     that the next send without MSG_MORE completes.
//   - Data that a send with MSG_MORE holds back on a TCP socket goes out
//     with the next send without MSG_MORE, or at the latest 200 ms after
//     the socket began to hold it, as with TCP_CORK. Linux also sends it
//     when an ACK for earlier data arrives.
//   - TCP_MAXSEG and TCP_INFO's MSS on a connected socket are the NIC's MTU
//     less the IP and TCP headers, without options.
//   - Poll on an epoll instance reports POLLIN while it has ready
//     registrations but is not woken by them.
//   - Socket-buffer memory is bounded by reservation
//     (net.inet.tcp.mem_limit, above), not by the bytes in use as Linux's
//     tcp_mem is: the limit refuses Socket, Accept and SO_SNDBUF/SO_RCVBUF,
//     never a send or the arrival of data, and it counts every connection
//     at its largest.
//
// internal/difftest runs a table of scenarios against both this package and
// the kernel's sockets on a rig; its rows marked "differs" list these cases
// with the observed results.
package posix
