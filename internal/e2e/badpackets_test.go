package e2e

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
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
	s := &rawSender{fd: -1}
	err := netns.Do(r.PeerNS, func() error {
		ifi, err := net.InterfaceByName(r.PeerIf)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		s.fd = fd
		s.sa = unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
		return nil
	})
	if err != nil {
		t.Fatalf("AF_PACKET socket in %s: %v", r.PeerNS, err)
	}
	t.Cleanup(func() { unix.Close(s.fd) })
	return s
}

func (s *rawSender) send(t *testing.T, frame []byte) {
	t.Helper()
	if err := unix.Sendto(s.fd, frame, 0, &s.sa); err != nil {
		t.Fatalf("send %d-byte frame: %v", len(frame), err)
	}
}

// frames builds frames from the peer to the stack.
type frames struct{ r *rig.Rig }

func (f frames) eth(typ tcpip.NetworkProtocolNumber, payload []byte) []byte {
	b := make([]byte, header.EthernetMinimumSize+len(payload))
	header.Ethernet(b).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(f.r.PeerMAC), DstAddr: tcpip.LinkAddress(f.r.StackMAC), Type: typ,
	})
	copy(b[header.EthernetMinimumSize:], payload)
	return b
}

func addr(a netip.Addr) tcpip.Address { return tcpip.AddrFromSlice(a.AsSlice()) }

// tcpSeg is a TCP segment from the peer's port 40000 to port 80, with a
// correct checksum for the given addresses.
func tcpSeg(src, dst netip.Addr, flags header.TCPFlags, payload []byte) []byte {
	b := make([]byte, header.TCPMinimumSize+len(payload))
	t := header.TCP(b)
	t.Encode(&header.TCPFields{SrcPort: 40000, DstPort: 80, SeqNum: 1000, Flags: flags,
		WindowSize: 65535, DataOffset: header.TCPMinimumSize})
	copy(b[header.TCPMinimumSize:], payload)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, addr(src), addr(dst), uint16(len(b)))
	xsum = checksum.Checksum(b, xsum)
	t.SetChecksum(^xsum)
	return b
}

// fragUDP splits a UDP datagram into two IPv4 fragments: its first 16
// bytes and the rest.
func fragUDP(f frames, dgram []byte) [][]byte {
	frag := func(off uint16, more bool, b []byte) []byte {
		return f.ipv4(header.UDPProtocolNumber, nil, b, func(ip header.IPv4) {
			flags := uint8(0)
			if more {
				flags = header.IPv4FlagMoreFragments
			}
			ip.SetID(4343)
			ip.SetFlagsFragmentOffset(flags, off)
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
		})
	}
	return [][]byte{frag(0, true, dgram[:16]), frag(16, false, dgram[16:])}
}

func udpDgram(src, dst netip.Addr, payload []byte) []byte {
	b := make([]byte, header.UDPMinimumSize+len(payload))
	u := header.UDP(b)
	u.Encode(&header.UDPFields{SrcPort: 40000, DstPort: 7, Length: uint16(len(b))})
	copy(b[header.UDPMinimumSize:], payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, addr(src), addr(dst), uint16(len(b)))
	u.SetChecksum(^checksum.Checksum(b, xsum))
	return b
}

// ipv4 wraps payload in an IPv4 header with options opts and a correct
// header checksum; edit may then spoil it.
func (f frames) ipv4(proto tcpip.TransportProtocolNumber, opts []byte, payload []byte, edit func(header.IPv4)) []byte {
	hl := header.IPv4MinimumSize + len(opts)
	b := make([]byte, hl+len(payload))
	ip := header.IPv4(b)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(b)), TTL: 64, Protocol: uint8(proto),
		SrcAddr: addr(f.r.PeerAddr4), DstAddr: addr(f.r.StackAddr4), ID: 7})
	b[0] = 0x40 | byte(hl/4)
	copy(b[header.IPv4MinimumSize:], opts)
	copy(b[hl:], payload)
	ip.SetChecksum(0)
	ip.SetChecksum(^ip.CalculateChecksum())
	if edit != nil {
		edit(ip)
	}
	return f.eth(header.IPv4ProtocolNumber, b)
}

func (f frames) ipv6(next tcpip.TransportProtocolNumber, payload []byte, edit func(header.IPv6)) []byte {
	b := make([]byte, header.IPv6MinimumSize+len(payload))
	ip := header.IPv6(b)
	ip.Encode(&header.IPv6Fields{PayloadLength: uint16(len(payload)), TransportProtocol: next, HopLimit: 64,
		SrcAddr: addr(f.r.PeerAddr6), DstAddr: addr(f.r.StackAddr6)})
	copy(b[header.IPv6MinimumSize:], payload)
	if edit != nil {
		edit(ip)
	}
	return f.eth(header.IPv6ProtocolNumber, b)
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
			[]string{"link.rx_bad_checksum"}},
		{"ipv4 bad option length", f.ipv4(header.TCPProtocolNumber, []byte{7, 40, 4, 0}, syn4, nil),
			[]string{"ip.malformed_packets_received", "ip.option_unknown_received", "icmp.v4.packets_sent.param_problem"}},
		{"ipv4 truncated tcp header", f.ipv4(header.TCPProtocolNumber, nil, syn4[:10], nil),
			[]string{"tcp.invalid_segments_received", "nics.malformed_l4_rcvd_packets"}},
		{"ipv4 tcp bad checksum", f.ipv4(header.TCPProtocolNumber, nil, badSum(syn4, 16), nil),
			[]string{"link.rx_bad_checksum"}},
		{"ipv4 tcp every flag set", f.ipv4(header.TCPProtocolNumber, nil, tcpSeg(p4, s4, 0xff, nil), nil),
			// SYN and FIN together: the link endpoint drops it before
			// gVisor (Linux discards it too, answering nothing).
			[]string{"link.rx_syn_fin"}},
		{"ipv4 udp bad checksum", f.ipv4(header.UDPProtocolNumber, nil, badSum(udpDgram(p4, s4, []byte("x")), 6), nil),
			[]string{"link.rx_bad_checksum"}},
		{"ipv4 overlapping fragments", nil, []string{"ip.malformed_fragments_received", "ip.malformed_packets_received"}},
		{"ipv4 fragment beyond 64 KiB", f.ipv4(header.UDPProtocolNumber, nil, make([]byte, 64), func(ip header.IPv4) {
			ip.SetFlagsFragmentOffset(header.IPv4FlagMoreFragments, 65528)
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
		}), []string{"ip.malformed_fragments_received", "ip.malformed_packets_received"}},
		{"ipv6 payload length beyond the frame", f.ipv6(header.TCPProtocolNumber, syn6, func(ip header.IPv6) { ip.SetPayloadLength(1400) }),
			[]string{"ip.malformed_packets_received"}},
		{"ipv6 truncated tcp header", f.ipv6(header.TCPProtocolNumber, syn6[:10], nil),
			[]string{"tcp.invalid_segments_received", "nics.malformed_l4_rcvd_packets"}},
		{"ipv6 tcp bad checksum", f.ipv6(header.TCPProtocolNumber, badSum(syn6, 16), nil),
			[]string{"link.rx_bad_checksum"}},
		{"ipv6 udp bad checksum", f.ipv6(header.UDPProtocolNumber, badSum(udpDgram(p6, s6, []byte("x")), 6), nil),
			[]string{"link.rx_bad_checksum"}},
		// RFC 8200 8.1: a zero UDP checksum is not "none" over IPv6.
		{"ipv6 udp zero checksum", f.ipv6(header.UDPProtocolNumber, func() []byte { u := udpDgram(p6, s6, []byte("x")); u[6], u[7] = 0, 0; return u }(), nil),
			[]string{"link.rx_bad_checksum"}},
		// A fragment's transport checksum covers the reassembled
		// datagram, which only gVisor sees: it must still check it.
		{"ipv4 fragmented udp bad checksum", nil, []string{"udp.checksum_errors"}},
		{"arp truncated", f.eth(header.ARPProtocolNumber, arpTruncated(r)),
			[]string{"arp.malformed_packets_received"}},
	}
	// Overlapping fragments: two first fragments of the same datagram with
	// different lengths, then a last one overlapping both.
	over := func(off uint16, mf bool, n int) []byte {
		return f.ipv4(header.UDPProtocolNumber, nil, make([]byte, n), func(ip header.IPv4) {
			flags := uint8(0)
			if mf {
				flags = header.IPv4FlagMoreFragments
			}
			ip.SetID(4242)
			ip.SetFlagsFragmentOffset(flags, off)
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
		})
	}

	// Classes of more than one frame, sent in turn.
	frags := map[string][][]byte{
		"ipv4 fragmented udp bad checksum": fragUDP(f, badSum(udpDgram(p4, s4, make([]byte, 40)), 6)),
	}

	before := p.Counters(t)
	for _, c := range classes {
		t.Run(c.name, func(t *testing.T) {
			const n = 20
			for i := 0; i < n; i++ {
				if fs := frags[c.name]; fs != nil {
					for _, fr := range fs {
						s.send(t, fr)
					}
					continue
				}
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
