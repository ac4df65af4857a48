package nictest

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/xstack/xstack/nic"
)

// udpFrame is an Ethernet+IPv4+UDP frame (no IP header checksum: nothing
// here checks it) whose UDP checksum field holds the pseudo-header sum.
func udpFrame(payload string) []byte {
	f := make([]byte, 14+20+8, 14+20+8+len(payload))
	f[12], f[13] = 0x08, 0x00
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	copy(ip[12:], []byte{198, 18, 0, 1, 198, 18, 0, 2})
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], 9)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	f = append(f, payload...)
	l4len := 8 + len(payload)
	pseudo := sum16(0, append(append([]byte(nil), ip[12:20]...), 0, 17, byte(l4len>>8), byte(l4len)))
	binary.BigEndian.PutUint16(f[14+20+6:], pseudo)
	return f
}

func sum16(sum uint32, b []byte) uint16 {
	for ; len(b) >= 2; b = b[2:] {
		sum += uint32(b[0])<<8 | uint32(b[1])
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// udpChecksumOK verifies the UDP checksum of a frame of udpFrame's shape.
func udpChecksumOK(f []byte) bool {
	l4 := f[14+20:]
	pseudo := append(append([]byte(nil), f[14+12:14+20]...), 0, 17, byte(len(l4)>>8), byte(len(l4)))
	return sum16(uint32(sum16(0, pseudo)), l4) == 0xffff
}

func TestTxChecksumOffload(t *testing.T) {
	q := New(1500)
	defer q.Close()
	var _ nic.TxChecksumOffloader = q
	if !q.TxChecksumOffload() {
		t.Fatal("TxChecksumOffload off on a new queue")
	}
	send := func(f []byte, request bool) []byte {
		t.Helper()
		bufs := make([][]byte, 1)
		if q.TxReserve(bufs) != 1 {
			t.Fatal("TxReserve lent nothing")
		}
		bufs[0] = append(bufs[0], f...)
		if request {
			if err := q.SetTxChecksum(bufs[0], 14+20, 6); err != nil {
				t.Fatal(err)
			}
		}
		if n, err := q.TxSubmit(bufs); n != 1 || err != nil {
			t.Fatalf("TxSubmit = %d, %v", n, err)
		}
		sent := q.Sent()
		if len(sent) != 1 {
			t.Fatalf("%d frames sent, want 1", len(sent))
		}
		return sent[0]
	}
	for _, payload := range []string{"", "x", "even", "an odd-length payload"} {
		f := udpFrame(payload)
		if udpChecksumOK(f) {
			t.Fatalf("payload %q: the pseudo-header sum alone passes as a checksum", payload)
		}
		if got := send(f, true); !udpChecksumOK(got) {
			t.Errorf("payload %q: the request did not complete the checksum: %x", payload, got)
		}
		// The request is forgotten once the buffer is lent again.
		if got := send(f, false); udpChecksumOK(got) {
			t.Errorf("payload %q: a frame without a request had its checksum completed", payload)
		}
	}
	if st := q.Stats(); st.TxCsumOffload != 4 {
		t.Errorf("TxCsumOffload %d, want 4", st.TxCsumOffload)
	}

	bufs := make([][]byte, 1)
	q.TxReserve(bufs)
	bufs[0] = append(bufs[0], udpFrame("x")...)
	if err := q.SetTxChecksum(bufs[0], 14+20, len(bufs[0])); err == nil {
		t.Error("a checksum field past the frame's end was accepted")
	}
	if err := q.SetTxChecksum(udpFrame("x"), 14+20, 6); err == nil {
		t.Error("a request on a buffer the queue did not lend was accepted")
	}
	if a := testing.AllocsPerRun(100, func() {
		q.SetTxChecksum(bufs[0], 14+20, 6)
	}); a != 0 {
		t.Errorf("SetTxChecksum allocates %v times per call", a)
	}
	q.TxRelease(bufs)

	off := New(1500)
	defer off.Close()
	off.SetTxChecksumOffload(false)
	off.TxReserve(bufs)
	bufs[0] = append(bufs[0], udpFrame("x")...)
	if off.TxChecksumOffload() || !errors.Is(off.SetTxChecksum(bufs[0], 14+20, 6), nic.ErrTxChecksumOff) {
		t.Error("a queue with the offload switched off takes checksum requests")
	}
	off.TxRelease(bufs)
}
