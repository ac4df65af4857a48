package stack

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/nic"
	"github.com/xstack/xstack/stack/packet"
)

type seg struct {
	sport, dport uint16
	flags        header.TCPFlags
	ack          uint32
	win          uint16
	payload      int
	sack         bool
	v6           bool
}

func buildSeg(s seg) []byte {
	optLen := 0
	if s.sack {
		optLen = 12 // NOP NOP SACK(10: one block)
	}
	tcpLen := header.TCPMinimumSize + optLen + s.payload
	ipLen := header.IPv4MinimumSize
	if s.v6 {
		ipLen = header.IPv6MinimumSize
	}
	f := make([]byte, header.EthernetMinimumSize+ipLen+tcpLen)
	eth := header.Ethernet(f)
	eth.Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
	ipb := f[header.EthernetMinimumSize:]
	if s.v6 {
		eth.Encode(&header.EthernetFields{Type: header.IPv6ProtocolNumber})
		header.IPv6(ipb).Encode(&header.IPv6Fields{
			PayloadLength:     uint16(tcpLen),
			TransportProtocol: header.TCPProtocolNumber,
			SrcAddr:           tcpip.AddrFrom16Slice([]byte("\x20\x01\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01")),
			DstAddr:           tcpip.AddrFrom16Slice([]byte("\x20\x01\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02")),
		})
	} else {
		header.IPv4(ipb).Encode(&header.IPv4Fields{
			TotalLength: uint16(ipLen + tcpLen),
			Protocol:    uint8(header.TCPProtocolNumber),
			SrcAddr:     tcpip.AddrFrom4([4]byte{198, 18, 0, 1}),
			DstAddr:     tcpip.AddrFrom4([4]byte{198, 18, 0, 2}),
		})
	}
	t := header.TCP(ipb[ipLen:])
	t.Encode(&header.TCPFields{
		SrcPort: s.sport, DstPort: s.dport, AckNum: s.ack, Flags: s.flags,
		WindowSize: s.win, DataOffset: uint8(header.TCPMinimumSize + optLen),
	})
	if s.sack {
		copy(t[header.TCPMinimumSize:], []byte{1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2})
	}
	return f
}

// sentIndexes returns the positions in frames of the frames filter sent.
func sentIndexes(frames, out [][]byte) []int {
	var got []int
	for _, o := range out {
		for i, f := range frames {
			if &f[0] == &o[0] {
				got = append(got, i)
			}
		}
	}
	return got
}

// filterSent runs a.filter over frames and returns the indexes of the
// frames it sends, failing t unless the frames it skips are exactly the
// others (the endpoint gives those buffers back to the queue: a frame in
// neither list would leak, one in both would be sent and freed).
func filterSent(t *testing.T, a *ackElider, frames [][]byte) []int {
	t.Helper()
	out, skip := a.filter(frames, nil, nil)
	sent, skipped := sentIndexes(frames, out), sentIndexes(frames, skip)
	all := slices.Sorted(slices.Values(append(slices.Clone(sent), skipped...)))
	ok := len(all) == len(frames)
	for i := 0; ok && i < len(all); i++ {
		ok = all[i] == i
	}
	if !ok {
		t.Fatalf("sent %v and skipped %v, want every frame of %d in exactly one", sent, skipped, len(frames))
	}
	return sent
}

func TestAckElision(t *testing.T) {
	ack := header.TCPFlagAck
	psh := header.TCPFlagAck | header.TCPFlagPsh
	tests := []struct {
		name string
		segs []seg
		want []int // indexes of the frames that must be sent
	}{
		{"ack then reply", []seg{{80, 1000, ack, 100, 500, 0, false, false}, {80, 1000, psh, 100, 500, 30, false, false}}, []int{1}},
		{"ack then reply v6", []seg{{80, 1000, ack, 100, 500, 0, false, true}, {80, 1000, psh, 100, 500, 30, false, true}}, []int{1}},
		{"reply acks more", []seg{{80, 1000, ack, 100, 500, 0, false, false}, {80, 1000, psh, 200, 500, 30, false, false}}, []int{1}},
		{"reply acks less", []seg{{80, 1000, ack, 200, 500, 0, false, false}, {80, 1000, psh, 100, 500, 30, false, false}}, []int{0, 1}},
		{"reply shrinks window", []seg{{80, 1000, ack, 100, 500, 0, false, false}, {80, 1000, psh, 100, 400, 30, false, false}}, []int{0, 1}},
		{"other flow", []seg{{80, 1000, ack, 100, 500, 0, false, false}, {80, 1001, psh, 100, 500, 30, false, false}}, []int{0, 1}},
		{"duplicate acks kept", []seg{{80, 1000, ack, 100, 500, 0, false, false}, {80, 1000, ack, 100, 500, 0, false, false}}, []int{0, 1}},
		{"newer pure ack supersedes", []seg{{80, 1000, ack, 100, 500, 0, false, false}, {80, 1000, ack, 150, 500, 0, false, false}}, []int{1}},
		{"sack ack kept", []seg{{80, 1000, ack, 100, 500, 0, true, false}, {80, 1000, psh, 100, 500, 30, false, false}}, []int{0, 1}},
		{"later sack kept both", []seg{{80, 1000, ack, 100, 500, 0, false, false}, {80, 1000, psh, 100, 500, 30, true, false}}, []int{0, 1}},
		{"fin supersedes", []seg{{80, 1000, ack, 100, 500, 0, false, false}, {80, 1000, ack | header.TCPFlagFin, 100, 500, 0, false, false}}, []int{1}},
		{"rst does not supersede", []seg{{80, 1000, ack, 100, 500, 0, false, false}, {80, 1000, header.TCPFlagRst | ack, 100, 500, 0, false, false}}, []int{0, 1}},
		{"syn-ack never elided", []seg{{80, 1000, header.TCPFlagSyn | ack, 100, 500, 0, false, false}, {80, 1000, psh, 100, 500, 30, false, false}}, []int{0, 1}},
		{"interleaved flows", []seg{
			{80, 1000, ack, 100, 500, 0, false, false},
			{80, 1001, ack, 7, 500, 0, false, false},
			{80, 1000, psh, 100, 500, 10, false, false},
			{80, 1001, psh, 7, 500, 10, false, false},
		}, []int{2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var frames [][]byte
			for _, s := range tt.segs {
				frames = append(frames, buildSeg(s))
			}
			var a ackElider
			a.init(len(frames))
			got := filterSent(t, &a, frames)
			if len(got) != len(tt.want) {
				t.Fatalf("sent frames %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("sent frames %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestSegMetaIgnoresGarbage(t *testing.T) {
	var m segMeta
	whole := buildSeg(seg{80, 1000, header.TCPFlagAck, 100, 500, 0, false, false})
	frag := bytes.Clone(whole)
	frag[header.EthernetMinimumSize+6] = 0x20 // More Fragments
	for _, f := range [][]byte{nil, make([]byte, 13), make([]byte, 14), append(make([]byte, 12), 0x08, 0x00, 0x45), frag} {
		m.fill(f, len(f))
		if m.tcp {
			t.Errorf("fill(%x) = TCP", f)
		}
	}
	if m.fill(whole, len(whole)); !m.tcp || !m.pureAck || m.ack != 100 || m.win != 500 {
		t.Errorf("fill of a pure ACK = %+v", m)
	}
}

func BenchmarkAckElision(b *testing.B) {
	frames := [][]byte{
		buildSeg(seg{80, 1000, header.TCPFlagAck, 100, 500, 0, false, false}),
		buildSeg(seg{80, 1000, header.TCPFlagAck | header.TCPFlagPsh, 100, 500, 100, false, false}),
	}
	var a ackElider
	a.init(64)
	out := make([][]byte, 0, 64)
	skip := make([][]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		out, skip = a.filter(frames, out[:0], skip[:0])
	}
}

// finSeg builds s with sequence number seq and a valid TCP checksum.
func finSeg(s seg, seq uint32) []byte {
	f := buildSeg(s)
	var p packet.Parsed
	packet.Parse(f, &p)
	t := header.TCP(f[p.L4Off:p.End])
	t.SetSequenceNumber(seq)
	t.SetChecksum(0)
	t.SetChecksum(^tcpChecksum(f, &p))
	return f
}

// tcpChecksum is the checksum over frame's TCP segment and pseudo-header,
// as header.TCP.IsChecksumValid computes it (its complement is stored).
func tcpChecksum(frame []byte, p *packet.Parsed) uint16 {
	src, dst := p.Addrs(frame)
	l4 := p.L4(frame)
	sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, tcpip.AddrFromSlice(src), tcpip.AddrFromSlice(dst), uint16(len(l4)))
	return checksum.Checksum(l4, sum)
}

func TestFinJoined(t *testing.T) {
	psh := header.TCPFlagAck | header.TCPFlagPsh
	fin := header.TCPFlagAck | header.TCPFlagFin
	type fr = finFrame
	tests := []struct {
		name     string
		frames   []fr
		want     []int // frames sent
		joinedTo int   // the frame that carries the FIN, or -1
	}{
		{"response then fin", []fr{{seg{80, 1000, psh, 28, 500, 200, false, false}, 1}, {seg{80, 1000, fin, 28, 600, 0, false, false}, 201}}, []int{0}, 0},
		{"v6", []fr{{seg{80, 1000, psh, 28, 500, 200, false, true}, 1}, {seg{80, 1000, fin, 28, 600, 0, false, true}, 201}}, []int{0}, 0},
		{"other flow between", []fr{
			{seg{80, 1000, psh, 28, 500, 200, false, false}, 1},
			{seg{80, 1001, psh, 5, 500, 10, false, false}, 7},
			{seg{80, 1000, fin, 28, 500, 0, false, false}, 201},
		}, []int{0, 1}, 0},
		{"gap in sequence", []fr{{seg{80, 1000, psh, 28, 500, 200, false, false}, 1}, {seg{80, 1000, fin, 28, 500, 0, false, false}, 202}}, []int{0, 1}, -1},
		{"newer ack", []fr{{seg{80, 1000, psh, 28, 500, 200, false, false}, 1}, {seg{80, 1000, fin, 29, 500, 0, false, false}, 201}}, []int{0, 1}, -1},
		{"pure ack between", []fr{
			{seg{80, 1000, psh, 28, 500, 200, false, false}, 1},
			// (the FIN's smaller window keeps the pure ACK from being elided)
			{seg{80, 1000, header.TCPFlagAck, 29, 500, 0, false, false}, 201},
			{seg{80, 1000, fin, 29, 400, 0, false, false}, 201},
		}, []int{0, 1, 2}, -1},
		{"fin alone", []fr{{seg{80, 1000, fin, 28, 500, 0, false, false}, 201}}, []int{0}, -1},
		{"syn-ack then fin", []fr{{seg{80, 1000, header.TCPFlagSyn | header.TCPFlagAck, 28, 500, 0, false, false}, 0}, {seg{80, 1000, fin, 28, 500, 0, false, false}, 1}}, []int{0, 1}, -1},
	}
	for _, partial := range []bool{false, true} {
		for _, disabled := range []bool{false, true} {
			for _, tt := range tests {
				t.Run(fmt.Sprintf("%s/delayed_ack=%v/partial=%v", tt.name, !disabled, partial), func(t *testing.T) {
					testFinJoined(t, tt.frames, tt.want, tt.joinedTo, disabled, partial)
				})
			}
		}
	}
}

type finFrame struct {
	s   seg
	seq uint32
}

// testFinJoined runs one case of TestFinJoined. With partial, the frames
// carry the pseudo-header sum in their checksum field, as they do for a
// queue with TX checksum offload, and are checked after completing it as
// the device would (nic.CompleteChecksum).
func testFinJoined(t *testing.T, in []finFrame, want []int, joinedTo int, disabled, partial bool) {
	psh := header.TCPFlagAck | header.TCPFlagPsh
	var frames [][]byte
	for _, f := range in {
		frames = append(frames, finSeg(f.s, f.seq))
	}
	if partial {
		for _, f := range frames {
			toPartial(f)
		}
	}
	orig := make([][]byte, len(frames))
	for i, f := range frames {
		orig[i] = bytes.Clone(f)
	}
	a := ackElider{disabled: disabled, partial: partial}
	a.init(len(frames))
	got := filterSent(t, &a, frames)
	if !slices.Equal(got, want) {
		t.Fatalf("sent frames %v, want %v", got, want)
	}
	if wantFins := map[bool]int{true: 1, false: 0}[joinedTo >= 0]; a.fins != wantFins {
		t.Errorf("fins joined = %d, want %d", a.fins, wantFins)
	}
	for i, f := range frames {
		var p packet.Parsed
		packet.Parse(f, &p)
		if partial {
			f = bytes.Clone(f)
			if !nic.CompleteChecksum(f, int(p.L4Off), header.TCPChecksumOffset) {
				t.Fatalf("frame %d: no room for a checksum", i)
			}
		}
		if c := tcpChecksum(f, &p); c != 0xffff {
			t.Errorf("frame %d: checksum %#04x does not verify", i, c)
		}
		if i != joinedTo {
			if !bytes.Equal(frames[i], orig[i]) {
				t.Errorf("frame %d changed", i)
			}
			continue
		}
		var finP packet.Parsed
		packet.Parse(orig[len(in)-1], &finP) // the FIN is the last frame
		if p.TCPFlags != psh|header.TCPFlagFin || p.Window != finP.Window || p.TCPPayloadLen() != 200 {
			t.Errorf("joined frame: flags %v window %d payload %d, want PSH|ACK|FIN, the FIN's window %d, 200 bytes",
				p.TCPFlags, p.Window, p.TCPPayloadLen(), finP.Window)
		}
	}
}

// toPartial replaces the complete TCP checksum of f, an unfragmented
// segment, with the pseudo-header sum a frame for the checksum offload
// carries.
func toPartial(f []byte) {
	var p packet.Parsed
	packet.Parse(f, &p)
	src, dst := p.Addrs(f)
	l4 := p.L4(f)
	sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, tcpip.AddrFromSlice(src), tcpip.AddrFromSlice(dst), uint16(len(l4)))
	header.TCP(l4).SetChecksum(sum)
}

func TestFinJoinAllocs(t *testing.T) {
	psh := header.TCPFlagAck | header.TCPFlagPsh
	fin := header.TCPFlagAck | header.TCPFlagFin
	frames := [][]byte{
		finSeg(seg{80, 1000, header.TCPFlagAck, 28, 500, 0, false, false}, 1),
		finSeg(seg{80, 1000, psh, 28, 500, 200, false, false}, 1),
		finSeg(seg{80, 1000, fin, 28, 600, 0, false, false}, 201),
	}
	var a ackElider
	a.init(len(frames))
	out := make([][]byte, 0, len(frames))
	skip := make([][]byte, 0, len(frames))
	if n := testing.AllocsPerRun(100, func() { out, skip = a.filter(frames, out[:0], skip[:0]) }); n != 0 {
		t.Errorf("filter allocates %.1f times per batch, want 0", n)
	}
}
