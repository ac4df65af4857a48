package nictest

import (
	"bytes"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

func frame(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func TestPairDelivers(t *testing.T) {
	a, b := Pair(1500)
	defer a.Close()
	defer b.Close()
	sent := [][]byte{frame(1, 60), frame(2, 1514), frame(3, 100)}
	if n, err := a.Tx(sent); n != 3 || err != nil {
		t.Fatalf("Tx = %d, %v", n, err)
	}
	sent[0][0] = 9 // Tx copied
	got := make([][]byte, 2)
	n, err := b.Rx(got)
	if n != 2 || err != nil {
		t.Fatalf("Rx = %d, %v", n, err)
	}
	if !bytes.Equal(got[0], frame(1, 60)) || !bytes.Equal(got[1], frame(2, 1514)) {
		t.Fatalf("Rx frames differ from Tx frames")
	}
	// The frames stay valid while more frames arrive...
	a.Tx([][]byte{frame(4, 60)})
	if !bytes.Equal(got[0], frame(1, 60)) {
		t.Fatal("frame from Rx changed before the next Rx")
	}
	n, _ = b.Rx(got)
	if n != 2 || !bytes.Equal(got[0], frame(3, 100)) || !bytes.Equal(got[1], frame(4, 60)) {
		t.Fatalf("second Rx = %d frames, want frames 3 and 4", n)
	}
	if st := a.Stats(); st.TxFrames != 4 || st.TxBytes != 60+1514+100+60 {
		t.Errorf("sender stats %+v", st)
	}
	if st := b.Stats(); st.RxFrames != 4 {
		t.Errorf("receiver stats %+v", st)
	}
}

func TestTxRefusesTooBigAndFull(t *testing.T) {
	a, b := Pair(1500)
	if n, _ := a.Tx([][]byte{frame(1, 60), frame(2, 1515), frame(3, 60)}); n != 1 {
		t.Fatalf("Tx with an oversized second frame accepted %d, want 1", n)
	}
	if st := a.Stats(); st.TxDropped != 2 {
		t.Fatalf("TxDropped = %d, want 2", st.TxDropped)
	}
	burst := make([][]byte, DefaultSlots)
	for i := range burst {
		burst[i] = frame(5, 60)
	}
	if n, _ := a.Tx(burst); n != DefaultSlots-1 {
		t.Fatalf("Tx into a ring with one frame queued accepted %d, want %d", n, DefaultSlots-1)
	}
	if st := a.Stats(); st.TxRingFull != 1 {
		t.Fatalf("TxRingFull = %d, want 1", st.TxRingFull)
	}
	_ = b
}

func TestInjectAndCapture(t *testing.T) {
	q := New(1500)
	if !q.Inject(frame(7, 64)) {
		t.Fatal("Inject refused a frame")
	}
	got := make([][]byte, 4)
	if n, _ := q.Rx(got); n != 1 || !bytes.Equal(got[0], frame(7, 64)) {
		t.Fatalf("Rx after Inject = %d", n)
	}
	q.Tx([][]byte{frame(8, 60), frame(9, 61)})
	buf := make([]byte, 2048)
	if n, ok := q.ReadSent(buf); !ok || !bytes.Equal(buf[:n], frame(8, 60)) {
		t.Fatalf("ReadSent = %d, %v", n, ok)
	}
	if s := q.Sent(); len(s) != 1 || !bytes.Equal(s[0], frame(9, 61)) {
		t.Fatalf("Sent = %d frames", len(s))
	}
	if _, ok := q.ReadSent(buf); ok {
		t.Fatal("ReadSent after Sent drained the capture found a frame")
	}
}

func TestWait(t *testing.T) {
	a, b := Pair(1500)
	start := time.Now()
	if err := b.Wait(20 * time.Millisecond); err != nil || time.Since(start) < 15*time.Millisecond {
		t.Fatalf("Wait on an idle queue returned %v after %v", err, time.Since(start))
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		a.Tx([][]byte{frame(1, 60)})
	}()
	if err := b.Wait(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if n, _ := b.Rx(make([][]byte, 1)); n != 1 {
		t.Fatal("Wait returned but Rx found nothing")
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		b.Close()
	}()
	if err := b.Wait(-1); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Wait across Close = %v, want net.ErrClosed", err)
	}
}

func TestClose(t *testing.T) {
	a, b := Pair(1500)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, err := a.Rx(make([][]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Rx after Close = %v", err)
	}
	if _, err := a.Tx([][]byte{frame(1, 60)}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Tx after Close = %v", err)
	}
	// The peer's frames vanish like on a pulled cable.
	if n, err := b.Tx([][]byte{frame(1, 60)}); n != 1 || err != nil {
		t.Errorf("Tx to a closed peer = %d, %v", n, err)
	}
}

func TestConcurrentTx(t *testing.T) {
	a, b := Pair(1500)
	const writers, each = 4, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f := [][]byte{frame(byte(w), 60)}
			for range each {
				for {
					n, err := a.Tx(f)
					if err != nil {
						t.Error(err)
						return
					}
					if n == 1 {
						break
					}
					time.Sleep(time.Microsecond)
				}
			}
		}()
	}
	got := 0
	frames := make([][]byte, 64)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	finished := false
	for got < writers*each {
		n, _ := b.Rx(frames)
		for _, f := range frames[:n] {
			if len(f) != 60 || f[59] != f[0] {
				t.Fatalf("torn frame")
			}
		}
		got += n
		if n == 0 {
			if finished {
				t.Fatalf("received %d of %d frames", got, writers*each)
			}
			select {
			case <-done:
				finished = true // one more Rx drains what is left
			default:
			}
		}
	}
}

func TestAllocs(t *testing.T) {
	a, b := Pair(1500)
	tx := [][]byte{frame(1, 60), frame(2, 60)}
	rx := make([][]byte, 8)
	if n := testing.AllocsPerRun(1000, func() {
		a.Tx(tx)
		b.Rx(rx)
	}); n != 0 {
		t.Fatalf("Tx+Rx allocate %v times per call", n)
	}
}

func BenchmarkPairTxRx(b *testing.B) {
	for _, batch := range []int{1, 32} {
		b.Run(map[int]string{1: "batch=1", 32: "batch=32"}[batch], func(b *testing.B) {
			q1, q2 := Pair(1500)
			tx := make([][]byte, batch)
			for i := range tx {
				tx[i] = frame(1, 64)
			}
			rx := make([][]byte, batch)
			b.ReportAllocs()
			b.SetBytes(int64(64 * batch))
			for b.Loop() {
				q1.Tx(tx)
				q2.Rx(rx)
			}
		})
	}
}

// checkTxAccounting fails t unless q's transmit buffers add up, with lent
// of them lent.
func checkTxAccounting(t *testing.T, q *Queue, lent int) {
	t.Helper()
	st := q.Stats()
	if st.UMEMFrames != TxBuffers || st.UMEMTxFree != TxBuffers || st.UMEMTxLent != uint64(lent) {
		t.Fatalf("frames %d, tx_free %d, tx_lent %d; want %d, %d, %d", st.UMEMFrames, st.UMEMTxFree, st.UMEMTxLent, TxBuffers, TxBuffers, lent)
	}
}

// TestTxReserve builds frames in the queue's own buffers, sends some and
// gives the others back, and checks that every buffer is accounted for,
// that the peer gets the frames sent and no others, and that buffers the
// queue did not lend are refused.
func TestTxReserve(t *testing.T) {
	a, b := Pair(1500)
	defer a.Close()
	defer b.Close()

	bufs := make([][]byte, TxBuffers+1)
	if n := a.TxReserve(bufs); n != TxBuffers {
		t.Fatalf("TxReserve lent %d, want all %d", n, TxBuffers)
	}
	checkTxAccounting(t, a, TxBuffers)
	if n := a.TxReserve(make([][]byte, 1)); n != 0 {
		t.Fatalf("TxReserve with none free lent %d", n)
	}
	for i, buf := range bufs[:TxBuffers] {
		if len(buf) != 0 || cap(buf) != 1514 {
			t.Fatalf("buffer %d: len %d cap %d, want 0 and 1514", i, len(buf), cap(buf))
		}
		bufs[i] = append(buf, frame(byte(i), 60+i)...)
	}
	// An empty frame is not sent, and nothing after it: the sent frames
	// are a prefix.
	bufs[3] = bufs[3][:0]
	if n, err := a.TxSubmit(bufs[:5]); n != 3 || err != nil {
		t.Fatalf("TxSubmit = %d, %v; want 3, nil", n, err)
	}
	if err := a.TxRelease(bufs[5:TxBuffers]); err != nil {
		t.Fatal(err)
	}
	checkTxAccounting(t, a, 0)
	got := make([][]byte, 8)
	if n, _ := b.Rx(got); n != 3 || !bytes.Equal(got[2], frame(2, 62)) {
		t.Fatalf("peer received %d frames, want the first 3", n)
	}
	if st := a.Stats(); st.TxFrames != 3 || st.TxDropped != 2 {
		t.Errorf("TxFrames %d TxDropped %d, want 3 and 2", st.TxFrames, st.TxDropped)
	}

	// Given back twice, or never lent: refused, and nothing changes.
	if err := a.TxRelease(bufs[:1]); err == nil {
		t.Error("TxRelease of a buffer given back already: no error")
	}
	if n, err := a.TxSubmit([][]byte{frame(1, 60)}); n != 0 || err == nil {
		t.Errorf("TxSubmit of the caller's own buffer = %d, %v; want 0 and an error", n, err)
	}
	if err := a.TxRelease([][]byte{nil}); err == nil {
		t.Error("TxRelease of nil: no error")
	}
	checkTxAccounting(t, a, 0)

	a.Close()
	if n := a.TxReserve(bufs); n != 0 {
		t.Errorf("TxReserve after Close lent %d", n)
	}
	if _, err := a.TxSubmit(nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("TxSubmit after Close = %v, want net.ErrClosed", err)
	}
}

func TestTxReserveAllocs(t *testing.T) {
	a, b := Pair(1500)
	defer a.Close()
	defer b.Close()
	bufs := make([][]byte, 4)
	rx := make([][]byte, 8)
	if n := testing.AllocsPerRun(1000, func() {
		n := a.TxReserve(bufs)
		for i := range n {
			bufs[i] = append(bufs[i], 1, 2, 3, 4)
		}
		a.TxSubmit(bufs[:n-1])
		a.TxRelease(bufs[n-1 : n])
		b.Rx(rx)
	}); n != 0 {
		t.Fatalf("TxReserve+TxSubmit+TxRelease allocate %v times per call", n)
	}
	checkTxAccounting(t, a, 0)
}
