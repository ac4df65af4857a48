package stack_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"runtime"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/nic/nictest"
	"github.com/xstack/xstack/stack"
	"github.com/xstack/xstack/stack/stacktest"
)

// jumboMTU is the MTU of the multi-buffer tests, and jumboSeg the bytes
// a buffer of their queues holds: what a 2048-byte UMEM frame holds after
// XDP_PACKET_HEADROOM, so that a 9014-byte frame arrives in 6 buffers, as
// it does from veth.
const (
	jumboMTU = 9000
	jumboSeg = 2048 - 256
)

// jumboQueue is an unconnected queue of MTU 9000 that emulates a
// multi-buffer XSKQueue in copy mode (18 buffers per sent frame).
func jumboQueue(t testing.TB) *nictest.Queue {
	t.Helper()
	q := nictest.New(jumboMTU)
	if err := q.SetMultiBuffer(jumboSeg, 18); err != nil {
		t.Fatal(err)
	}
	return q
}

// jumboConn is wireConn over a multi-buffer queue of MTU 9000, with the
// peer announcing the MSS of that MTU.
func jumboConn(t testing.TB, v6 bool) (*wirePeer, tcpip.Endpoint) {
	t.Helper()
	mss := uint16(jumboMTU - header.IPv4MinimumSize - header.TCPMinimumSize)
	if v6 {
		mss = jumboMTU - header.IPv6MinimumSize - header.TCPMinimumSize
	}
	return wireConnOn(t, jumboQueue(t), v6, nil, func(p *wirePeer) { p.mss = mss })
}

// readAll reads what ep holds, pumping the peer until want bytes came.
func readAll(p *wirePeer, ep tcpip.Endpoint, want int) []byte {
	p.t.Helper()
	var got bytes.Buffer
	p.until(fmt.Sprintf("%d bytes for the application", want), func() bool {
		runtime.Gosched()
		if _, err := ep.Read(&got, tcpip.ReadOptions{}); err != nil {
			if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
				p.t.Fatalf("read: %v", err)
			}
		}
		return got.Len() >= want
	})
	return got.Bytes()
}

// TestDeliverChain sends the stack a full-sized segment of MTU 9000, which
// the queue hands over in 6 buffers: gVisor must take it as one segment
// (one acknowledgment of all of it) with every byte in place.
func TestDeliverChain(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) {
			p, ep := jumboConn(t, v6)
			ipHdr := header.IPv4MinimumSize
			if v6 {
				ipHdr = header.IPv6MinimumSize
			}
			n := jumboMTU - ipHdr - header.TCPMinimumSize
			data := streamBytes(0, n)
			before := p.st.LinkStats()
			p.send(p.sndNxt, header.TCPFlagAck|header.TCPFlagPsh, p.rcvNxt, 65535, data)
			p.sndNxt += uint32(n)
			if got := readAll(p, ep, n); !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes, not the %d sent", len(got), n)
			}
			p.until("the acknowledgment of the segment", func() bool { return p.ack == p.sndNxt })
			after := p.st.LinkStats()
			if d := after.RxFrames - before.RxFrames; d != 1 {
				t.Errorf("link.rx_frames went up by %d, want 1", d)
			}
			if after.RxMalformed != 0 || after.RxBadChecksum != 0 {
				t.Errorf("counters %+v", after)
			}
			if s := p.q.Stats(); s.RxFrames == 0 {
				t.Errorf("queue stats %+v", s)
			}
		})
	}
}

// TestDeliverChainDrops checks that a chain is checked as a one-buffer
// frame is: a wrong TCP checksum anywhere in it is counted and the frame
// dropped before gVisor, and a chain longer than the MTU the stack runs
// with is counted as malformed.
func TestDeliverChainDrops(t *testing.T) {
	t.Run("bad checksum", func(t *testing.T) {
		p, _ := jumboConn(t, false)
		n := jumboMTU - header.IPv4MinimumSize - header.TCPMinimumSize
		f := p.frame(p.sndNxt, header.TCPFlagAck, p.rcvNxt, 65535, streamBytes(0, n))
		f[len(f)-1] ^= 0xff // in the last buffer of the chain
		if !p.q.Inject(f) {
			t.Fatal("inject")
		}
		p.pump()
		if s := p.st.LinkStats(); s.RxBadChecksum != 1 || s.RxFrames != 2 {
			// The handshake's two frames were delivered; this one not.
			t.Errorf("link stats %+v, want rx_bad_checksum 1 and the handshake's 2 frames delivered", s)
		}
	})
	t.Run("longer than the MTU", func(t *testing.T) {
		st, q := stacktest.NewStackOn(t, jumboQueue(t), stack.Config{Name: "jumbo", MTU: 4000,
			Addr4: netip.MustParsePrefix("198.18.0.1/16")})
		f := make([]byte, jumboMTU+header.EthernetMinimumSize)
		header.Ethernet(f).Encode(&header.EthernetFields{DstAddr: tcpip.LinkAddress(st.HardwareAddr()), Type: header.IPv4ProtocolNumber})
		if !q.Inject(f) {
			t.Fatal("inject")
		}
		bufs, segs := make([][]byte, 64), make([]int, 8)
		n, err := q.RxPackets(bufs, segs)
		if n != 1 || segs[0] != 6 || err != nil {
			t.Fatalf("RxPackets: %d frames, segs %v, %v", n, segs[:n], err)
		}
		st.DeliverPackets(bufs, segs[:n])
		if s := st.LinkStats(); s.RxMalformed != 1 || s.RxFrames != 0 {
			t.Errorf("link stats %+v, want rx_malformed 1 and nothing delivered", s)
		}
	})
}

// TestSendJumbo has the application write over a connection whose peer
// announced the MSS of MTU 9000: gVisor's segments of 8960 bytes must
// leave in frames of 9014 bytes (5 lent buffers each) and carry the
// stream in order, with correct checksums.
func TestSendJumbo(t *testing.T) {
	p, ep := jumboConn(t, false)
	const n = 5 * (jumboMTU - header.IPv4MinimumSize - header.TCPMinimumSize)
	var got []byte
	full := 0
	p.onFrame = func(f []byte) {
		ip := header.IPv4(f[header.EthernetMinimumSize:])
		if !ip.IsValid(len(ip)) || ip.TransportProtocol() != header.TCPProtocolNumber {
			return
		}
		tcp := header.TCP(ip.Payload())
		sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), uint16(len(tcp)))
		if !tcp.IsChecksumValid(ip.SourceAddress(), ip.DestinationAddress(), checksum.Checksum(tcp.Payload(), 0), uint16(len(tcp.Payload()))) {
			t.Errorf("a frame of %d bytes with a wrong TCP checksum (pseudo-header sum %#x)", len(f), sum)
		}
		if len(f) == jumboMTU+header.EthernetMinimumSize {
			full++
		}
		if seq := tcp.SequenceNumber(); len(tcp.Payload()) > 0 && seq == p.rcvNxt {
			got = append(got, tcp.Payload()...)
		}
	}
	data := streamBytes(0, n)
	if _, err := ep.Write(bytes.NewReader(data), tcpip.WriteOptions{}); err != nil {
		t.Fatalf("write: %v", err)
	}
	p.until("the stream", func() bool {
		runtime.Gosched()
		return len(got) >= n
	})
	if !bytes.Equal(got, data) {
		t.Errorf("the peer received %d bytes, not the %d written", len(got), n)
	}
	if full == 0 {
		t.Errorf("no frame of %d bytes", jumboMTU+header.EthernetMinimumSize)
	}
	if s := p.st.LinkStats(); s.TxDropped != 0 {
		t.Errorf("link stats %+v", s)
	}
}

// BenchmarkDeliverJumbo is the receive side of a bulk transfer at MTU
// 9000: bursts of 8 in-order full-sized segments delivered to one
// connection, which the application reads, with GRO on. "chain" hands
// each frame over in 6 buffers, as a multi-buffer queue does
// (DeliverPackets joins them as it copies them into gVisor memory);
// "contiguous" hands over the same frames in one buffer each (Deliver),
// what the stack would do if a UMEM frame held a whole jumbo frame. Both
// copy each byte once; the difference is the cost of the chain.
func BenchmarkDeliverJumbo(b *testing.B) {
	const burst, mss = 8, jumboMTU - header.IPv4MinimumSize - header.TCPMinimumSize
	for _, chain := range []bool{true, false} {
		name := "contiguous"
		if chain {
			name = "chain"
		}
		b.Run(name, func(b *testing.B) {
			p, ep := jumboConn(b, false)
			frames := make([][]byte, burst)
			var bufs [][]byte
			var segs []int
			for i := range frames {
				f := p.frame(0, header.TCPFlagAck, p.rcvNxt, 65535, streamBytes(0, mss))
				frames[i] = f
				k := 0
				for off := 0; off < len(f); off += jumboSeg {
					bufs = append(bufs, f[off:min(off+jumboSeg, len(f))])
					k++
				}
				segs = append(segs, k)
			}
			l4 := header.EthernetMinimumSize + header.IPv4MinimumSize
			var sink discard
			ack := make([]byte, 9014)
			b.SetBytes(burst * mss)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for i, f := range frames {
					setSeq(f[l4:], p.sndNxt+uint32(i*mss))
				}
				p.sndNxt += burst * mss
				if chain {
					p.st.DeliverPackets(bufs, segs)
				} else {
					p.st.Deliver(frames)
				}
				for sink.n < burst*mss {
					runtime.Gosched()
					if _, err := ep.Read(&sink, tcpip.ReadOptions{}); err != nil {
						if _, ok := err.(*tcpip.ErrWouldBlock); !ok {
							b.Fatalf("read: %v", err)
						}
					}
				}
				sink.n = 0
				p.st.Flush()
				for {
					if _, ok := p.q.ReadSent(ack); !ok {
						break
					}
				}
			}
		})
	}
}

// BenchmarkJumboPayload compares the two shapes a received jumbo frame's
// payload can take in gVisor memory, copied out of its 6 buffers: one
// view the size of the frame (what deliverChain builds), or a view per
// buffer. Each is then summed (as a checksum check reads it) and read out
// (as the application's read does), and released.
func BenchmarkJumboPayload(b *testing.B) {
	frame := streamBytes(0, jumboMTU+header.EthernetMinimumSize)
	var pieces [][]byte
	for off := 0; off < len(frame); off += jumboSeg {
		pieces = append(pieces, frame[off:min(off+jumboSeg, len(frame))])
	}
	var sink discard
	b.Run("one-view", func(b *testing.B) {
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			v := buffer.NewView(len(frame))
			for _, p := range pieces {
				v.Write(p)
			}
			buf := buffer.MakeWithView(v)
			buf.Checksum(header.EthernetMinimumSize)
			buf.ReadToWriter(&sink, buf.Size())
			buf.Release()
		}
	})
	b.Run("view-per-buffer", func(b *testing.B) {
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			var buf buffer.Buffer
			for _, p := range pieces {
				buf.Append(buffer.NewViewWithData(p))
			}
			buf.Checksum(header.EthernetMinimumSize)
			buf.ReadToWriter(&sink, buf.Size())
			buf.Release()
		}
	})
}
