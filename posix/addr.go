package posix

import (
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"

	xstack "github.com/xstack/xstack/stack"
)

// addrOp says what a socket address is for: Linux checks it differently in
// bind, connect and sendto.
type addrOp int

const (
	opBind addrOp = iota
	opConnect
	opSendTo
)

// fullAddress converts sa to a gVisor address for socket s and op, with the
// errno Linux returns for an address of the wrong family:
//
//   - an AF_INET socket takes only sockaddr_in; anything else is
//     EAFNOSUPPORT (inet_bind, tcp_v4_connect, udp_sendmsg);
//   - an AF_INET6 socket given a sockaddr_in: bind and TCP connect see a
//     too-short address, EINVAL (inet6_bind, tcp_v6_connect); UDP connect and
//     sendto use IPv4 unless IPV6_V6ONLY is set (ip6_datagram_connect,
//     udpv6_sendmsg), which we express as a v4-mapped address;
//   - a nil address is EINVAL; a port outside 0..65535 is EINVAL.
func (s *socket) fullAddress(sa unix.Sockaddr, op addrOp) (tcpip.FullAddress, unix.Errno) {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		if a.Port < 0 || a.Port > 0xffff {
			return tcpip.FullAddress{}, unix.EINVAL
		}
		if s.family == unix.AF_INET {
			return tcpip.FullAddress{Addr: addr4(a.Addr), Port: uint16(a.Port)}, 0
		}
		if op == opBind || s.stype == unix.SOCK_STREAM {
			return tcpip.FullAddress{}, unix.EINVAL
		}
		if s.ep.SocketOptions().GetV6Only() {
			if op == opConnect {
				return tcpip.FullAddress{}, unix.EAFNOSUPPORT
			}
			return tcpip.FullAddress{}, unix.ENETUNREACH
		}
		var m [16]byte
		m[10], m[11] = 0xff, 0xff
		copy(m[12:], a.Addr[:])
		return tcpip.FullAddress{Addr: tcpip.AddrFrom16(m), Port: uint16(a.Port)}, 0
	case *unix.SockaddrInet6:
		if a.Port < 0 || a.Port > 0xffff {
			return tcpip.FullAddress{}, unix.EINVAL
		}
		if s.family != unix.AF_INET6 {
			return tcpip.FullAddress{}, unix.EAFNOSUPPORT
		}
		if isMapped4(a.Addr) && s.ep.SocketOptions().GetV6Only() {
			// An IPv6-only socket has no IPv4 path: inet6_bind says
			// EINVAL, tcp_v6_connect and udpv6_sendmsg ENETUNREACH.
			if op == opBind {
				return tcpip.FullAddress{}, unix.EINVAL
			}
			return tcpip.FullAddress{}, unix.ENETUNREACH
		}
		fa := tcpip.FullAddress{Addr: addr16(a.Addr), Port: uint16(a.Port)}
		if a.ZoneId != 0 {
			fa.NIC = tcpip.NICID(a.ZoneId)
		} else if isLinkLocal6(a.Addr) {
			// Linux requires a scope for link-local peers; an lcore has
			// one NIC, so it is the only sensible scope.
			fa.NIC = xstack.NICID
		}
		return fa, 0
	case nil:
		return tcpip.FullAddress{}, unix.EINVAL
	default:
		return tcpip.FullAddress{}, unix.EAFNOSUPPORT
	}
}

// addr4 returns a for a non-zero address and the empty address (gVisor's
// "any") for 0.0.0.0.
func addr4(a [4]byte) tcpip.Address {
	if a == [4]byte{} {
		return tcpip.Address{}
	}
	return tcpip.AddrFrom4(a)
}

// addr16 is addr4 for IPv6: :: is "any".
func addr16(a [16]byte) tcpip.Address {
	if a == [16]byte{} {
		return tcpip.Address{}
	}
	return tcpip.AddrFrom16(a)
}

func isMapped4(a [16]byte) bool {
	return a[0]|a[1]|a[2]|a[3]|a[4]|a[5]|a[6]|a[7]|a[8]|a[9] == 0 && a[10] == 0xff && a[11] == 0xff
}

func isLinkLocal6(a [16]byte) bool { return a[0] == 0xfe && a[1]&0xc0 == 0x80 }

// sockaddr converts a gVisor address to the sockaddr of s's family. An
// AF_INET6 socket reports IPv4 peers as v4-mapped addresses, as Linux's
// dual-stack sockets do.
func (s *socket) sockaddr(fa tcpip.FullAddress) unix.Sockaddr {
	if s.family == unix.AF_INET {
		sa := new(unix.SockaddrInet4)
		setInet4(sa, fa)
		return sa
	}
	sa := new(unix.SockaddrInet6)
	setInet6(sa, fa)
	return sa
}

// peerSockaddr is sockaddr for the peer address accept returns. An IPv4
// one is kept in the accepted socket s (peer4) rather than allocated:
// accept is once per connection, and nothing writes it after accept
// returns. (An IPv6 one would take the socket into a larger size class.)
func (s *socket) peerSockaddr(fa tcpip.FullAddress) unix.Sockaddr {
	if s.family == unix.AF_INET {
		setInet4(&s.peer4, fa)
		return &s.peer4
	}
	return s.sockaddr(fa)
}

func setInet4(sa *unix.SockaddrInet4, fa tcpip.FullAddress) {
	*sa = unix.SockaddrInet4{Port: int(fa.Port)}
	if fa.Addr.Len() == 4 {
		sa.Addr = fa.Addr.As4()
	}
}

func setInet6(sa *unix.SockaddrInet6, fa tcpip.FullAddress) {
	*sa = unix.SockaddrInet6{Port: int(fa.Port)}
	switch fa.Addr.Len() {
	case 16:
		sa.Addr = fa.Addr.As16()
		if isLinkLocal6(sa.Addr) {
			sa.ZoneId = uint32(fa.NIC)
			if sa.ZoneId == 0 {
				sa.ZoneId = uint32(xstack.NICID)
			}
		}
	case 4:
		sa.Addr[10], sa.Addr[11] = 0xff, 0xff
		a4 := fa.Addr.As4()
		copy(sa.Addr[12:], a4[:])
	}
}
