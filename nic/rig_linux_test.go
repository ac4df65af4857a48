package nic

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/netns"
)

// requireRoot skips tb when not root, or fails it when
// XSTACK_REQUIRE_ROOT=1 (CI runs the privileged tests).
func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("XSTACK_REQUIRE_ROOT") == "1" {
		tb.Fatal("needs root (CAP_NET_ADMIN, CAP_BPF); failing instead of skipping because XSTACK_REQUIRE_ROOT=1")
	}
	tb.Skip("needs root (CAP_NET_ADMIN, CAP_BPF) to create namespaces, load XDP and open AF_XDP sockets")
}

// rig is two network namespaces joined by a veth pair:
//
//	stackNS: stackIf, kernel address kernelAddr; the stack answers to stackAddr
//	peerNS:  peerIf, peerAddr; TX checksum offload off
//
// Nothing touches the root namespace.
type rig struct {
	stackNS, peerNS string
	stackIf, peerIf string
	stackMAC        net.HardwareAddr
	peerMAC         net.HardwareAddr
	stackAddr       netip.Addr // not configured in the kernel: the stack's
	kernelAddr      netip.Addr // configured on stackIf in the kernel
	peerAddr        netip.Addr
	stackAddr6      netip.Addr
}

func run(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newRig(tb testing.TB) *rig {
	tb.Helper()
	requireRoot(tb)
	if _, err := exec.LookPath("ethtool"); err != nil {
		tb.Fatal("ethtool not found (apt-get install ethtool)")
	}
	var b [3]byte
	rand.Read(b[:])
	id := "xsn" + hex.EncodeToString(b[:])
	r := &rig{
		stackNS:    id + "s",
		peerNS:     id + "p",
		stackIf:    id + "a",
		peerIf:     id + "b",
		stackAddr:  netip.MustParseAddr("198.18.0.1"),
		kernelAddr: netip.MustParseAddr("198.18.0.2"),
		peerAddr:   netip.MustParseAddr("198.18.0.254"),
		stackAddr6: netip.MustParseAddr("2001:2::1"),
	}
	tb.Cleanup(func() {
		// Deleting a namespace deletes its end of the veth, and so the pair.
		exec.Command("ip", "netns", "del", r.stackNS).Run()
		exec.Command("ip", "netns", "del", r.peerNS).Run()
	})
	run(tb, "ip", "netns", "add", r.stackNS)
	run(tb, "ip", "netns", "add", r.peerNS)
	run(tb, "ip", "-n", r.stackNS, "link", "add", r.stackIf, "type", "veth", "peer", "name", r.peerIf, "netns", r.peerNS)
	run(tb, "ip", "-n", r.stackNS, "addr", "add", r.kernelAddr.String()+"/24", "dev", r.stackIf)
	run(tb, "ip", "-n", r.peerNS, "addr", "add", r.peerAddr.String()+"/24", "dev", r.peerIf)
	run(tb, "ip", "-n", r.stackNS, "link", "set", r.stackIf, "up")
	run(tb, "ip", "-n", r.peerNS, "link", "set", r.peerIf, "up")
	run(tb, "ip", "-n", r.stackNS, "link", "set", "lo", "up")
	run(tb, "ip", "-n", r.peerNS, "link", "set", "lo", "up")
	run(tb, "ip", "netns", "exec", r.peerNS, "ethtool", "-K", r.peerIf, "tx", "off")
	r.stackMAC = r.mac(tb, r.stackNS, r.stackIf)
	r.peerMAC = r.mac(tb, r.peerNS, r.peerIf)
	return r
}

func (r *rig) mac(tb testing.TB, ns, ifname string) net.HardwareAddr {
	tb.Helper()
	var mac net.HardwareAddr
	if err := netns.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err == nil {
			mac = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	return mac
}

// xdpAttached reports whether an XDP program is attached to the stack end.
func (r *rig) xdpAttached(tb testing.TB) bool {
	tb.Helper()
	out := run(tb, "ip", "-n", r.stackNS, "-d", "link", "show", "dev", r.stackIf)
	return strings.Contains(out, "prog/xdp")
}

// openPort opens a port with the stack's addresses and queue 0 on the stack end.
func (r *rig) openPort(tb testing.TB, mode XDPMode) (*Port, *XSKQueue) {
	return r.openPortConfig(tb, mode, QueueConfig{Queue: 0, Frames: 4096, RxRing: 1024, TxRing: 1024})
}

func (r *rig) openPortConfig(tb testing.TB, mode XDPMode, qc QueueConfig) (*Port, *XSKQueue) {
	tb.Helper()
	var p *Port
	var q *XSKQueue
	err := netns.Do(r.stackNS, func() (err error) {
		p, err = OpenPort(PortConfig{
			Ifname: r.stackIf, XDPMode: mode, PassToKernel: true,
			Addrs: []netip.Addr{r.stackAddr, r.stackAddr6},
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

func (r *rig) peerSocket(tb testing.TB) *peerSocket {
	tb.Helper()
	var fd int
	err := netns.Do(r.peerNS, func() error {
		ifi, err := net.InterfaceByName(r.peerIf)
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if err != nil {
		tb.Fatalf("AF_PACKET socket on %s: %v", r.peerIf, err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	return &peerSocket{fd: fd}
}

func (s *peerSocket) send(tb testing.TB, frame []byte) {
	tb.Helper()
	if _, err := unix.Write(s.fd, frame); err != nil {
		tb.Fatalf("peer send: %v", err)
	}
}

// recvMatching returns the first incoming frame for which match is true.
func (s *peerSocket) recvMatching(tb testing.TB, timeout time.Duration, match func([]byte) bool) []byte {
	tb.Helper()
	buf := make([]byte, 4096)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		pfd := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
		unix.Poll(pfd, 100)
		n, from, err := unix.Recvfrom(s.fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if match(buf[:n]) {
			return append([]byte(nil), buf[:n]...)
		}
	}
	return nil
}

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
