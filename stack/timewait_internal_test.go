package stack

import (
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/stack/packet"
)

// FuzzTimeWaitSegment hands the TIME-WAIT table any frame of a connection
// it holds: whatever the frame, the table's state stays whole (one entry
// or none, its counts agreeing), and an answer it sends is a well-formed
// pure ACK, back to the frame's sender, with the entry's sequence numbers.
func FuzzTimeWaitSegment(f *testing.F) {
	fin := zwFrame(5000, 777, 0)
	header.TCP(fin[header.EthernetMinimumSize+header.IPv4MinimumSize:]).SetFlags(uint8(header.TCPFlagFin | header.TCPFlagAck))
	f.Add(fin, uint32(5001), uint32(777), true)
	f.Add(zwFrame(5001, 777, 10), uint32(5001), uint32(777), false)
	syn := zwFrame(9000, 0, 0)
	header.TCP(syn[header.EthernetMinimumSize+header.IPv4MinimumSize:]).SetFlags(uint8(header.TCPFlagSyn))
	f.Add(syn, uint32(5001), uint32(777), true)
	f.Add(zwFrame(1, 2, 3)[:50], uint32(0), uint32(0), false)
	f.Fuzz(func(t *testing.T, frame []byte, rcvNxt, sndNxt uint32, ts bool) {
		var fp packet.Parsed
		packet.Parse(frame, &fp)
		if fp.Flags&(packet.TCP|packet.Fragment) != packet.TCP {
			return
		}
		e, _, qb := pairEndpoint(t, 8)
		var clock time.Duration
		e.tw.init(func() time.Duration { return clock }, func(bool) uint8 { return 64 })
		e.tw.mu.Lock()
		e.tw.addLocked(twEntry{key: replyFlow(frame, &fp), state: twTimeWait, hasTS: ts,
			win: 512, sndNxt: sndNxt, rcvNxt: rcvNxt, tsVal: 100}, clock)
		e.tw.mu.Unlock()
		e.tw.held.Add(1)
		clock = 5 * time.Millisecond

		consumed, answer, a := e.tw.rx(frame, &fp)
		if answer && !consumed {
			t.Fatal("an answer to a segment the table passed on")
		}
		used, held := int64(e.tw.used.Load()), e.tw.held.Load()
		if used != held || used > 1 || used < 0 {
			t.Fatalf("%d entries in use, %d in TIME-WAIT, after one segment", used, held)
		}
		if !answer {
			return
		}
		if a.seq != sndNxt || a.ack != rcvNxt || a.ts != ts || ts && a.tsVal != 105 {
			t.Fatalf("answer %+v for an entry at %d/%d", a, sndNxt, rcvNxt)
		}
		e.sendTimeWaitAck(frame, &fp, a)
		e.flush()
		got := make([][]byte, 1)
		deadline := time.Now().Add(time.Second)
		n := 0
		for n == 0 && time.Now().Before(deadline) {
			n, _ = qb.Rx(got)
		}
		if n != 1 {
			t.Fatal("the ACK was not sent")
		}
		b := got[0]
		var bp packet.Parsed
		packet.Parse(b, &bp)
		if !bp.Has(packet.TCP) || bp.Network() != fp.Network() {
			t.Fatalf("the ACK does not parse as TCP of the frame's family: % x", b)
		}
		if string(b[0:6]) != string(frame[6:12]) {
			t.Error("the ACK is not addressed to the frame's sender")
		}
		src, dst := bp.Addrs(b)
		fsrc, fdst := fp.Addrs(frame)
		if string(src) != string(fdst) || string(dst) != string(fsrc) || bp.SrcPort != fp.DstPort || bp.DstPort != fp.SrcPort {
			t.Error("the ACK does not go back the way the frame came")
		}
		seg := header.TCP(bp.L4(b))
		if seg.Flags() != header.TCPFlagAck || seg.SequenceNumber() != sndNxt || seg.AckNumber() != rcvNxt || len(seg) != int(seg.DataOffset()) {
			t.Errorf("the ACK: flags %v seq %d ack %d, %d bytes with offset %d", seg.Flags(), seg.SequenceNumber(), seg.AckNumber(), len(seg), seg.DataOffset())
		}
		if bp.Flags&packet.IPv4 != 0 && header.IPv4(bp.IP(b)).CalculateChecksum() != 0xffff {
			t.Error("IPv4 header checksum of the ACK is wrong")
		}
		xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, tcpip.AddrFromSlice(src), tcpip.AddrFromSlice(dst), uint16(len(seg)))
		if checksum.Checksum(seg, xsum) != 0xffff {
			t.Error("TCP checksum of the ACK is wrong")
		}
	})
}
