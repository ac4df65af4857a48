package stack

import (
	"bytes"
	"fmt"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/xstack/xstack/nic"
	"github.com/xstack/xstack/nic/nictest"
)

// txPackets returns a PacketBufferList of the given frames and a function
// that releases it.
func txPackets(frames ...[]byte) (gvstack.PacketBufferList, func()) {
	var l gvstack.PacketBufferList
	for _, f := range frames {
		l.PushBack(gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{Payload: buffer.MakeWithData(f)}))
	}
	return l, l.DecRef
}

// rawFrame is an Ethernet frame of an EtherType the TX path leaves alone,
// carrying n bytes that start with tag.
func rawFrame(tag byte, n int) []byte {
	f := make([]byte, header.EthernetMinimumSize+n)
	header.Ethernet(f).Encode(&header.EthernetFields{Type: 0x88b5})
	for i := header.EthernetMinimumSize; i < len(f); i++ {
		f[i] = tag
	}
	return f
}

// pairEndpoint returns an endpoint with a batch of batch frames over qa,
// one queue of an in-memory pair at MTU 1500, and qb, the queue that
// receives what the endpoint sends. Both queues close when the test ends.
func pairEndpoint(tb testing.TB, batch int) (e *endpoint, qa, qb *nictest.Queue) {
	tb.Helper()
	qa, qb = nictest.Pair(1500)
	tb.Cleanup(func() { qa.Close(); qb.Close() })
	return newEndpoint(qa, 1500, batch), qa, qb
}

// received reads every frame waiting on q, copied.
func received(t *testing.T, q *nictest.Queue) [][]byte {
	t.Helper()
	var out [][]byte
	batch := make([][]byte, 64)
	for {
		n, err := q.Rx(batch)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return out
		}
		for _, f := range batch[:n] {
			out = append(out, bytes.Clone(f))
		}
	}
}

// checkTxBuffers fails t unless every transmit buffer of q is back with it.
func checkTxBuffers(t *testing.T, q nic.Queue, when string) {
	t.Helper()
	if st := q.Stats(); st.UMEMTxLent != 0 || st.UMEMTxFree != st.UMEMFrames {
		t.Fatalf("%s: %d buffers lent, %d of %d free; want all back", when, st.UMEMTxLent, st.UMEMTxFree, st.UMEMFrames)
	}
}

// TestEndpointTx writes packets through the endpoint and checks that what
// the peer receives is what gVisor wrote, in order, built in the queue's
// buffers and all of them given back by each flush, including those of
// the frames ACK elision and FIN joining leave out.
func TestEndpointTx(t *testing.T) {
	e, qa, qb := pairEndpoint(t, 4)

	// Six frames through a batch of four: WritePackets flushes the
	// first four itself.
	var want [][]byte
	for i := range 6 {
		want = append(want, rawFrame(byte(i), 100+i))
	}
	pkts, release := txPackets(want...)
	if n, err := e.WritePackets(pkts); n != 6 || err != nil {
		t.Fatalf("WritePackets = %d, %v; want 6, nil", n, err)
	}
	release()
	if st := qa.Stats(); st.UMEMTxLent == 0 {
		t.Fatalf("no buffer lent with two frames waiting in the batch: %+v", st)
	}
	e.flush()
	checkTxBuffers(t, qa, "after flush")
	got := received(t, qb)
	if len(got) != len(want) {
		t.Fatalf("peer received %d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("frame %d: got %x, want %x", i, got[i], want[i])
		}
	}

	// A pure ACK superseded by the data after it is not sent, and its
	// buffer comes back all the same.
	ack := header.TCPFlagAck
	pkts, release = txPackets(
		buildSeg(seg{80, 1000, ack, 100, 500, 0, false, false}),
		buildSeg(seg{80, 1000, ack | header.TCPFlagPsh, 100, 500, 10, false, false}),
	)
	e.WritePackets(pkts)
	release()
	if sent := e.flush(); sent != 1 {
		t.Fatalf("flush sent %d frames, want 1 (the pure ACK elided)", sent)
	}
	checkTxBuffers(t, qa, "after a flush with an elided ACK")
	if got := received(t, qb); len(got) != 1 {
		t.Fatalf("peer received %d frames, want 1", len(got))
	}
	if ls := e.stats(); ls.AcksElided != 1 || ls.TxFrames != 7 || ls.TxDropped != 0 {
		t.Errorf("link stats %+v; want 1 ACK elided, 7 frames sent, none dropped", ls)
	}

	// An empty flush with nothing lent costs nothing and returns nothing.
	if sent := e.flush(); sent != 0 {
		t.Errorf("empty flush sent %d", sent)
	}
	checkTxBuffers(t, qa, "after an empty flush")
}

// TestEndpointTxNoBuffer takes the queue's buffers away from the endpoint:
// with a batch waiting, the endpoint flushes it to make room and loses
// nothing; with no buffer to be had at all, it drops the packet and counts
// it, as a full ring does.
func TestEndpointTxNoBuffer(t *testing.T) {
	e, qa, qb := pairEndpoint(t, 8)

	held := make([][]byte, nictest.TxBuffers)
	if n := qa.TxReserve(held[:nictest.TxBuffers-2]); n != nictest.TxBuffers-2 {
		t.Fatalf("TxReserve lent %d, want %d", n, nictest.TxBuffers-2)
	}
	var frames [][]byte
	for i := range 5 {
		frames = append(frames, rawFrame(byte(i), 60))
	}
	pkts, release := txPackets(frames...)
	if n, _ := e.WritePackets(pkts); n != 5 {
		t.Fatalf("WritePackets with two buffers free = %d, want 5 (flushing to make room)", n)
	}
	release()
	e.flush()
	if got := received(t, qb); len(got) != 5 {
		t.Fatalf("peer received %d frames, want 5", len(got))
	}
	if ls := e.stats(); ls.TxDropped != 0 || ls.TxFrames != 5 {
		t.Errorf("link stats %+v; want 5 sent, none dropped", ls)
	}

	if n := qa.TxReserve(held[nictest.TxBuffers-2:]); n != 2 {
		t.Fatalf("TxReserve lent %d, want the last 2", n)
	}
	pkts, release = txPackets(rawFrame(9, 60))
	if n, _ := e.WritePackets(pkts); n != 0 {
		t.Errorf("WritePackets with no buffer free = %d, want 0", n)
	}
	release()
	if ls := e.stats(); ls.TxDropped != 1 {
		t.Errorf("TxDropped = %d, want 1", ls.TxDropped)
	}
	if err := qa.TxRelease(held); err != nil {
		t.Fatal(err)
	}
	e.flush()
	checkTxBuffers(t, qa, "after the test gave its buffers back")
}

// TestEndpointTxCloseTx checks that after closeTx the endpoint takes no
// buffer from the queue (which may then be closed), while the frames
// already in the batch still leave with the next flush.
func TestEndpointTxCloseTx(t *testing.T) {
	e, qa, qb := pairEndpoint(t, 8)
	pkts, release := txPackets(rawFrame(1, 60))
	e.WritePackets(pkts)
	release()
	e.closeTx()
	pkts, release = txPackets(rawFrame(2, 60), rawFrame(3, 60))
	e.WritePackets(pkts)
	release()
	if sent := e.flush(); sent != 1 {
		t.Fatalf("flush after closeTx sent %d, want the 1 frame written before", sent)
	}
	checkTxBuffers(t, qa, "after closeTx and flush")
	if got := received(t, qb); len(got) != 1 || got[0][header.EthernetMinimumSize] != 1 {
		t.Fatalf("peer received %d frames, want frame 1 alone", len(got))
	}
}

// TestEndpointTxAllocs checks that writing packets and flushing them
// allocates nothing: the frames are built in the queue's buffers. The
// queue offloads TX checksums (nictest's default), so the checksum
// requests are on the path measured.
func TestEndpointTxAllocs(t *testing.T) {
	e, qa, qb := pairEndpointCsum(t, 64, true)
	ack := header.TCPFlagAck
	pkts, release := txPackets(
		buildSeg(seg{80, 1000, ack, 100, 500, 0, false, false}),
		buildSeg(seg{80, 1000, ack | header.TCPFlagPsh, 100, 500, 1400, false, false}),
		rawFrame(1, 1000),
	)
	defer release()
	batch := make([][]byte, 64)
	var frames int // the pure ACK is elided: the next segment carries it
	if n := testing.AllocsPerRun(1000, func() {
		e.WritePackets(pkts)
		e.flush()
		frames, _ = qb.Rx(batch)
	}); n != 0 {
		t.Errorf("WritePackets and flush allocate %.1f times per batch, want 0", n)
	}
	// gVisor sends one packet at a time through the NIC's queueing
	// discipline, the endpoint's own.
	q := qdisc{e}
	if n := testing.AllocsPerRun(1000, func() {
		for _, pkt := range pkts.AsSlice() {
			if err := q.WritePacket(pkt); err != nil {
				t.Fatalf("qdisc WritePacket: %s", err)
			}
		}
		e.flush()
		if n, _ := qb.Rx(batch); n != frames {
			t.Fatalf("%d frames after a qdisc write, %d after WritePackets of the same packets", n, frames)
		}
	}); n != 0 {
		t.Errorf("the qdisc's WritePacket and flush allocate %.1f times per batch, want 0", n)
	}
	checkTxBuffers(t, qa, "after the runs")
	if st := qa.Stats(); st.TxCsumOffload == 0 {
		t.Errorf("no frame sent with a checksum request: %+v", st)
	}
}

// BenchmarkEndpointTx measures the TX path from gVisor's packets to the
// queue: WritePackets of 32 MTU-sized frames and a flush, per frame.
func BenchmarkEndpointTx(b *testing.B) {
	e, _, qb := pairEndpoint(b, 64)
	frames := make([][]byte, 32)
	for i := range frames {
		frames[i] = rawFrame(byte(i), 1500)
	}
	pkts, release := txPackets(frames...)
	defer release()
	batch := make([][]byte, 64)
	b.SetBytes(int64(len(frames) * len(frames[0])))
	b.ReportAllocs()
	for b.Loop() {
		e.WritePackets(pkts)
		e.flush()
		qb.Rx(batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(frames)), "ns/frame")
}

// gsoPacket is a host-GSO TCP packet over IPv4 as gVisor hands it over:
// Ethernet, IPv4 and TCP headers and payload bytes of data, to be cut into
// frames of mss bytes of payload.
func gsoPacket(payload, mss int) *gvstack.PacketBuffer {
	pkt := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{
		ReserveHeaderBytes: header.EthernetMinimumSize + header.IPv4MinimumSize + header.TCPMinimumSize,
		Payload:            buffer.MakeWithData(make([]byte, payload)),
	})
	header.TCP(pkt.TransportHeader().Push(header.TCPMinimumSize)).Encode(&header.TCPFields{
		SrcPort: 80, DstPort: 40000, SeqNum: 1, AckNum: 1, DataOffset: header.TCPMinimumSize,
		Flags: header.TCPFlagAck | header.TCPFlagPsh, WindowSize: 65535,
	})
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	header.IPv4(pkt.NetworkHeader().Push(header.IPv4MinimumSize)).Encode(&header.IPv4Fields{
		TotalLength: uint16(header.IPv4MinimumSize + header.TCPMinimumSize + payload), TTL: 64,
		Protocol: uint8(header.TCPProtocolNumber),
		SrcAddr:  tcpip.AddrFrom4([4]byte{198, 18, 0, 1}), DstAddr: tcpip.AddrFrom4([4]byte{198, 18, 0, 2}),
	})
	header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize)).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
	pkt.GSOOptions = gvstack.GSO{Type: gvstack.GSOTCPv4, NeedsCsum: true, MSS: uint16(mss), L3HdrLen: header.IPv4MinimumSize, MaxSize: gsoMaxSize}
	return pkt
}

// BenchmarkEndpointTxGSO measures cutting one 64,240-byte TCP packet into
// 44 frames of 1460 bytes of payload, each with its headers and checksums,
// and flushing them, per frame: with the queue's checksum offload off
// (the endpoint computes each TCP checksum) and on (it writes the
// pseudo-header sum, and nictest completes the checksum in software in
// TxSubmit, as BenchmarkEndpointTxTCP says).
func BenchmarkEndpointTxGSO(b *testing.B) {
	const mss, segs = 1460, 44
	for _, offload := range []bool{false, true} {
		b.Run(fmt.Sprintf("offload=%v", offload), func(b *testing.B) {
			e, _, qb := pairEndpointCsum(b, 64, offload)
			var pkts gvstack.PacketBufferList
			pkts.PushBack(gsoPacket(mss*segs, mss))
			defer pkts.DecRef()
			batch := make([][]byte, 64)
			b.SetBytes(mss * segs)
			b.ReportAllocs()
			for b.Loop() {
				e.WritePackets(pkts)
				e.flush()
				if n, _ := qb.Rx(batch); n != segs {
					b.Fatalf("%d frames, want %d", n, segs)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*segs), "ns/frame")
		})
	}
}

// TestEndpointTxBatchHoldsAPass writes what a pass sends after a burst of
// 64 requests on 64 connections, each ACKed before the application
// answers it: with the default batch, every ACK is elided by the response
// after it, and only the responses leave.
func TestEndpointTxBatchHoldsAPass(t *testing.T) {
	const flows = 64
	e, qa, qb := pairEndpoint(t, DefaultTxBatch)
	ack := header.TCPFlagAck
	var frames [][]byte
	for i := range flows {
		frames = append(frames, buildSeg(seg{80, uint16(1000 + i), ack, 100, 500, 0, false, false}))
	}
	for i := range flows {
		frames = append(frames, buildSeg(seg{80, uint16(1000 + i), ack | header.TCPFlagPsh, 100, 500, 200, false, false}))
	}
	for _, f := range frames {
		pkts, release := txPackets(f)
		e.WritePackets(pkts)
		release()
	}
	if sent := e.flush(); sent != flows {
		t.Errorf("the pass sent %d frames, want %d (the responses alone)", sent, flows)
	}
	checkTxBuffers(t, qa, "after the pass")
	if got := received(t, qb); len(got) != flows {
		t.Errorf("peer received %d frames, want %d", len(got), flows)
	}
	if ls := e.stats(); ls.AcksElided != flows {
		t.Errorf("%d ACKs elided, want %d", ls.AcksElided, flows)
	}
}
