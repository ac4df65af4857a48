package stack

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/xstack/xstack/nic/nictest"
)

// chainQueue is a nictest queue emulating a multi-buffer queue that
// records the shape of what is submitted to it: the buffer count of each
// frame TxSubmitPackets is given.
type chainQueue struct {
	*nictest.Queue
	segs []int
}

func (q *chainQueue) TxSubmitPackets(bufs [][]byte, segs []int) (int, error) {
	q.segs = append(q.segs, segs...)
	return q.Queue.TxSubmitPackets(bufs, segs)
}

// chainEndpoint returns an endpoint at MTU 9000 over a multi-buffer queue
// whose transmit buffers hold 2048 bytes and which sends frames of up to
// maxSegs of them, with its TX checksum offload on or off, and the queue
// at the other end of the link.
func chainEndpoint(tb testing.TB, batch, maxSegs int, offload bool) (*endpoint, *chainQueue, *nictest.Queue) {
	tb.Helper()
	qa, qb := nictest.Pair(9000)
	tb.Cleanup(func() { qa.Close(); qb.Close() })
	if err := qa.SetMultiBuffer(2048, maxSegs); err != nil {
		tb.Fatal(err)
	}
	qa.SetTxChecksumOffload(offload)
	q := &chainQueue{Queue: qa}
	return newEndpoint(q, 9000, batch), q, qb
}

// TestEndpointTxChain sends, between two small frames, TCP and UDP
// segments of MTU 9000 over IPv4 and IPv6, as gVisor builds them with the
// queue's checksum offload on and off: each must leave as one chain of 5
// buffers (9014 bytes in buffers of 2048) and reach the peer whole, with
// a correct checksum, and every buffer must come back.
func TestEndpointTxChain(t *testing.T) {
	for _, offload := range []bool{false, true} {
		for _, v6 := range []bool{false, true} {
			for _, proto := range []uint8{uint8(header.TCPProtocolNumber), uint8(header.UDPProtocolNumber)} {
				t.Run(fmt.Sprintf("offload=%v/v6=%v/proto=%d", offload, v6, proto), func(t *testing.T) {
					testEndpointTxChain(t, offload, v6, proto)
				})
			}
		}
	}
}

func testEndpointTxChain(t *testing.T, offload, v6 bool, proto uint8) {
	e, qa, qb := chainEndpoint(t, 8, 18, offload)
	ipHdr := header.IPv4MinimumSize
	if v6 {
		ipHdr = header.IPv6MinimumSize
	}
	l4 := l4Segment(tcpip.TransportProtocolNumber(proto), 9000-ipHdr-header.TCPMinimumSize)
	if proto == uint8(header.UDPProtocolNumber) {
		l4 = l4Segment(tcpip.TransportProtocolNumber(proto), 9000-ipHdr-header.UDPMinimumSize)
	}
	jumbo := ipFrame(v6, tcpip.TransportProtocolNumber(proto), l4, false)
	if len(jumbo) != 9014 {
		t.Fatalf("frame of %d bytes, want 9014", len(jumbo))
	}
	want := fullChecksum(bytes.Clone(jumbo))
	if !offload {
		jumbo = want // gVisor computes it
	}
	small := rawFrame(1, 100)
	pkts, release := txPackets(small, jumbo, small)
	defer release()
	if n, err := e.WritePackets(pkts); n != 3 || err != nil {
		t.Fatalf("WritePackets = %d, %v; want 3, nil", n, err)
	}
	if sent := e.flush(); sent != 3 {
		t.Fatalf("flush sent %d frames, want 3", sent)
	}
	checkTxBuffers(t, qa, "after flush")
	if !slices.Equal(qa.segs, []int{1, 5, 1}) {
		t.Errorf("TxSubmitPackets frames of %v buffers, want [1 5 1]", qa.segs)
	}
	got := received(t, qb)
	if len(got) != 3 || !bytes.Equal(got[0], small) || !bytes.Equal(got[2], small) {
		t.Fatalf("peer received %d frames, want the small frame, the segment and the small frame", len(got))
	}
	if !bytes.Equal(got[1], want) {
		t.Errorf("the segment arrived changed (%d bytes, checksum ok %v)", len(got[1]), l4ChecksumOK(got[1]))
	}
	if s := qa.Stats(); offload != (s.TxCsumOffload == 1) {
		t.Errorf("tx_csum_offload %d with the offload %v", s.TxCsumOffload, offload)
	}
	if s := e.stats(); s.TxFrames != 3 || s.TxDropped != 0 {
		t.Errorf("link stats %+v", s)
	}
}

// TestEndpointTxChainGSO cuts a host-GSO packet of three segments of 8960
// bytes (the MSS of MTU 9000) into frames of 5 buffers each, with the
// checksum offload on and off: each frame must reach the peer with its
// headers and a correct checksum.
func TestEndpointTxChainGSO(t *testing.T) {
	const mss = 9000 - header.IPv4MinimumSize - header.TCPMinimumSize
	for _, offload := range []bool{false, true} {
		t.Run(fmt.Sprintf("offload=%v", offload), func(t *testing.T) {
			e, qa, qb := chainEndpoint(t, 8, 18, offload)
			var pkts gvstack.PacketBufferList
			pkts.PushBack(gsoPacket(3*mss, mss))
			defer pkts.DecRef()
			e.WritePackets(pkts)
			if sent := e.flush(); sent != 3 {
				t.Fatalf("flush sent %d frames, want 3", sent)
			}
			checkTxBuffers(t, qa, "after flush")
			if !slices.Equal(qa.segs, []int{5, 5, 5}) {
				t.Errorf("TxSubmitPackets frames of %v buffers, want [5 5 5]", qa.segs)
			}
			got := received(t, qb)
			if len(got) != 3 {
				t.Fatalf("peer received %d frames, want 3", len(got))
			}
			for i, f := range got {
				ip := header.IPv4(f[header.EthernetMinimumSize:])
				if len(f) != 9014 || !ip.IsValid(len(ip)) || !ip.IsChecksumValid() || !l4ChecksumOK(f) {
					t.Fatalf("frame %d of %d bytes: IPv4 header or TCP checksum wrong", i, len(f))
				}
				tcp := header.TCP(ip.Payload())
				if seq := tcp.SequenceNumber(); seq != 1+uint32(i*mss) || len(tcp.Payload()) != mss {
					t.Errorf("frame %d: seq %d, %d bytes of payload", i, seq, len(tcp.Payload()))
				}
			}
			if s := e.stats(); s.GSOFrames != 3 || s.TxDropped != 0 {
				t.Errorf("link stats %+v", s)
			}
		})
	}
}

// TestEndpointTxChainTooLong sends a frame of MTU 9000 through a queue that
// takes frames of at most 2 buffers: it is dropped and counted, the frames
// around it are sent, and every buffer comes back.
func TestEndpointTxChainTooLong(t *testing.T) {
	e, qa, qb := chainEndpoint(t, 8, 2, false)
	small := rawFrame(1, 100)
	pkts, release := txPackets(small, rawFrame(2, 9000), small)
	defer release()
	if n, _ := e.WritePackets(pkts); n != 2 {
		t.Fatalf("WritePackets queued %d, want 2", n)
	}
	e.flush()
	checkTxBuffers(t, qa, "after flush")
	if got := received(t, qb); len(got) != 2 {
		t.Errorf("peer received %d frames, want 2", len(got))
	}
	if s := e.stats(); s.TxDropped != 1 || s.TxFrames != 2 {
		t.Errorf("link stats %+v, want tx_dropped 1", s)
	}
}

// TestEndpointTxChainAllocs checks that writing and flushing frames of
// several buffers allocates nothing.
func TestEndpointTxChainAllocs(t *testing.T) {
	qa, qb := nictest.Pair(9000)
	t.Cleanup(func() { qa.Close(); qb.Close() })
	if err := qa.SetMultiBuffer(2048, 18); err != nil {
		t.Fatal(err)
	}
	e := newEndpoint(qa, 9000, 64)
	tcp := tcpip.TransportProtocolNumber(header.TCPProtocolNumber)
	jumbo := ipFrame(false, tcp, l4Segment(tcp, 8960), false)
	pkts, release := txPackets(jumbo, rawFrame(1, 100), jumbo)
	defer release()
	batch := make([][]byte, 64)
	if n := testing.AllocsPerRun(100, func() {
		e.WritePackets(pkts)
		e.flush()
		if n, _ := qb.Rx(batch); n != 3 {
			t.Fatalf("%d frames received, want 3", n)
		}
	}); n != 0 {
		t.Errorf("WritePackets and flush of frames of several buffers allocate %.1f times per batch, want 0", n)
	}
}

// TestCheckChains refuses an MTU whose frames need more buffers than the
// queue sends as one frame.
func TestCheckChains(t *testing.T) {
	for _, tt := range []struct {
		maxSegs int
		ok      bool
	}{{18, true}, {5, true}, {4, false}} {
		e, _, _ := chainEndpoint(t, 8, tt.maxSegs, false)
		if err := e.checkChains(); (err == nil) != tt.ok {
			t.Errorf("max %d buffers per frame at MTU 9000 (frames of 5 buffers of 2048 bytes): %v", tt.maxSegs, err)
		}
	}
}

// TestEndpointTxChainElision writes, on one flow, a pure ACK, a data
// segment of MTU 9000 with the same acknowledgment (a chain of 5
// buffers) and a bare FIN right after it: the ACK is elided and the FIN
// joined to the chain, as they are for frames of one buffer (ACK elision
// reads a chain's headers from its first buffer, with its length), and
// the chain arrives with FIN set and a right checksum, the offload on and
// off.
func TestEndpointTxChainElision(t *testing.T) {
	for _, offload := range []bool{false, true} {
		t.Run(fmt.Sprintf("offload=%v", offload), func(t *testing.T) {
			e, qa, qb := chainEndpoint(t, 8, 18, offload)
			const n = 9000 - header.IPv4MinimumSize - header.TCPMinimumSize
			ack := header.TCPFlagAck
			pure := buildSeg(seg{80, 1000, ack, 100, 500, 0, false, false})
			data := finSeg(seg{80, 1000, ack | header.TCPFlagPsh, 100, 500, n, false, false}, 1)
			fin := finSeg(seg{80, 1000, ack | header.TCPFlagFin, 100, 500, 0, false, false}, 1+n)
			if offload {
				// gVisor leaves the field 0 with the offload.
				for _, f := range [][]byte{pure, data, fin} {
					header.TCP(f[header.EthernetMinimumSize+header.IPv4MinimumSize:]).SetChecksum(0)
				}
			}
			pkts, release := txPackets(pure, data, fin)
			defer release()
			e.WritePackets(pkts)
			if sent := e.flush(); sent != 1 {
				t.Fatalf("flush sent %d frames, want 1 (the ACK elided, the FIN joined)", sent)
			}
			checkTxBuffers(t, qa, "after flush")
			if !slices.Equal(qa.segs, []int{5}) {
				t.Errorf("TxSubmitPackets frames of %v buffers, want [5]", qa.segs)
			}
			got := received(t, qb)
			if len(got) != 1 || len(got[0]) != 9014 {
				t.Fatalf("peer received %d frames, want one of 9014 bytes", len(got))
			}
			f := got[0]
			tcp := header.TCP(f[header.EthernetMinimumSize+header.IPv4MinimumSize:])
			if !tcp.Flags().Contains(header.TCPFlagFin) || !l4ChecksumOK(f) {
				t.Errorf("flags %v, checksum ok %v; want FIN and a right checksum", tcp.Flags(), l4ChecksumOK(f))
			}
			if s := e.stats(); s.AcksElided != 1 || s.FinsJoined != 1 {
				t.Errorf("acks elided %d, fins joined %d; want 1 and 1", s.AcksElided, s.FinsJoined)
			}
		})
	}
}

// TestPcapChain captures frames of several buffers as they are sent: each
// record has the frame's whole length and, up to the snapshot length, its
// bytes across the buffers, with a snapshot length that ends in the
// first buffer, in a later one, and past the frame.
func TestPcapChain(t *testing.T) {
	frame := bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, 1300) // 9100 bytes
	var bufs [][]byte
	for off := 0; off < len(frame); off += 2048 {
		bufs = append(bufs, frame[off:min(off+2048, len(frame))])
	}
	small := rawFrame(9, 60)
	bufs = append(bufs, small)
	segs := []int{len(bufs) - 1, 1}
	for _, snaplen := range []int{96, 5000, 65535} {
		t.Run(fmt.Sprintf("snaplen=%d", snaplen), func(t *testing.T) {
			dir := t.TempDir()
			var tap pcapTap
			if err := tap.start(PcapConfig{Dir: dir, Prefix: "cpu0", Snaplen: snaplen, Savelen: 1 << 20}); err != nil {
				t.Fatal(err)
			}
			tap.txPackets(bufs, segs)
			if err := tap.stop(); err != nil {
				t.Fatal(err)
			}
			recs := readPcaps(t, dir, "cpu0", snaplen)
			if len(recs) != 2 {
				t.Fatalf("%d records, want 2", len(recs))
			}
			for i, want := range [][]byte{frame, small} {
				if r := recs[i]; r.Orig != len(want) || !bytes.Equal(r.Data, want[:min(len(want), snaplen)]) {
					t.Errorf("record %d: orig %d, %d bytes captured; want the first %d of %d bytes", i, r.Orig, len(r.Data), min(len(want), snaplen), len(want))
				}
			}
		})
	}
}
