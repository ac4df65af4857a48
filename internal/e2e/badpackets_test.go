package e2e

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
	"github.com/xstack/xstack/internal/testframe"
	"github.com/xstack/xstack/internal/xstest"
)

// rawSender writes Ethernet frames from the peer namespace with an
// AF_PACKET socket, bypassing the peer kernel's own IP stack.
type rawSender struct {
	fd int
	sa unix.SockaddrLinklayer
}

func newRawSender(t *testing.T, r *rig.Rig) *rawSender {
	t.Helper()
	fd, ifindex, err := rigtest.PeerPacketSocket(r, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &rawSender{fd: fd, sa: unix.SockaddrLinklayer{Ifindex: ifindex, Halen: 6}}
}

func (s *rawSender) send(t *testing.T, frame []byte) {
	t.Helper()
	if err := unix.Sendto(s.fd, frame, 0, &s.sa); err != nil {
		t.Fatalf("send %d-byte frame: %v", len(frame), err)
	}
}

// frames builds frames from the peer to the stack, on the rig's addresses,
// with testframe.
type frames struct{ r *rig.Rig }

func (f frames) eth(typ tcpip.NetworkProtocolNumber, payload []byte) []byte {
	return testframe.Eth{Src: tcpip.LinkAddress(f.r.PeerMAC), Dst: tcpip.LinkAddress(f.r.StackMAC)}.Frame(typ, payload)
}

func addr(a netip.Addr) tcpip.Address { return tcpip.AddrFromSlice(a.AsSlice()) }

// withSum returns l4, a message of proto from src to dst, with its
// checksum set.
func withSum(proto tcpip.TransportProtocolNumber, src, dst netip.Addr, l4 []byte) []byte {
	testframe.L4Checksum(proto, addr(src), addr(dst), l4)
	return l4
}

// tcpSeg is a TCP segment from the peer's port 40000 to port 80, with a
// correct checksum for the given addresses.
func tcpSeg(src, dst netip.Addr, flags header.TCPFlags, payload []byte) []byte {
	return tcpFull(netip.AddrPortFrom(src, 40000), netip.AddrPortFrom(dst, 80), 1000, 0, flags, nil, payload)
}

func udpDgram(src, dst netip.Addr, payload []byte) []byte {
	return withSum(header.UDPProtocolNumber, src, dst, testframe.UDP{SrcPort: 40000, DstPort: 7}.Datagram(payload))
}

// ip4 wraps payload in the IPv4 header h, from the peer to the stack
// unless h says otherwise, with a correct header checksum; edit may then
// spoil it.
func (f frames) ip4(h testframe.IPv4, payload []byte, edit func(header.IPv4)) []byte {
	if h.Src.Len() == 0 {
		h.Src, h.Dst = addr(f.r.PeerAddr4), addr(f.r.StackAddr4)
	}
	ip := header.IPv4(h.Packet(payload))
	ip.SetChecksum(^ip.CalculateChecksum())
	if edit != nil {
		edit(ip)
	}
	return f.eth(header.IPv4ProtocolNumber, ip)
}

// ipv4 is f.ip4 of a datagram of proto with options opts.
func (f frames) ipv4(proto tcpip.TransportProtocolNumber, opts []byte, payload []byte, edit func(header.IPv4)) []byte {
	return f.ip4(testframe.IPv4{Proto: proto, ID: 7, Options: opts}, payload, edit)
}

// ip6 wraps payload in the IPv6 header h, from the peer to the stack
// unless h says otherwise; edit may then spoil it.
func (f frames) ip6(h testframe.IPv6, payload []byte, edit func(header.IPv6)) []byte {
	if h.Src.Len() == 0 {
		h.Src, h.Dst = addr(f.r.PeerAddr6), addr(f.r.StackAddr6)
	}
	ip := header.IPv6(h.Packet(payload))
	if edit != nil {
		edit(ip)
	}
	return f.eth(header.IPv6ProtocolNumber, ip)
}

func (f frames) ipv6(next tcpip.TransportProtocolNumber, payload []byte, edit func(header.IPv6)) []byte {
	return f.ip6(testframe.IPv6{Next: next}, payload, edit)
}

// TestBadPackets sends classes of malformed frames from the peer with an
// AF_PACKET socket. Each class must show up in the stack's drop counters,
// and helloworld must keep answering correctly afterwards.
func TestBadPackets(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	want := reference(t, r, false)
	p := startHelloworld(t, r)
	// Let the stack and the peer know each other first.
	if out, err := r.Run(r.PeerNS, "ping", "-c1", "-W2", r.StackAddr4.String()); err != nil {
		t.Fatalf("ping: %v\n%s", err, out)
	}
	s := newRawSender(t, r)
	f := frames{r}
	p4, s4 := r.PeerAddr4, r.StackAddr4
	p6, s6 := r.PeerAddr6, r.StackAddr6
	syn4 := tcpSeg(p4, s4, header.TCPFlagSyn, nil)
	syn6 := tcpSeg(p6, s6, header.TCPFlagSyn, nil)
	// badSum spoils the checksum at offset off (16 in TCP, 6 in UDP).
	badSum := func(b []byte, off int) []byte { c := append([]byte(nil), b...); c[off] ^= 0xff; return c }

	classes := []struct {
		name     string
		frame    []byte
		counters []string // any of these counts the class
	}{
		{"ipv4 header longer than the frame", f.ipv4(header.TCPProtocolNumber, nil, nil, func(ip header.IPv4) { ip[0] = 0x4f }),
			[]string{"ip.malformed_packets_received"}},
		{"ipv4 total length beyond the frame", f.ipv4(header.TCPProtocolNumber, nil, syn4, func(ip header.IPv4) {
			ip.SetTotalLength(1400)
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
		}), []string{"ip.malformed_packets_received"}},
		{"ipv4 bad header checksum", f.ipv4(header.TCPProtocolNumber, nil, syn4, func(ip header.IPv4) { ip.SetChecksum(ip.Checksum() + 1) }),
			[]string{"ip.malformed_packets_received"}},
		{"ipv4 bad option length", f.ipv4(header.TCPProtocolNumber, []byte{7, 40, 4, 0}, syn4, nil),
			[]string{"ip.malformed_packets_received", "ip.option_unknown_received", "icmp.v4.packets_sent.param_problem"}},
		{"ipv4 truncated tcp header", f.ipv4(header.TCPProtocolNumber, nil, syn4[:10], nil),
			[]string{"tcp.invalid_segments_received", "nics.malformed_l4_rcvd_packets"}},
		{"ipv4 tcp bad checksum", f.ipv4(header.TCPProtocolNumber, nil, badSum(syn4, 16), nil),
			[]string{"tcp.checksum_errors"}},
		{"ipv4 tcp every flag set", f.ipv4(header.TCPProtocolNumber, nil, tcpSeg(p4, s4, 0xff, nil), nil),
			// SYN and FIN together: the link endpoint drops it before
			// gVisor (Linux discards it too, answering nothing).
			[]string{"link.rx_syn_fin"}},
		{"ipv4 udp bad checksum", f.ipv4(header.UDPProtocolNumber, nil, badSum(udpDgram(p4, s4, []byte("x")), 6), nil),
			[]string{"udp.checksum_errors"}},
		{"ipv4 overlapping fragments", nil, []string{"ip.malformed_fragments_received", "ip.malformed_packets_received"}},
		{"ipv4 fragment beyond 64 KiB", f.ip4(testframe.IPv4{Proto: header.UDPProtocolNumber, ID: 7, Flags: header.IPv4FlagMoreFragments, FragOff: 65528},
			make([]byte, 64), nil), []string{"ip.malformed_fragments_received", "ip.malformed_packets_received"}},
		{"ipv6 payload length beyond the frame", f.ipv6(header.TCPProtocolNumber, syn6, func(ip header.IPv6) { ip.SetPayloadLength(1400) }),
			[]string{"ip.malformed_packets_received"}},
		{"ipv6 truncated tcp header", f.ipv6(header.TCPProtocolNumber, syn6[:10], nil),
			[]string{"tcp.invalid_segments_received", "nics.malformed_l4_rcvd_packets"}},
		{"ipv6 tcp bad checksum", f.ipv6(header.TCPProtocolNumber, badSum(syn6, 16), nil),
			[]string{"tcp.checksum_errors"}},
		{"arp truncated", f.eth(header.ARPProtocolNumber, arpTruncated(r)),
			[]string{"arp.malformed_packets_received"}},
	}
	// Overlapping fragments: two first fragments of the same datagram with
	// different lengths, then a last one overlapping both.
	over := func(off int, mf bool, n int) []byte { return f.frag4(4242, off, mf, make([]byte, n)) }

	before := p.Counters(t)
	for _, c := range classes {
		t.Run(c.name, func(t *testing.T) {
			const n = 20
			for i := 0; i < n; i++ {
				if c.frame == nil {
					s.send(t, over(0, true, 64))
					s.send(t, over(32, false, 64))
					continue
				}
				s.send(t, c.frame)
			}
			var after map[string]uint64
			if err := xstest.Until(5*time.Second, func() error {
				after = p.Counters(t)
				sum := uint64(0)
				for _, name := range c.counters {
					sum += after[name] - before[name]
				}
				if sum < n {
					return errors.New("not counted")
				}
				return nil
			}); err != nil {
				t.Fatalf("%v counted fewer than the %d frames sent; counters that moved:\n%s", c.counters, n, moved(before, after))
			}
			t.Logf("counters that moved:\n%s", moved(before, after))
			if after["tcp.current_established"] != before["tcp.current_established"] {
				t.Errorf("a connection was established by a malformed frame")
			}
			before = after
		})
	}

	// Frames too short for the XDP program to see a destination address
	// (a bare Ethernet header, an IPv4 header cut before its addresses) are
	// not the stack's: the program passes them to the kernel, which drops
	// them. The stack never sees them.
	t.Run("too short to classify", func(t *testing.T) {
		const n = 20
		k := snmp(t, r, r.StackNS)
		for i := 0; i < n; i++ {
			s.send(t, f.eth(header.IPv4ProtocolNumber, nil))
			s.send(t, f.eth(header.IPv4ProtocolNumber, f.ipv4(header.TCPProtocolNumber, nil, syn4, nil)[14:26]))
			s.send(t, f.eth(header.IPv6ProtocolNumber, f.ipv6(header.TCPProtocolNumber, syn6, nil)[14:40]))
		}
		// The frames did arrive: the kernel dropped them as header errors.
		w := map[string]uint64{"Ip.InHdrErrors": 2 * n, "Ip6InHdrErrors": n}
		xstest.WaitFor(t, 5*time.Second, "the kernel dropping the short frames as header errors", func() error {
			if k2 := snmp(t, r, r.StackNS); !reached(k, k2, w) {
				return fmt.Errorf("Ip.InHdrErrors +%d, Ip6InHdrErrors +%d",
					k2["Ip.InHdrErrors"]-k["Ip.InHdrErrors"], k2["Ip6InHdrErrors"]-k["Ip6InHdrErrors"])
			}
			return nil
		})
		after := p.Counters(t)
		if d := after["link.rx_frames"] - before["link.rx_frames"]; d != 0 {
			t.Errorf("%d frames too short to classify reached the stack:\n%s", d, moved(before, after))
		}
		before = after
	})

	// Still serving, correctly.
	c, err := dial(r.PeerNS, netip.AddrPortFrom(r.StackAddr4, 80))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < 10; i++ {
		got, err := fetch(c, br, false)
		if err != nil || string(got) != string(want) {
			t.Fatalf("after the bad packets, request %d: %v %q", i, err, got)
		}
	}
}

// arpTruncated is an ARP request for the stack's address whose hardware
// address length claims more bytes than the packet carries.
func arpTruncated(r *rig.Rig) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // IPv4
	b[4], b[5] = 200, 4                       // hardware address length 200
	binary.BigEndian.PutUint16(b[6:], 1)
	copy(b[8:], r.PeerMAC)
	copy(b[14:], r.PeerAddr4.AsSlice())
	copy(b[24:], r.StackAddr4.AsSlice())
	return b
}

func moved(before, after map[string]uint64) string {
	var lines []string
	for k, v := range after {
		if v != before[k] && !strings.HasPrefix(k, "nic.") && !strings.HasPrefix(k, "loop.") && !strings.HasPrefix(k, "umem.") {
			lines = append(lines, k+" +"+itoa(v-before[k]))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
