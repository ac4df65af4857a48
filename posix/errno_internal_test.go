package posix

import (
	"testing"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
)

func TestErrnoOf(t *testing.T) {
	tests := []struct {
		err  tcpip.Error
		want unix.Errno
	}{
		{nil, 0},
		{&tcpip.ErrWouldBlock{}, unix.EAGAIN},
		{&tcpip.ErrConnectStarted{}, unix.EINPROGRESS},
		{&tcpip.ErrAlreadyConnecting{}, unix.EALREADY},
		{&tcpip.ErrAlreadyConnected{}, unix.EISCONN},
		{&tcpip.ErrConnectionRefused{}, unix.ECONNREFUSED},
		{&tcpip.ErrConnectionReset{}, unix.ECONNRESET},
		{&tcpip.ErrConnectionAborted{}, unix.ECONNABORTED},
		{&tcpip.ErrTimeout{}, unix.ETIMEDOUT},
		{&tcpip.ErrClosedForSend{}, unix.EPIPE},
		{&tcpip.ErrAborted{}, unix.EPIPE},
		{&tcpip.ErrNotConnected{}, unix.ENOTCONN},
		{&tcpip.ErrPortInUse{}, unix.EADDRINUSE},
		{&tcpip.ErrBadLocalAddress{}, unix.EADDRNOTAVAIL},
		{&tcpip.ErrAlreadyBound{}, unix.EINVAL},
		{&tcpip.ErrInvalidEndpointState{}, unix.EINVAL},
		{&tcpip.ErrInvalidOptionValue{}, unix.EINVAL},
		{&tcpip.ErrDestinationRequired{}, unix.EDESTADDRREQ},
		{&tcpip.ErrNotSupported{}, unix.EOPNOTSUPP},
		{&tcpip.ErrQueueSizeNotSupported{}, unix.ENOTTY},
		{&tcpip.ErrBroadcastDisabled{}, unix.EACCES},
		{&tcpip.ErrNotPermitted{}, unix.EPERM},
		{&tcpip.ErrBadBuffer{}, unix.EFAULT},
		{&tcpip.ErrUnknownProtocolOption{}, unix.ENOPROTOOPT},
		{&tcpip.ErrHostUnreachable{}, unix.EHOSTUNREACH},
		{&tcpip.ErrNetworkUnreachable{}, unix.ENETUNREACH},
		{&tcpip.ErrMessageTooLong{}, unix.EMSGSIZE},
		{&tcpip.ErrNoBufferSpace{}, unix.ENOBUFS},
		{&tcpip.ErrAddressFamilyNotSupported{}, unix.EAFNOSUPPORT},
		{&tcpip.ErrNoPortAvailable{}, unix.EAGAIN},
		{&tcpip.ErrDuplicateAddress{}, unix.EEXIST},
		{&tcpip.ErrUnknownNICID{}, unix.ENODEV},
		{&tcpip.ErrEndpointBusy{}, unix.EBUSY},
	}
	for _, tc := range tests {
		if got := errnoOf(tc.err); got != tc.want {
			t.Errorf("errnoOf(%T): (-want +got)\n-%v\n+%v", tc.err, tc.want, got)
		}
	}
}

func TestCurGoroutineID(t *testing.T) {
	a := curGoroutineID()
	ch := make(chan uint64)
	go func() { ch <- curGoroutineID() }()
	b := <-ch
	if a == 0 || b == 0 || a == b {
		t.Fatalf("goroutine ids %d and %d", a, b)
	}
}
