package nic

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/blast"
)

// blaster sends frame from the peer end in a tight loop until stop.
func (r *testRig) blaster(tb testing.TB, frame []byte) (stop func() uint64) {
	tb.Helper()
	// Protocol 0: a send-only socket that receives nothing.
	fd := r.packetSocket(tb, 0, func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	})
	done := make(chan struct{})
	var wg sync.WaitGroup
	var sent uint64
	batch := blast.NewBatch(64)
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		for {
			select {
			case <-done:
				return
			default:
			}
			for range 16 {
				sent += uint64(batch.Send(fd, frame))
			}
		}
	}()
	return func() uint64 {
		close(done)
		wg.Wait()
		unix.Close(fd)
		return sent
	}
}

// BenchmarkXSKReceiveRate measures how many minimal frames per second an
// xsk receives on the rig while the peer sends them as fast as AF_PACKET
// can. One op is one received frame.
func BenchmarkXSKReceiveRate(b *testing.B) {
	r := newRig(b)
	_, q := r.openPortConfig(b, "auto", QueueConfig{Frames: 8192, RxRing: 2048, FillRing: 4096, TxRing: 64})
	frame := udp4Frame(r.StackMAC, r.PeerMAC, r.PeerAddr4, r.StackAddr4, make([]byte, 18)) // 60 bytes
	stop := r.blaster(b, frame)
	frames := make([][]byte, 64)
	// Wait for the first frame so that start-up is not measured.
	for n := 0; n == 0; {
		n, _ = q.Rx(frames)
	}
	before := q.Stats()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	deadline := start.Add(30 * time.Second)
	got, polls := 0, 0
	for got < b.N {
		n, err := q.Rx(frames)
		if err != nil {
			b.Fatal(err)
		}
		got += n
		if polls++; polls&1023 == 0 && time.Now().After(deadline) {
			b.Fatalf("received %d of %d frames in 30s", got, b.N)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	sent := stop()
	after := q.Stats()
	b.ReportMetric(float64(got)/elapsed.Seconds(), "frames/s")
	b.ReportMetric(float64(after.RxDropped+after.RxRingFull-before.RxDropped-before.RxRingFull), "kernel-drops")
	b.Logf("peer sent %d frames; stats before %+v after %+v", sent, before, after)
}

// BenchmarkXSKTx measures sending batches of 60-byte frames to the peer
// (copy mode: the sendto kick runs the transmit), copied by Tx or built in
// UMEM frames (TxReserve, TxSubmit), with the kernel's fixed per-sendto
// budget of 32 frames and with XDP_MAX_TX_SKB_BUDGET raising it to the TX
// ring: kicks/frame is sendto calls per frame sent.
func BenchmarkXSKTx(b *testing.B) {
	r := newRig(b)
	_, q := r.openPort(b, "auto")
	frame := udp4Frame(r.PeerMAC, r.StackMAC, r.StackAddr4, r.PeerAddr4, make([]byte, 18))
	ringBudget := q.txBudget
	for _, batch := range []int{32, 64} {
		for _, budget := range []int{kernelTxBatch, ringBudget} {
			for _, inPlace := range []bool{false, true} {
				name := fmt.Sprintf("batch=%d/budget=%d/copy", batch, budget)
				if inPlace {
					name = fmt.Sprintf("batch=%d/budget=%d/in-umem", batch, budget)
				}
				b.Run(name, func(b *testing.B) {
					if err := unix.SetsockoptInt(q.fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, budget); err != nil {
						b.Skipf("set XDP_MAX_TX_SKB_BUDGET %d: %v", budget, err)
					}
					frames := make([][]byte, batch)
					for i := range frames {
						frames[i] = frame
					}
					bufs := make([][]byte, batch)
					before := q.Stats()
					b.ReportAllocs()
					start := time.Now()
					for b.Loop() {
						if !inPlace {
							if _, err := q.Tx(frames); err != nil {
								b.Fatal(err)
							}
							continue
						}
						n := q.TxReserve(bufs)
						for i := range n {
							bufs[i] = append(bufs[i], frame...)
						}
						if _, err := q.TxSubmit(bufs[:n]); err != nil {
							b.Fatal(err)
						}
					}
					elapsed := time.Since(start)
					after := q.Stats()
					sent := float64(after.TxFrames - before.TxFrames)
					b.ReportMetric(sent/elapsed.Seconds(), "frames/s")
					b.ReportMetric(float64(after.TxWakeups-before.TxWakeups)/sent, "kicks/frame")
				})
			}
		}
	}
}

// BenchmarkXSKRxEmpty measures an Rx that finds nothing: the cost of a
// busy-poll pass on an idle queue.
func BenchmarkXSKRxEmpty(b *testing.B) {
	r := newRig(b)
	_, q := r.openPort(b, "auto")
	frames := make([][]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		q.Rx(frames)
	}
}

// BenchmarkXSKTxChecksum measures sending batches of 32 UDP frames built in
// UMEM: on a queue with TX checksum offload, without requests (what the
// offload costs a frame that does not use it) and with one per frame; and
// on a queue without it, the checksum computed in user space
// (CompleteChecksum) as the stack's software path would.
func BenchmarkXSKTxChecksum(b *testing.B) {
	r := newRig(b)
	for _, size := range []int{60, 1514} {
		frame := csumFrame4(r.PeerMAC, r.StackMAC, r.StackAddr4, r.PeerAddr4, unix.IPPROTO_UDP,
			make([]byte, size-14-20), 6)
		binary.BigEndian.PutUint16(frame[14+20+4:], uint16(size-14-20))
		// A wrong IP header checksum makes the peer drop every frame
		// in ip_rcv, before the UDP checksum matters: the peer's receive
		// work, which veth runs in the sender's context, is then the
		// same for every variant.
		frame[14+10] ^= 0xff
		for _, mode := range []string{"offload-unused", "offload", "software"} {
			b.Run(fmt.Sprintf("size=%d/%s", size, mode), func(b *testing.B) {
				qc := QueueConfig{Frames: 4096, RxRing: 1024, TxRing: 1024}
				if mode == "software" {
					qc.TxChecksum = TxChecksumOff
				}
				_, q := r.openPortConfig(b, "auto", qc)
				if q.TxChecksumOffload() != (mode != "software") {
					b.Fatalf("TxChecksumOffload %v in mode %s", q.TxChecksumOffload(), mode)
				}
				bufs := make([][]byte, 32)
				before := q.Stats()
				b.ReportAllocs()
				start := time.Now()
				for b.Loop() {
					n := q.TxReserve(bufs)
					for i := range n {
						bufs[i] = append(bufs[i], frame...)
						switch mode {
						case "offload":
							if err := q.SetTxChecksum(bufs[i], 14+20, 6); err != nil {
								b.Fatal(err)
							}
						case "software":
							CompleteChecksum(bufs[i], 14+20, 6)
						}
					}
					if _, err := q.TxSubmit(bufs[:n]); err != nil {
						b.Fatal(err)
					}
				}
				elapsed := time.Since(start)
				after := q.Stats()
				sent := float64(after.TxFrames - before.TxFrames)
				b.ReportMetric(sent/elapsed.Seconds(), "frames/s")
				b.ReportMetric(float64(after.TxCsumOffload-before.TxCsumOffload)/sent, "requests/frame")
			})
		}
	}
}

// BenchmarkCompleteChecksum measures the software checksum of a 1514-byte
// frame's UDP payload: what a request saves the caller.
func BenchmarkCompleteChecksum(b *testing.B) {
	f := make([]byte, 1514)
	b.SetBytes(int64(len(f) - 34))
	b.ReportAllocs()
	for b.Loop() {
		CompleteChecksum(f, 34, 6)
	}
}
