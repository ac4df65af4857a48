package stack

import (
	"encoding/binary"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/stack/packet"
)

// zwFrame returns an IPv4 TCP frame from 198.18.0.2:40000 to 198.18.0.1:80
// with ACK set, the given sequence and acknowledgment numbers, a timestamp
// option and n bytes of data.
func zwFrame(seq, ack uint32, n int) []byte {
	const optLen = 12
	tcpLen := header.TCPMinimumSize + optLen + n
	f := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+tcpLen)
	header.Ethernet(f).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	src, dst := tcpip.AddrFrom4([4]byte{198, 18, 0, 2}), tcpip.AddrFrom4([4]byte{198, 18, 0, 1})
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + tcpLen), TTL: 64,
		Protocol: uint8(header.TCPProtocolNumber), SrcAddr: src, DstAddr: dst})
	ip.SetChecksum(^ip.CalculateChecksum())
	t := header.TCP(ip[header.IPv4MinimumSize:])
	t.Encode(&header.TCPFields{SrcPort: 40000, DstPort: 80, SeqNum: seq, AckNum: ack,
		DataOffset: header.TCPMinimumSize + optLen, Flags: header.TCPFlagAck | header.TCPFlagPsh, WindowSize: 500})
	copy(t[header.TCPMinimumSize:], []byte{1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9})
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(tcpLen))
	t.SetChecksum(^checksum.Checksum(t, xsum)) // header and data
	return f
}

// parsed returns f's parsed headers.
func parsed(f []byte) *packet.Parsed {
	var p packet.Parsed
	packet.Parse(f, &p)
	return &p
}

// zwShut tells z that the stack advertised a zero window on the flow of
// zwFrame, acknowledging rcvNxt.
func zwShut(z *zeroWindow, rcvNxt uint32) {
	var m segMeta
	out := zwFrame(0, rcvNxt, 0)
	ip := out[header.EthernetMinimumSize:]
	// The stack's segment goes the other way.
	var a [4]byte
	copy(a[:], ip[12:16])
	copy(ip[12:16], ip[16:20])
	copy(ip[16:20], a[:])
	tcp := ip[header.IPv4MinimumSize:]
	tcp[0], tcp[1], tcp[2], tcp[3] = tcp[2], tcp[3], tcp[0], tcp[1]
	binary.BigEndian.PutUint32(tcp[8:12], rcvNxt)
	binary.BigEndian.PutUint16(tcp[14:16], 0)
	m.fill(out, len(out))
	z.sent([]segMeta{m})
}

func TestZeroWindowRescueFrame(t *testing.T) {
	var z zeroWindow
	zwShut(&z, 5000)
	f := zwFrame(5100, 777, 40)
	b := z.rescue(f, parsed(f))
	if b == nil {
		t.Fatal("no pure ACK for a data segment past a zero window")
	}
	p := header.IPv4(b[header.EthernetMinimumSize:])
	if !p.IsValid(len(p)) || p.CalculateChecksum() != 0xffff {
		t.Fatalf("IPv4 header invalid or checksum wrong: % x", []byte(p))
	}
	seg := header.TCP(p.Payload())
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, p.SourceAddress(), p.DestinationAddress(), uint16(len(seg)))
	if checksum.Checksum(seg, xsum) != 0xffff {
		t.Error("TCP checksum wrong")
	}
	if seg.SequenceNumber() != 5000 || seg.AckNumber() != 777 || seg.Flags() != header.TCPFlagAck ||
		seg.WindowSize() != 500 || len(seg.Payload()) != 0 || seg.DataOffset() != 32 {
		t.Errorf("pure ACK: seq %d ack %d flags %v window %d data %d offset %d",
			seg.SequenceNumber(), seg.AckNumber(), seg.Flags(), seg.WindowSize(), len(seg.Payload()), seg.DataOffset())
	}
	if opts := seg.Options(); string(opts) != string([]byte{1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9}) {
		t.Errorf("options % x not kept", opts)
	}

	// A segment gVisor takes as it is, and one with a known
	// acknowledgment, need nothing.
	for _, tc := range []struct {
		name     string
		seq, ack uint32
		n        int
	}{
		{"pure ACK at RCV.NXT", 5000, 900, 0},
		{"same acknowledgment and window again", 5000, 777, 1},
	} {
		f := zwFrame(tc.seq, tc.ack, tc.n)
		if z.rescue(f, parsed(f)) != nil {
			t.Errorf("%s: a pure ACK was made", tc.name)
		}
	}
	if z.acks.Load() != 1 {
		t.Errorf("acks = %d, want 1", z.acks.Load())
	}
}

// BenchmarkZeroWindowRescue is the receive path's cost for a flow behind a
// zero window, making a pure ACK for every segment.
func BenchmarkZeroWindowRescue(b *testing.B) {
	var z zeroWindow
	zwShut(&z, 5000)
	f := zwFrame(5100, 0, 1000)
	var p packet.Parsed
	packet.Parse(f, &p)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.Ack = uint32(i) // a new acknowledgment each time
		if z.rescue(f, &p) == nil {
			b.Fatal("no pure ACK")
		}
	}
}

// FuzzZeroWindowRescue hands arbitrary frames to the receive path's
// zero-window check with the frame's own flow tracked, as if the stack had
// just advertised a zero window on it. Whatever the bytes, it must not
// panic, and a pure ACK it makes must be well formed: headers only, ACK
// the only flag, the sequence number the stack acknowledged, and valid
// IPv4 and TCP checksums.
func FuzzZeroWindowRescue(f *testing.F) {
	f.Add(zwFrame(5100, 777, 40), uint32(5000))
	f.Add(zwFrame(5000, 777, 0), uint32(5000))
	f.Add(zwFrame(1, 2, 3)[:40], uint32(0))
	f.Fuzz(func(t *testing.T, frame []byte, rcvNxt uint32) {
		var fp packet.Parsed
		packet.Parse(frame, &fp)
		if !fp.Has(packet.TCP) {
			return
		}
		// Track the frame's flow as the stack's own segments name it.
		key := replyFlow(frame, &fp)
		var z zeroWindow
		z.flows = map[flowKey]zeroWindowFlow{key: {rcvNxt: rcvNxt}}
		z.n.Store(1)
		b := z.rescue(frame, &fp)
		proto := fp.Network()
		if b == nil {
			return
		}
		p := b[header.EthernetMinimumSize:]
		var seg header.TCP
		var src, dst tcpip.Address
		if proto == header.IPv4ProtocolNumber {
			v4 := header.IPv4(p)
			if v4.CalculateChecksum() != 0xffff || int(v4.TotalLength()) != len(p) {
				t.Fatalf("IPv4 header of the pure ACK: % x", []byte(p))
			}
			seg, src, dst = header.TCP(p[v4.HeaderLength():]), v4.SourceAddress(), v4.DestinationAddress()
		} else {
			v6 := header.IPv6(p)
			if int(v6.PayloadLength())+header.IPv6MinimumSize != len(p) {
				t.Fatalf("IPv6 payload length of the pure ACK: % x", []byte(p))
			}
			seg, src, dst = header.TCP(p[header.IPv6MinimumSize:]), v6.SourceAddress(), v6.DestinationAddress()
		}
		if int(seg.DataOffset()) != len(seg) || seg.Flags() != header.TCPFlagAck || seg.SequenceNumber() != rcvNxt {
			t.Fatalf("pure ACK: offset %d of %d bytes, flags %v, seq %d (want %d)", seg.DataOffset(), len(seg), seg.Flags(), seg.SequenceNumber(), rcvNxt)
		}
		xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(seg)))
		if checksum.Checksum(seg, xsum) != 0xffff {
			t.Fatal("TCP checksum of the pure ACK is wrong")
		}
	})
}
