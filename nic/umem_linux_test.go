package nic

import (
	"fmt"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/xstest"
)

// checkUMEM fails t unless st's UMEM figures add up to the UMEM's frames.
func checkUMEM(t *testing.T, st Stats) {
	t.Helper()
	if sum := st.UMEMRxUser + st.UMEMRxKernel + st.UMEMTxFree + st.UMEMTxKernel; sum != st.UMEMFrames {
		t.Fatalf("UMEM accounting: rx_user %d + rx_kernel %d + tx_free %d + tx_kernel %d = %d, want frames %d",
			st.UMEMRxUser, st.UMEMRxKernel, st.UMEMTxFree, st.UMEMTxKernel, sum, st.UMEMFrames)
	}
}

// TestUMEMAccounting moves thousands of frames through a queue both ways
// (sending copied frames and frames built in UMEM in turn), checking that
// every UMEM frame is accounted for at every step, then goes idle and
// checks that every TX frame comes back from the kernel: a queue that
// stops sending must not leave frames parked in the TX or completion ring.
func TestUMEMAccounting(t *testing.T) {
	r := newRig(t)
	const frames, ring = 4096, 1024
	_, q := r.openPortConfig(t, "auto", QueueConfig{Queue: 0, Frames: frames, RxRing: ring, TxRing: ring})
	peer := r.peerSocket(t)

	st := q.Stats()
	checkUMEM(t, st)
	if st.UMEMFrames != frames || st.UMEMTxFree != frames/2 || st.UMEMTxKernel != 0 || st.UMEMRxKernel != ring {
		t.Fatalf("fresh queue: %+v; want %d frames, %d TX frames free, none with the kernel, %d in the fill ring",
			st, frames, frames/2, ring)
	}

	const total = 32 * 160
	in := udp4Frame(r.StackMAC, r.PeerMAC, r.PeerAddr4, r.StackAddr4, make([]byte, 64))
	out := ethFrame(r.PeerMAC, r.StackMAC, 0x88b5, make([]byte, 64))
	batch := make([][]byte, 64)
	txBatch := make([][]byte, 16)
	for i := range txBatch {
		txBatch[i] = out
	}
	// send sends up to n frames, alternately copied (Tx) and built in
	// UMEM frames (TxReserve, TxSubmit, and one buffer given back unused),
	// checking the accounting while buffers are lent.
	lent := make([][]byte, len(txBatch)+1)
	var calls int
	send := func(n int) int {
		calls++
		if calls%2 == 0 {
			m, err := q.Tx(txBatch[:n])
			if err != nil {
				t.Fatal(err)
			}
			return m
		}
		k := q.TxReserve(lent[:n+1])
		st := q.Stats()
		checkUMEM(t, st)
		if st.UMEMTxLent != uint64(k) {
			t.Fatalf("%d buffers lent, UMEMTxLent %d", k, st.UMEMTxLent)
		}
		if k == 0 {
			return 0
		}
		for i := range k - 1 {
			lent[i] = append(lent[i], out...)
		}
		m, err := q.TxSubmit(lent[:k-1])
		if err != nil {
			t.Fatal(err)
		}
		if err := q.TxRelease(lent[k-1 : k]); err != nil {
			t.Fatal(err)
		}
		return m
	}
	var sent, received int
	for round := 0; round < total/32; round++ {
		// The peer sends a burst the RX side can hold; the queue takes it
		// in while it sends frames of its own.
		for k := 0; k < 32; k++ {
			peer.send(t, in)
		}
		got := 0
		xstest.WaitFor(t, 5*time.Second, fmt.Sprintf("round %d: 32 frames received", round), func() error {
			n, err := q.Rx(batch)
			if err != nil {
				t.Fatal(err)
			}
			got += n
			received += n
			if sent < total {
				sent += send(min(len(txBatch), total-sent))
			}
			st := q.Stats()
			checkUMEM(t, st)
			if st.UMEMRxUser < uint64(n) {
				t.Fatalf("%d frames lent by the last Rx, but only %d RX frames in user space", n, st.UMEMRxUser)
			}
			if got < 32 {
				return fmt.Errorf("%d of 32 received; stats %+v", got, st)
			}
			return nil
		})
	}
	for sent < total {
		sent += send(min(len(txBatch), total-sent))
		checkUMEM(t, q.Stats())
	}
	busy := q.Stats()
	t.Logf("after %d frames each way: rx_user %d rx_kernel %d tx_free %d tx_kernel %d (tx wakeups %d, busy %d)",
		total, busy.UMEMRxUser, busy.UMEMRxKernel, busy.UMEMTxFree, busy.UMEMTxKernel, busy.TxWakeups, busy.WakeupBusy)

	// Idle: the loop keeps calling Rx, which finds nothing. Every TX frame
	// must come back, and the RX side must be back where it started.
	var idle Stats
	xstest.WaitFor(t, 5*time.Second, fmt.Sprintf("UMEM back at rest when idle (tx_kernel 0, rx_kernel %d)", ring), func() error {
		n, err := q.Rx(batch)
		if err != nil {
			t.Fatal(err)
		}
		idle = q.Stats()
		checkUMEM(t, idle)
		if n == 0 && idle.UMEMTxKernel == 0 && idle.UMEMRxKernel == ring {
			return nil
		}
		return fmt.Errorf("%+v", idle)
	})
	if idle.UMEMTxFree != frames/2 || idle.UMEMTxLent != 0 || idle.UMEMRxUser != frames/2-ring {
		t.Errorf("at rest: tx_free %d tx_lent %d rx_user %d; want %d, 0 and %d", idle.UMEMTxFree, idle.UMEMTxLent, idle.UMEMRxUser, frames/2, frames/2-ring)
	}
	if idle.TxFrames != total || received < total {
		t.Errorf("TxFrames %d, received %d; want %d and at least %d", idle.TxFrames, received, total, total)
	}

	// After Close the figures stay readable and add up.
	q.Close()
	checkUMEM(t, q.Stats())
}
