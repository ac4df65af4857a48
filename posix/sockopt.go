package posix

import (
	"math"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// Linux's bounds for the TCP keepalive options (MAX_TCP_KEEPIDLE,
// MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT).
const (
	maxKeepIdle  = 32767
	maxKeepIntvl = 32767
	maxKeepCnt   = 127
)

// socketFlagOpts are the SOL_SOCKET options that are one flag of gVisor's
// SocketOptions, set and read back as 0 or 1.
var socketFlagOpts = map[int]struct {
	get func(*tcpip.SocketOptions) bool
	set func(*tcpip.SocketOptions, bool)
}{
	unix.SO_REUSEADDR: {(*tcpip.SocketOptions).GetReuseAddress, (*tcpip.SocketOptions).SetReuseAddress},
	unix.SO_REUSEPORT: {(*tcpip.SocketOptions).GetReusePort, (*tcpip.SocketOptions).SetReusePort},
	unix.SO_KEEPALIVE: {(*tcpip.SocketOptions).GetKeepAlive, (*tcpip.SocketOptions).SetKeepAlive},
	unix.SO_BROADCAST: {(*tcpip.SocketOptions).GetBroadcast, (*tcpip.SocketOptions).SetBroadcast},
}

// SetsockoptInt is setsockopt(2) for integer options:
//
//	SOL_SOCKET:   SO_REUSEADDR, SO_REUSEPORT, SO_KEEPALIVE, SO_BROADCAST,
//	              SO_RCVBUF, SO_SNDBUF (doubled and clamped, as Linux does;
//	              ENOBUFS when a TCP socket's larger buffer does not fit
//	              under net.inet.tcp.mem_limit),
//	              SO_RCVLOWAT (accepted; gVisor always uses 1)
//	IPPROTO_TCP:  TCP_NODELAY, TCP_CORK, TCP_QUICKACK, TCP_KEEPIDLE,
//	              TCP_KEEPINTVL, TCP_KEEPCNT, TCP_MAXSEG, TCP_USER_TIMEOUT,
//	              TCP_SYNCNT, TCP_WINDOW_CLAMP
//	IPPROTO_IP:   IP_TOS, IP_TTL
//	IPPROTO_IPV6: IPV6_V6ONLY (EINVAL once bound), IPV6_TCLASS,
//	              IPV6_UNICAST_HOPS
//
// Anything else is ENOPROTOOPT, as Linux answers for options it does not
// know; read-only options (SO_ERROR, SO_TYPE...) are ENOPROTOOPT too.
//
// TCP_CORK holds partial segments back until it is cleared, for at most
// 200 ms, and shutdown(SHUT_WR) and close send what it holds ahead of their
// FIN, as on Linux. Setting it ends a cork that a send with MSG_MORE began
// (see SendTo).
func (t *Sockets) SetsockoptInt(fd, level, opt, value int) error {
	s, errno := t.socket(fd)
	if errno != 0 {
		return errno
	}
	defer s.f.put()
	return s.setsockoptInt(level, opt, value)
}

func (s *socket) setsockoptInt(level, opt, v int) error {
	ops := s.ep.SocketOptions()
	switch level {
	case unix.SOL_SOCKET:
		if o, ok := socketFlagOpts[opt]; ok {
			o.set(ops, v != 0)
			return nil
		}
		switch opt {
		case unix.SO_RCVBUF:
			lo, hi := ops.ReceiveBufferLimits()
			return s.setBufferSize(false, bufSize(v, lo, hi))
		case unix.SO_SNDBUF:
			lo, hi := ops.SendBufferLimits()
			return s.setBufferSize(true, bufSize(v, lo, hi))
		case unix.SO_RCVLOWAT:
			if v < 0 {
				v = math.MaxInt32
			}
			ops.SetRcvlowat(int32(v))
		case unix.SO_LINGER:
			return unix.EINVAL // needs a struct linger: SetsockoptLinger
		default:
			return unix.ENOPROTOOPT
		}
		return nil
	case unix.IPPROTO_TCP:
		if s.stype != unix.SOCK_STREAM {
			return unix.ENOPROTOOPT
		}
		return s.setsockoptTCP(opt, v)
	case unix.IPPROTO_IP:
		switch opt {
		case unix.IP_TOS:
			return s.setInt(tcpip.IPv4TOSOption, v&0xff)
		case unix.IP_TTL:
			if v == -1 {
				v = 0 // the stack default
			} else if v < 1 || v > 255 {
				return unix.EINVAL
			}
			return s.setInt(tcpip.IPv4TTLOption, v)
		}
		return unix.ENOPROTOOPT
	case unix.IPPROTO_IPV6:
		if s.family != unix.AF_INET6 {
			return unix.ENOPROTOOPT
		}
		switch opt {
		case unix.IPV6_V6ONLY:
			// Linux refuses once the socket has a local port
			// (inet_num), that is once bound or connected.
			if a, err := s.ep.GetLocalAddress(); err == nil && a.Port != 0 {
				return unix.EINVAL
			}
			ops.SetV6Only(v != 0)
			return nil
		case unix.IPV6_TCLASS:
			if v == -1 {
				v = 0
			} else if v < 0 || v > 255 {
				return unix.EINVAL
			}
			return s.setInt(tcpip.IPv6TrafficClassOption, v)
		case unix.IPV6_UNICAST_HOPS:
			if v < -1 || v > 255 {
				return unix.EINVAL
			}
			return s.setInt(tcpip.IPv6HopLimitOption, v)
		}
		return unix.ENOPROTOOPT
	}
	return unix.ENOPROTOOPT
}

func (s *socket) setsockoptTCP(opt, v int) error {
	ops := s.ep.SocketOptions()
	switch opt {
	case unix.TCP_NODELAY:
		ops.SetDelayOption(v == 0)
	case unix.TCP_CORK:
		s.setCork(v != 0)
	case unix.TCP_QUICKACK:
		ops.SetQuickAck(v != 0)
	case unix.TCP_KEEPIDLE:
		if v < 1 || v > maxKeepIdle {
			return unix.EINVAL
		}
		o := tcpip.KeepaliveIdleOption(time.Duration(v) * time.Second)
		return s.setOpt(&o)
	case unix.TCP_KEEPINTVL:
		if v < 1 || v > maxKeepIntvl {
			return unix.EINVAL
		}
		o := tcpip.KeepaliveIntervalOption(time.Duration(v) * time.Second)
		return s.setOpt(&o)
	case unix.TCP_KEEPCNT:
		if v < 1 || v > maxKeepCnt {
			return unix.EINVAL
		}
		return s.setInt(tcpip.KeepaliveCountOption, v)
	case unix.TCP_MAXSEG:
		return s.setInt(tcpip.MaxSegOption, v)
	case unix.TCP_USER_TIMEOUT:
		if v < 0 {
			return unix.EINVAL
		}
		o := tcpip.TCPUserTimeoutOption(time.Duration(v) * time.Millisecond)
		return s.setOpt(&o)
	case unix.TCP_SYNCNT:
		return s.setInt(tcpip.TCPSynCountOption, v)
	case unix.TCP_WINDOW_CLAMP:
		return s.setInt(tcpip.TCPWindowClampOption, v)
	default:
		return unix.ENOPROTOOPT
	}
	return nil
}

func (s *socket) setInt(o tcpip.SockOptInt, v int) error {
	if err := s.ep.SetSockOptInt(o, v); err != nil {
		return errnoOf(err)
	}
	return nil
}

func (s *socket) setOpt(o tcpip.SettableSocketOption) error {
	if err := s.ep.SetSockOpt(o); err != nil {
		return errnoOf(err)
	}
	return nil
}

// bufSize is Linux's SO_RCVBUF/SO_SNDBUF rule: the request is capped at the
// maximum and doubled to leave room for bookkeeping, and never goes below the
// minimum. A negative request is the minimum.
func bufSize(v int, lo, hi int64) int64 {
	n := int64(v)
	if n > hi {
		n = hi
	}
	n *= 2
	if n < lo {
		n = lo
	}
	if n > math.MaxInt32 {
		n = math.MaxInt32
	}
	return n
}

// GetsockoptInt is getsockopt(2) for integer options: those SetsockoptInt
// takes, and SO_ERROR (the pending error, cleared by reading it), SO_TYPE,
// SO_DOMAIN, SO_PROTOCOL, SO_ACCEPTCONN.
func (t *Sockets) GetsockoptInt(fd, level, opt int) (int, error) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return 0, errno
	}
	defer s.f.put()
	return s.getsockoptInt(level, opt)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *socket) getsockoptInt(level, opt int) (int, error) {
	ops := s.ep.SocketOptions()
	switch level {
	case unix.SOL_SOCKET:
		switch opt {
		case unix.SO_ERROR:
			err := s.ep.LastError()
			if err == nil {
				// A non-blocking connect is usually confirmed here.
				if s.stype == unix.SOCK_STREAM && tcp.EndpointState(s.ep.State()) == tcp.StateEstablished {
					s.armKeepalive()
				}
				return 0, nil
			}
			// gVisor keeps a connection error twice (as the hard
			// error and as the last error); Linux's sk_err is
			// reported once, by whichever call comes first.
			if isHardError(err) && s.errSeen.Swap(true) {
				return 0, nil
			}
			return int(errnoOf(err)), nil
		case unix.SO_TYPE:
			return s.stype, nil
		case unix.SO_DOMAIN:
			return s.family, nil
		case unix.SO_PROTOCOL:
			return s.proto, nil
		case unix.SO_ACCEPTCONN:
			return b2i(s.stype == unix.SOCK_STREAM && tcp.EndpointState(s.ep.State()) == tcp.StateListen), nil
		case unix.SO_RCVBUF:
			return int(ops.GetReceiveBufferSize()), nil
		case unix.SO_SNDBUF:
			return int(ops.GetSendBufferSize()), nil
		case unix.SO_RCVLOWAT:
			return int(ops.GetRcvlowat()), nil
		case unix.SO_LINGER:
			return 0, unix.EINVAL
		}
		if o, ok := socketFlagOpts[opt]; ok {
			return b2i(o.get(ops)), nil
		}
		return 0, unix.ENOPROTOOPT
	case unix.IPPROTO_TCP:
		if s.stype != unix.SOCK_STREAM {
			return 0, s.getsockoptBadLevel()
		}
		return s.getsockoptTCP(opt)
	case unix.IPPROTO_IP:
		switch opt {
		case unix.IP_TOS:
			return s.getInt(tcpip.IPv4TOSOption)
		case unix.IP_TTL:
			v, err := s.getInt(tcpip.IPv4TTLOption)
			if err == nil && v == 0 {
				v = 64 // Linux reports the default, not "unset"
			}
			return v, err
		}
		return 0, unix.ENOPROTOOPT
	case unix.IPPROTO_IPV6:
		if s.family != unix.AF_INET6 {
			return 0, s.getsockoptBadLevel()
		}
		switch opt {
		case unix.IPV6_V6ONLY:
			return b2i(ops.GetV6Only()), nil
		case unix.IPV6_TCLASS:
			return s.getInt(tcpip.IPv6TrafficClassOption)
		case unix.IPV6_UNICAST_HOPS:
			v, err := s.getInt(tcpip.IPv6HopLimitOption)
			if err == nil && v == -1 {
				v = 64
			}
			return v, err
		}
		return 0, unix.ENOPROTOOPT
	}
	return 0, s.getsockoptBadLevel()
}

// getsockoptBadLevel is Linux's answer to getsockopt at a level the socket
// does not have: an IPv4 socket hands it to ip_getsockopt, which says
// EOPNOTSUPP; an IPv6 socket to ipv6_getsockopt, which says ENOPROTOOPT.
func (s *socket) getsockoptBadLevel() error {
	if s.family == unix.AF_INET {
		return unix.EOPNOTSUPP
	}
	return unix.ENOPROTOOPT
}

func (s *socket) getsockoptTCP(opt int) (int, error) {
	ops := s.ep.SocketOptions()
	switch opt {
	case unix.TCP_NODELAY:
		return b2i(!ops.GetDelayOption()), nil
	case unix.TCP_CORK:
		return b2i(s.getCork()), nil
	case unix.TCP_QUICKACK:
		return b2i(ops.GetQuickAck()), nil
	case unix.TCP_KEEPIDLE:
		return getDuration[tcpip.KeepaliveIdleOption](s, time.Second)
	case unix.TCP_KEEPINTVL:
		return getDuration[tcpip.KeepaliveIntervalOption](s, time.Second)
	case unix.TCP_KEEPCNT:
		return s.getInt(tcpip.KeepaliveCountOption)
	case unix.TCP_MAXSEG:
		if mss := s.connectedMSS(); mss > 0 {
			return mss, nil
		}
		return s.getInt(tcpip.MaxSegOption)
	case unix.TCP_USER_TIMEOUT:
		return getDuration[tcpip.TCPUserTimeoutOption](s, time.Millisecond)
	case unix.TCP_SYNCNT:
		return s.getInt(tcpip.TCPSynCountOption)
	case unix.TCP_WINDOW_CLAMP:
		return s.getInt(tcpip.TCPWindowClampOption)
	}
	return 0, unix.ENOPROTOOPT
}

// getDuration reads gVisor's duration option T in units of unit.
func getDuration[T ~int64, P interface {
	*T
	tcpip.GettableSocketOption
}](s *socket, unit time.Duration) (int, error) {
	var o T
	if err := s.ep.GetSockOpt(P(&o)); err != nil {
		return 0, errnoOf(err)
	}
	return int(time.Duration(o) / unit), nil
}

func (s *socket) getInt(o tcpip.SockOptInt) (int, error) {
	v, err := s.ep.GetSockOptInt(o)
	if err != nil {
		return 0, errnoOf(err)
	}
	return v, nil
}

// optSocket looks fd up for a call that takes the one option wantOpt at
// wantLevel, and is ENOPROTOOPT for any other. The caller puts s.f.
func (t *Sockets) optSocket(fd, level, opt, wantLevel, wantOpt int) (*socket, unix.Errno) {
	s, errno := t.socket(fd)
	if errno != 0 {
		return nil, errno
	}
	if level != wantLevel || opt != wantOpt {
		s.f.put()
		return nil, unix.ENOPROTOOPT
	}
	return s, 0
}

// SetsockoptLinger is setsockopt(SOL_SOCKET, SO_LINGER). Linger on with a
// zero timeout makes close reset the connection (RST) instead of sending
// FIN. A non-zero timeout is recorded but close does not wait (see the
// package doc).
func (t *Sockets) SetsockoptLinger(fd, level, opt int, l *unix.Linger) error {
	s, errno := t.optSocket(fd, level, opt, unix.SOL_SOCKET, unix.SO_LINGER)
	if errno != 0 {
		return errno
	}
	defer s.f.put()
	if l == nil {
		return unix.EFAULT
	}
	timeout := time.Duration(l.Linger) * time.Second
	if l.Linger < 0 {
		timeout = 0
	}
	s.ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: l.Onoff != 0, Timeout: timeout})
	return nil
}

// GetsockoptLinger is getsockopt(SOL_SOCKET, SO_LINGER).
func (t *Sockets) GetsockoptLinger(fd, level, opt int) (*unix.Linger, error) {
	s, errno := t.optSocket(fd, level, opt, unix.SOL_SOCKET, unix.SO_LINGER)
	if errno != 0 {
		return nil, errno
	}
	defer s.f.put()
	l := s.ep.SocketOptions().GetLinger()
	return &unix.Linger{Onoff: int32(b2i(l.Enabled)), Linger: int32(l.Timeout / time.Second)}, nil
}

// GetsockoptTCPInfo is getsockopt(IPPROTO_TCP, TCP_INFO). gVisor keeps a
// subset of Linux's struct tcp_info: the state, the congestion state, RTO,
// RTT and its variance (µs), the congestion window and slow-start threshold
// (segments), the MSS and reordering; the other fields are zero.
func (t *Sockets) GetsockoptTCPInfo(fd, level, opt int) (*unix.TCPInfo, error) {
	s, errno := t.optSocket(fd, level, opt, unix.IPPROTO_TCP, unix.TCP_INFO)
	if errno != 0 {
		return nil, errno
	}
	defer s.f.put()
	if s.stype != unix.SOCK_STREAM {
		return nil, unix.EOPNOTSUPP
	}
	var o tcpip.TCPInfoOption
	if err := s.ep.GetSockOpt(&o); err != nil {
		return nil, errnoOf(err)
	}
	info := &unix.TCPInfo{
		State:        linuxTCPState(tcp.EndpointState(o.State)),
		Ca_state:     linuxCAState(o.CcState),
		Rto:          uint32(o.RTO / time.Microsecond),
		Rtt:          uint32(o.RTT / time.Microsecond),
		Rttvar:       uint32(o.RTTVar / time.Microsecond),
		Snd_ssthresh: o.SndSsthresh,
		Snd_cwnd:     o.SndCwnd,
	}
	if o.ReorderSeen {
		info.Reordering = 1
	}
	mss := s.connectedMSS()
	if mss == 0 {
		mss, _ = s.ep.GetSockOptInt(tcpip.MaxSegOption)
	}
	info.Snd_mss = uint32(mss)
	info.Advmss = uint32(mss)
	return info, nil
}

// linuxTCPState maps gVisor's TCP state to Linux's TCP_* numbering. The
// protocol states share Linux's values; gVisor's own states are TCP_CLOSE,
// which is what Linux reports for a socket that is not connected.
func linuxTCPState(st tcp.EndpointState) uint8 {
	if st >= tcp.StateEstablished && st <= tcp.StateClosing {
		return uint8(st)
	}
	if st == tcp.StateConnecting {
		return uint8(tcp.StateSynSent)
	}
	return uint8(tcp.StateClose)
}

// linuxCAState maps gVisor's congestion state to Linux's TCP_CA_* values
// (Open 0, Disorder 1, CWR 2, Recovery 3, Loss 4).
func linuxCAState(s tcpip.CongestionControlState) uint8 {
	switch s {
	case tcpip.Disorder:
		return 1
	case tcpip.FastRecovery, tcpip.SACKRecovery:
		return 3
	case tcpip.RTORecovery:
		return 4
	}
	return 0
}

// connectedMSS is the MSS of a connected TCP socket, for TCP_MAXSEG and
// TCP_INFO: the NIC's MTU less the IP and TCP headers, or the user's
// TCP_MAXSEG if smaller. gVisor itself reports the 536-byte default once
// connected; Linux reports the path's MSS. 0 when not connected.
func (s *socket) connectedMSS() int {
	if _, err := s.ep.GetRemoteAddress(); err != nil {
		return 0
	}
	mtu := s.t.stack.MTU()
	mss := mtu - header.TCPMinimumSize - header.IPv4MinimumSize
	if s.family == unix.AF_INET6 {
		if a, err := s.ep.GetRemoteAddress(); err != nil || a.Addr.Len() == 16 {
			mss = mtu - header.TCPMinimumSize - header.IPv6MinimumSize
		}
	}
	return mss
}
