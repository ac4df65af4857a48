package testframe

import (
	"bytes"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// TestIPv4TCP reads a built frame back with gVisor's accessors and checks
// every field and both checksums.
func TestIPv4TCP(t *testing.T) {
	seg := TCP{SrcPort: 40000, DstPort: 80, Seq: 7, Ack: 9, Flags: header.TCPFlagSyn, Window: 512, Options: []byte{2, 4, 5, 0xb4, 1}}.Segment([]byte("data"))
	f := IPv4{Proto: header.TCPProtocolNumber, ID: 3, Flags: header.IPv4FlagDontFragment, Options: NOPs(8)}.Frame(seg)
	Checksums(f)
	eth := header.Ethernet(f)
	if eth.SourceAddress() != MACPeer || eth.DestinationAddress() != MACUs || eth.Type() != header.IPv4ProtocolNumber {
		t.Fatalf("ethernet %v > %v type %#x", eth.SourceAddress(), eth.DestinationAddress(), eth.Type())
	}
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	if !ip.IsValid(len(ip)) || !ip.IsChecksumValid() {
		t.Fatalf("IPv4 header invalid or its checksum wrong: % x", ip)
	}
	if ip.HeaderLength() != 28 || ip.SourceAddress() != V4Peer || ip.DestinationAddress() != V4Us ||
		ip.ID() != 3 || ip.Flags() != header.IPv4FlagDontFragment || ip.TTL() != 64 || ip.TransportProtocol() != header.TCPProtocolNumber {
		t.Fatalf("IPv4 header % x", ip[:ip.HeaderLength()])
	}
	tcp := header.TCP(ip.Payload())
	if tcp.DataOffset() != 28 || tcp.SourcePort() != 40000 || tcp.DestinationPort() != 80 || tcp.SequenceNumber() != 7 ||
		tcp.AckNumber() != 9 || tcp.Flags() != header.TCPFlagSyn || tcp.WindowSize() != 512 || string(tcp.Payload()) != "data" {
		t.Fatalf("TCP header % x", tcp)
	}
	if !bytes.Equal(tcp.Options(), []byte{2, 4, 5, 0xb4, 1, 0, 0, 0}) {
		t.Errorf("TCP options % x, want them padded to 8 bytes", tcp.Options())
	}
	if !tcp.IsChecksumValid(V4Peer, V4Us, checksum.Checksum(tcp.Payload(), 0), uint16(len(tcp.Payload()))) {
		t.Error("TCP checksum wrong")
	}
}

// TestIPv6Ext checks the extension headers chain as gVisor's IPv6 parser
// reads them, and that a transport header behind one keeps a zero checksum.
func TestIPv6Ext(t *testing.T) {
	udp := UDP{SrcPort: 5353, DstPort: 53}.Datagram([]byte("query"))
	pkt := IPv6{Next: tcpip.TransportProtocolNumber(header.IPv6HopByHopOptionsExtHdrIdentifier)}.Packet(
		OptionsHeader(tcpip.TransportProtocolNumber(header.IPv6FragmentExtHdrIdentifier), 1, FragmentHeader(header.UDPProtocolNumber, 77, 16, true, udp)))
	f := Frame(header.IPv6ProtocolNumber, pkt)
	Checksums(f)
	ip := header.IPv6(f[header.EthernetMinimumSize:])
	if !ip.IsValid(len(ip)) || ip.HopLimit() != 64 || ip.SourceAddress() != V6Peer || ip.DestinationAddress() != V6Us {
		t.Fatalf("IPv6 header % x", ip[:header.IPv6MinimumSize])
	}
	hbh := ip.Payload()
	if len(hbh) < 16 || hbh[0] != uint8(header.IPv6FragmentExtHdrIdentifier) || hbh[1] != 1 || hbh[2] != 1 || hbh[3] != 12 {
		t.Fatalf("hop-by-hop header % x", hbh)
	}
	frag := header.IPv6Fragment(hbh[16:])
	if !frag.IsValid() || frag.NextHeader() != uint8(header.UDPProtocolNumber) || frag.ID() != 77 ||
		frag.FragmentOffset() != 2 || !frag.More() {
		t.Fatalf("fragment header % x", hbh[16:24])
	}
	if u := header.UDP(frag.Payload()); u.Length() != uint16(len(udp)) || u.Checksum() != 0 {
		t.Errorf("UDP header % x: length %d, checksum %#x, want %d and 0", u[:8], u.Length(), u.Checksum(), len(udp))
	}
}

// TestChecksums checks the transport checksums Checksums sets against
// gVisor's verifiers, the UDP checksum that sums to zero sent as 0xffff,
// and that fragments keep theirs.
func TestChecksums(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proto tcpip.TransportProtocolNumber
		l4    []byte
	}{
		{"udp", header.UDPProtocolNumber, UDP{SrcPort: 1, DstPort: 2}.Datagram([]byte("x"))},
		{"icmp6", header.ICMPv6ProtocolNumber, ICMP(header.ICMPv6EchoRequest, 0, 1<<16|2, []byte("ping"))},
	} {
		f := IPv6{Next: tc.proto}.Frame(tc.l4)
		Checksums(f)
		l4 := header.IPv6(f[header.EthernetMinimumSize:]).Payload()
		sum := checksum.Checksum(l4, header.PseudoHeaderChecksum(tc.proto, V6Peer, V6Us, uint16(len(l4))))
		if sum != 0xffff {
			t.Errorf("%s: checksum %#x does not verify", tc.name, sum)
		}
	}
	icmp := IPv4{Proto: header.ICMPv4ProtocolNumber}.Frame(ICMP(header.ICMPv4Echo, 0, 5<<16, nil))
	Checksums(icmp)
	if m := header.ICMPv4(icmp[header.EthernetMinimumSize+header.IPv4MinimumSize:]); checksum.Checksum(m, 0) != 0xffff || m.Ident() != 5 {
		t.Errorf("ICMPv4 echo % x: wrong checksum or ident", m)
	}

	// A datagram whose checksum sums to 0 goes out as 0xffff.
	zero := UDP{SrcPort: 1, DstPort: 2}.Datagram([]byte{0, 0})
	pad := ^checksum.Checksum(zero, header.PseudoHeaderChecksum(header.UDPProtocolNumber, V4Peer, V4Us, uint16(len(zero))))
	zero[8], zero[9] = byte(pad>>8), byte(pad) // the payload makes the sum 0xffff, its complement 0
	L4Checksum(header.UDPProtocolNumber, V4Peer, V4Us, zero)
	if header.UDP(zero).Checksum() != 0xffff {
		t.Errorf("UDP checksum %#x, want 0xffff for a sum of 0", header.UDP(zero).Checksum())
	}

	frag := IPv4{Proto: header.UDPProtocolNumber, Flags: header.IPv4FlagMoreFragments}.Frame(UDP{SrcPort: 1, DstPort: 2}.Datagram(nil))
	Checksums(frag)
	ip := header.IPv4(frag[header.EthernetMinimumSize:])
	if !ip.IsChecksumValid() || header.UDP(ip.Payload()).Checksum() != 0 {
		t.Errorf("first fragment % x: want a valid header checksum and the UDP one left 0", ip)
	}
}

// TestARP also checks that a header given only its destination takes the
// default source.
func TestARP(t *testing.T) {
	f := Eth{Dst: header.EthernetBroadcastAddress}.Frame(header.ARPProtocolNumber, ARP(header.ARPRequest, MACPeer, V4Peer, V4Us))
	a := header.ARP(f[header.EthernetMinimumSize:])
	if !a.IsValid() || a.Op() != header.ARPRequest || tcpip.LinkAddress(a.HardwareAddressSender()) != MACPeer ||
		tcpip.AddrFromSlice(a.ProtocolAddressSender()) != V4Peer || tcpip.AddrFromSlice(a.ProtocolAddressTarget()) != V4Us {
		t.Fatalf("ARP % x", a)
	}
	if e := header.Ethernet(f); e.SourceAddress() != MACPeer || e.DestinationAddress() != header.EthernetBroadcastAddress {
		t.Errorf("ethernet %v > %v, want %v > broadcast", e.SourceAddress(), e.DestinationAddress(), MACPeer)
	}
}
