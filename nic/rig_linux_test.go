package nic

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
	"github.com/xstack/xstack/internal/xstest"
)

// testRig is the rig of internal/rig with the helpers the tests of this
// package use on it. Its addresses are the stack's (StackAddr4/6, not
// configured in the kernel), the stack-side kernel's (KernelAddr4) and the
// peer's (PeerAddr4); TX checksum offload is off on the peer's end.
type testRig struct{ *rig.Rig }

func newRig(tb testing.TB) *testRig {
	tb.Helper()
	return &testRig{rigtest.New(tb, rig.Options{})}
}

// xdpAttached reports whether an XDP program is attached to the stack end.
func (r *testRig) xdpAttached(tb testing.TB) bool {
	tb.Helper()
	on, err := r.XDPAttached()
	if err != nil {
		tb.Fatal(err)
	}
	return on
}

// openPort opens a port with the stack's addresses and queue 0 on the stack end.
func (r *testRig) openPort(tb testing.TB, mode XDPMode) (*Port, *XSKQueue) {
	return r.openPortConfig(tb, mode, QueueConfig{Queue: 0, Frames: 4096, RxRing: 1024, TxRing: 1024})
}

func (r *testRig) openPortConfig(tb testing.TB, mode XDPMode, qc QueueConfig) (*Port, *XSKQueue) {
	tb.Helper()
	var p *Port
	var q *XSKQueue
	err := netns.Do(r.StackNS, func() (err error) {
		p, err = OpenPort(PortConfig{
			Ifname: r.StackIf, XDPMode: mode, PassToKernel: true,
			Addrs: []netip.Addr{r.StackAddr4, r.StackAddr6},
			Logf:  tb.Logf,
		})
		if err != nil {
			return err
		}
		q, err = p.OpenQueue(qc)
		return err
	})
	if err != nil {
		if p != nil {
			p.Close()
		}
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		q.Close()
		p.Close()
	})
	return p, q
}

// peerSocket is an AF_PACKET socket on the peer end.
type peerSocket struct{ fd int }

func (r *testRig) peerSocket(tb testing.TB) *peerSocket {
	tb.Helper()
	fd := r.packetSocket(tb, htons(unix.ETH_P_ALL))
	tb.Cleanup(func() { unix.Close(fd) })
	return &peerSocket{fd: fd}
}

// packetSocket opens an AF_PACKET socket bound to the peer end for the given
// protocol (network byte order; 0 for a socket that only sends), with the
// options opts applies.
func (r *testRig) packetSocket(tb testing.TB, protocol uint16, opts ...func(fd int) error) int {
	tb.Helper()
	fd, _, err := rigtest.PeerPacketSocket(r.Rig, protocol, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return fd
}

func (s *peerSocket) send(tb testing.TB, frame []byte) {
	tb.Helper()
	if _, err := unix.Write(s.fd, frame); err != nil {
		tb.Fatalf("peer send: %v", err)
	}
}

// recvMatching returns the first incoming frame for which match is true, or
// nil if none comes within timeout.
func (s *peerSocket) recvMatching(tb testing.TB, timeout time.Duration, match func([]byte) bool) []byte {
	tb.Helper()
	buf := make([]byte, 4096)
	var got []byte
	xstest.Until(timeout, func() error {
		pfd := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
		unix.Poll(pfd, 100)
		for {
			n, from, err := unix.Recvfrom(s.fd, buf, unix.MSG_DONTWAIT)
			if err != nil {
				return errNoFrame
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if match(buf[:n]) {
				got = append([]byte(nil), buf[:n]...)
				return nil
			}
		}
	})
	return got
}

var errNoFrame = errors.New("no matching frame")

func htons(v uint16) uint16 {
	return binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, v))
}

// Frame builders (no checksums: the receivers here do not check them).

func ethFrame(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	f := make([]byte, 0, 14+len(payload))
	f = append(f, dst...)
	f = append(f, src...)
	f = binary.BigEndian.AppendUint16(f, etherType)
	return append(f, payload...)
}

var broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

func arpRequest(src net.HardwareAddr, spa, tpa netip.Addr) []byte {
	p := []byte{0, 1, 8, 0, 6, 4, 0, 1}
	p = append(p, src...)
	p = append(p, spa.AsSlice()...)
	p = append(p, 0, 0, 0, 0, 0, 0)
	p = append(p, tpa.AsSlice()...)
	return ethFrame(broadcast, src, 0x0806, p)
}

func udp4Frame(dst, src net.HardwareAddr, saddr, daddr netip.Addr, payload []byte) []byte {
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0}
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip = append(ip, saddr.AsSlice()...)
	ip = append(ip, daddr.AsSlice()...)
	udp := binary.BigEndian.AppendUint16(nil, 40000)
	udp = binary.BigEndian.AppendUint16(udp, 9)
	udp = binary.BigEndian.AppendUint16(udp, uint16(8+len(payload)))
	udp = append(udp, 0, 0)
	return ethFrame(dst, src, 0x0800, append(append(ip, udp...), payload...))
}

func ipv6Frame(dst, src net.HardwareAddr, saddr, daddr netip.Addr, next byte, payload []byte) []byte {
	ip := []byte{0x60, 0, 0, 0, 0, 0, next, 255}
	binary.BigEndian.PutUint16(ip[4:], uint16(len(payload)))
	ip = append(ip, saddr.AsSlice()...)
	ip = append(ip, daddr.AsSlice()...)
	return ethFrame(dst, src, 0x86dd, append(ip, payload...))
}

func ndFrame(src net.HardwareAddr, saddr, daddr, target netip.Addr, icmpType byte) []byte {
	icmp := []byte{icmpType, 0, 0, 0, 0, 0, 0, 0}
	icmp = append(icmp, target.AsSlice()...)
	return ipv6Frame(broadcast, src, saddr, daddr, 58, icmp)
}

func hasPayload(marker []byte) func([]byte) bool {
	return func(f []byte) bool { return bytes.Contains(f, marker) }
}
