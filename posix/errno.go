package posix

import (
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// errnoOf converts a gVisor error to the errno Linux returns for the same
// condition. It is the only place tcpip errors are translated; callers adjust
// for the few cases where Linux's answer depends on the call (for example
// ErrNoPortAvailable is EADDRNOTAVAIL from a TCP connect but EAGAIN
// elsewhere, and ErrClosedForReceive is end of file, not an error).
//
// Errnos below 256 convert to error without allocating (the runtime keeps
// small integers boxed), which keeps EAGAIN off the heap.
func errnoOf(err tcpip.Error) unix.Errno {
	switch err.(type) {
	case nil:
		return 0
	case *tcpip.ErrWouldBlock:
		return unix.EAGAIN
	case *tcpip.ErrConnectStarted:
		return unix.EINPROGRESS
	case *tcpip.ErrAlreadyConnecting:
		return unix.EALREADY
	case *tcpip.ErrAlreadyConnected:
		return unix.EISCONN
	case *tcpip.ErrConnectionRefused:
		return unix.ECONNREFUSED
	case *tcpip.ErrConnectionReset:
		return unix.ECONNRESET
	case *tcpip.ErrConnectionAborted:
		return unix.ECONNABORTED
	case *tcpip.ErrTimeout:
		return unix.ETIMEDOUT
	case *tcpip.ErrAborted, *tcpip.ErrClosedForSend:
		// Writing to a socket that was aborted locally or shut down for
		// sending is EPIPE (tcp_sendmsg's sk_stream_error).
		return unix.EPIPE
	case *tcpip.ErrClosedForReceive, *tcpip.ErrNotConnected:
		return unix.ENOTCONN
	case *tcpip.ErrPortInUse:
		return unix.EADDRINUSE
	case *tcpip.ErrBadLocalAddress:
		return unix.EADDRNOTAVAIL
	case *tcpip.ErrNoPortAvailable:
		return unix.EAGAIN
	case *tcpip.ErrAlreadyBound, *tcpip.ErrInvalidEndpointState, *tcpip.ErrInvalidOptionValue,
		*tcpip.ErrMalformedHeader, *tcpip.ErrInvalidPortRange, *tcpip.ErrMulticastInputCannotBeOutput,
		*tcpip.ErrMissingRequiredFields, *tcpip.ErrUnknownProtocol:
		return unix.EINVAL
	case *tcpip.ErrDestinationRequired:
		return unix.EDESTADDRREQ
	case *tcpip.ErrNotSupported:
		return unix.EOPNOTSUPP
	case *tcpip.ErrQueueSizeNotSupported:
		return unix.ENOTTY
	case *tcpip.ErrNoSuchFile:
		return unix.ENOENT
	case *tcpip.ErrBroadcastDisabled:
		return unix.EACCES
	case *tcpip.ErrNotPermitted:
		return unix.EPERM
	case *tcpip.ErrBadBuffer, *tcpip.ErrBadAddress:
		return unix.EFAULT
	case *tcpip.ErrNoNet:
		return unix.ENONET
	case *tcpip.ErrEndpointBusy:
		return unix.EBUSY
	case *tcpip.ErrUnknownNICID, *tcpip.ErrUnknownDevice:
		return unix.ENODEV
	case *tcpip.ErrUnknownProtocolOption:
		return unix.ENOPROTOOPT
	case *tcpip.ErrDuplicateNICID, *tcpip.ErrDuplicateAddress:
		return unix.EEXIST
	case *tcpip.ErrHostUnreachable:
		return unix.EHOSTUNREACH
	case *tcpip.ErrHostDown:
		return unix.EHOSTDOWN
	case *tcpip.ErrNetworkUnreachable:
		return unix.ENETUNREACH
	case *tcpip.ErrMessageTooLong:
		return unix.EMSGSIZE
	case *tcpip.ErrNoBufferSpace:
		return unix.ENOBUFS
	case *tcpip.ErrAddressFamilyNotSupported:
		return unix.EAFNOSUPPORT
	default:
		// A gVisor error this version does not know. EIO says "the stack
		// failed" without pretending to be one of the documented errnos.
		return unix.EIO
	}
}

// isHardError reports whether err is a connection error that Linux keeps in
// sk_err (reported once by a call or SO_ERROR, and as EPOLLERR until then).
func isHardError(err tcpip.Error) bool {
	switch err.(type) {
	case *tcpip.ErrConnectionReset, *tcpip.ErrConnectionRefused, *tcpip.ErrConnectionAborted,
		*tcpip.ErrTimeout, *tcpip.ErrHostUnreachable, *tcpip.ErrNetworkUnreachable,
		*tcpip.ErrHostDown, *tcpip.ErrNoNet:
		return true
	}
	return false
}
