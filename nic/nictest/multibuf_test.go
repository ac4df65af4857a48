package nictest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/xstack/xstack/nic"
)

// counted returns n bytes whose every byte depends on its offset, so that
// a reordered or lost piece shows.
func counted(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) ^ byte(i>>8) ^ seed
	}
	return b
}

// joined returns the frames RxPackets filled in, each made whole.
func joined(bufs [][]byte, segs []int) [][]byte {
	var out [][]byte
	k := 0
	for _, n := range segs {
		var f []byte
		for _, b := range bufs[k : k+n] {
			f = append(f, b...)
		}
		out = append(out, f)
		k += n
	}
	return out
}

func newMultiBufferPair(t *testing.T) (*Queue, *Queue) {
	t.Helper()
	a, b := Pair(9000)
	t.Cleanup(func() { a.Close(); b.Close() })
	for _, q := range []*Queue{a, b} {
		if err := q.SetMultiBuffer(2000, 5); err != nil {
			t.Fatal(err)
		}
	}
	return a, b
}

func TestMultiBufferRx(t *testing.T) {
	a, b := newMultiBufferPair(t)
	sent := [][]byte{counted(9014, 1), counted(60, 2), counted(2000, 3), counted(2001, 4)}
	if n, err := a.Tx(sent); n != len(sent) || err != nil {
		t.Fatalf("Tx = %d, %v", n, err)
	}
	if _, err := b.Rx(make([][]byte, 4)); !errors.Is(err, nic.ErrRxMultiBuffer) {
		t.Fatalf("Rx on a multi-buffer queue: %v, want ErrRxMultiBuffer", err)
	}
	// Five buffers: the first frame needs them all, the next call gets
	// the rest.
	bufs, segs := make([][]byte, 5), make([]int, 8)
	n, err := b.RxPackets(bufs, segs)
	if n != 1 || err != nil || segs[0] != 5 {
		t.Fatalf("RxPackets = %d frames (segs %v), %v; want 1 of 5 buffers", n, segs[:n], err)
	}
	if got := joined(bufs, segs[:1]); !bytes.Equal(got[0], sent[0]) {
		t.Fatal("the 9014-byte frame came back different")
	}
	n, err = b.RxPackets(bufs, segs)
	if n != 3 || err != nil {
		t.Fatalf("RxPackets = %d, %v; want 3", n, err)
	}
	if want := []int{1, 1, 2}; !equalInts(segs[:n], want) {
		t.Fatalf("segs %v, want %v", segs[:n], want)
	}
	for i, f := range joined(bufs, segs[:n]) {
		if !bytes.Equal(f, sent[i+1]) {
			t.Fatalf("frame %d came back different", i+1)
		}
	}
	if n, err := b.RxPackets(bufs, segs); n != 0 || err != nil {
		t.Fatalf("RxPackets on an empty queue = %d, %v", n, err)
	}

	// A frame of more buffers than bufs holds.
	a.Tx([][]byte{counted(9014, 5)})
	if n, err := b.RxPackets(bufs[:4], segs); n != 0 || !errors.Is(err, nic.ErrRxBufsShort) {
		t.Fatalf("RxPackets with 4 buffers for a 5-buffer frame = %d, %v; want ErrRxBufsShort", n, err)
	}
	if n, _ := b.RxPackets(bufs, segs); n != 1 {
		t.Fatalf("the frame was lost after ErrRxBufsShort: RxPackets = %d", n)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// jumboUDPFrame is an Ethernet/IPv4/UDP frame of n bytes with the UDP checksum
// field holding what a caller of SetTxChecksum leaves there.
func jumboUDPFrame(n int) []byte {
	f := counted(n, 9)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	f[14] = 0x45
	binary.BigEndian.PutUint16(f[40:], 0x1234)
	return f
}

func TestMultiBufferTxSubmitPackets(t *testing.T) {
	a, b := newMultiBufferPair(t)
	if a.MaxTxSegments() != 5 || !a.MultiBuffer() {
		t.Fatalf("MaxTxSegments %d, MultiBuffer %v", a.MaxTxSegments(), a.MultiBuffer())
	}
	want := jumboUDPFrame(9014)
	lent := make([][]byte, 5)
	if n := a.TxReserve(lent); n != 5 {
		t.Fatalf("TxReserve = %d", n)
	}
	for i := range lent {
		if cap(lent[i]) != 2000 {
			t.Fatalf("lent buffer of capacity %d, want 2000", cap(lent[i]))
		}
		lent[i] = append(lent[i], want[i*2000:min((i+1)*2000, len(want))]...)
	}
	if err := a.SetTxChecksum(lent[0], 34, 6); err != nil {
		t.Fatal(err)
	}
	if n, err := a.TxSubmitPackets(lent, []int{5}); n != 1 || err != nil {
		t.Fatalf("TxSubmitPackets = %d, %v", n, err)
	}
	nic.CompleteChecksum(want, 34, 6)
	bufs, segs := make([][]byte, 8), make([]int, 4)
	n, err := b.RxPackets(bufs, segs)
	if n != 1 || err != nil {
		t.Fatalf("RxPackets = %d, %v", n, err)
	}
	if got := joined(bufs, segs[:1])[0]; !bytes.Equal(got, want) {
		t.Fatal("the frame built in 5 buffers came across different (or without its checksum)")
	}
	if st := a.Stats(); st.TxCsumOffload != 1 || st.UMEMTxLent != 0 {
		t.Fatalf("stats %+v: want 1 checksum offload, nothing lent", st)
	}

	// Refusals: a chain longer than MaxTxSegments, a segs that does not
	// add up. Every buffer comes back either way.
	lent = make([][]byte, 6)
	a.TxReserve(lent)
	for i := range lent {
		lent[i] = append(lent[i], 1)
	}
	if n, err := a.TxSubmitPackets(lent, []int{6}); n != 0 || !errors.Is(err, nic.ErrTxTooManySegs) {
		t.Fatalf("TxSubmitPackets of 6 buffers = %d, %v; want ErrTxTooManySegs", n, err)
	}
	a.TxReserve(lent[:2])
	if n, err := a.TxSubmitPackets(lent[:2], []int{1}); n != 0 || !errors.Is(err, nic.ErrTxSegsMismatch) {
		t.Fatalf("TxSubmitPackets with segs {1} for 2 buffers = %d, %v; want ErrTxSegsMismatch", n, err)
	}
	if st := a.Stats(); st.UMEMTxLent != 0 {
		t.Fatalf("%d buffers still lent after refusals", st.UMEMTxLent)
	}
	if n, _ := b.RxPackets(bufs, segs); n != 0 {
		t.Fatalf("a refused frame arrived (%d frames)", n)
	}
}

func TestMultiBufferAllocs(t *testing.T) {
	a, b := newMultiBufferPair(t)
	frame := counted(9014, 1)
	bufs, segs := make([][]byte, 8), make([]int, 4)
	lent := make([][]byte, 5)
	segs5 := []int{5}
	if n := testing.AllocsPerRun(500, func() {
		a.TxReserve(lent)
		for i := range lent {
			lent[i] = append(lent[i], frame[i*2000:min((i+1)*2000, len(frame))]...)
		}
		a.TxSubmitPackets(lent, segs5)
		b.RxPackets(bufs, segs)
	}); n != 0 {
		t.Fatalf("TxSubmitPackets+RxPackets allocate %v times per call", n)
	}
}
