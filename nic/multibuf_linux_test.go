package nic

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/xstest"
)

// jumboMTU is the MTU of the multi-buffer rig tests: a 9014-byte frame,
// several UMEM frames of 2048 bytes.
const jumboMTU = 9000

// setMTU sets the MTU of both ends of the rig.
func (r *testRig) setMTU(tb testing.TB, mtu int) {
	tb.Helper()
	for _, e := range [][2]string{{r.StackNS, r.StackIf}, {r.PeerNS, r.PeerIf}} {
		if out, err := r.Run(e[0], "ip", "link", "set", "dev", e[1], "mtu", strconv.Itoa(mtu)); err != nil {
			tb.Fatalf("set MTU %d on %s: %v: %s", mtu, e[1], err, out)
		}
	}
}

// ipv4Checksum fills in the header checksum of the IPv4 header at frame[14:].
func ipv4Checksum(frame []byte) {
	h := frame[14:34]
	h[10], h[11] = 0, 0
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
}

// jumboPayload is a payload whose every byte depends on its offset, so that
// a reordered or lost segment shows.
func jumboPayload(n int, seed byte) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7) ^ byte(i>>8) ^ seed
	}
	return p
}

// TestXDPSingleBufferJumboRefused records what the kernel answers when a
// program that is not frags-aware is attached in native mode to a veth end
// whose MTU does not fit one page, and that the error says why.
func TestXDPSingleBufferJumboRefused(t *testing.T) {
	r := newRig(t)
	r.setMTU(t, jumboMTU)
	err := netns.Do(r.StackNS, func() error {
		p, err := OpenPort(PortConfig{Ifname: r.StackIf, XDPMode: XDPNative, PassToKernel: true, singleBuffer: true})
		if err == nil {
			p.Close()
		}
		return err
	})
	if err == nil {
		t.Fatal("a single-buffer XDP program attached to veth at MTU 9000")
	}
	t.Logf("kernel's answer: %v", err)
	if !errors.Is(err, unix.ERANGE) || !strings.Contains(err.Error(), "BPF_F_XDP_HAS_FRAGS") {
		t.Fatalf("error %q: want ERANGE and a word on BPF_F_XDP_HAS_FRAGS", err)
	}
}

// TestMultiBufferJumbo runs 9014-byte frames both ways over a veth at MTU
// 9000 with a frags-aware program and a queue bound with XDP_USE_SG: a
// frame from the peer arrives as a chain of descriptors, whole and in
// order, and frames the queue sends as chains (copied by Tx, built in lent
// buffers for TxSubmitPackets) reach the peer's kernel whole. A queue
// without multi-buffer on the same port sees the kernel drop the frame.
func TestMultiBufferJumbo(t *testing.T) {
	r := newRig(t)
	r.setMTU(t, jumboMTU)
	for _, mode := range []XDPMode{XDPNative, XDPGeneric} {
		t.Run(string(mode), func(t *testing.T) { testMultiBufferJumbo(t, r, mode) })
	}
}

func testMultiBufferJumbo(t *testing.T, r *testRig, mode XDPMode) {
	p, q := r.openPortConfig(t, mode, QueueConfig{Queue: 0, Frames: 4096, RxRing: 1024, TxRing: 1024, ZeroCopy: ZeroCopyOff, MultiBuffer: true})
	if !p.Frags() || !q.MultiBuffer() {
		t.Fatalf("port frags %v, queue multi-buffer %v: want both", p.Frags(), q.MultiBuffer())
	}
	if got := q.MaxTxSegments(); got != copyModeMaxSegs {
		t.Fatalf("MaxTxSegments %d, want %d in copy mode", got, copyModeMaxSegs)
	}
	if _, err := q.Rx(make([][]byte, 4)); !errors.Is(err, ErrRxMultiBuffer) {
		t.Fatalf("Rx on a multi-buffer queue: %v, want ErrRxMultiBuffer", err)
	}

	// Peer → stack: one 9014-byte frame.
	peer := r.peerSocket(t)
	payload := jumboPayload(jumboMTU-28, 1)
	in := udp4Frame(r.StackMAC, r.PeerMAC, r.PeerAddr4, r.StackAddr4, payload)
	ipv4Checksum(in)
	bufs := make([][]byte, 64)
	segs := make([]int, 16)
	var got []byte
	var nsegs int
	xstest.WaitFor(t, 5*time.Second, "a 9014-byte frame on the xsk", func() error {
		peer.send(t, in)
		deadline := time.Now().Add(200 * time.Millisecond)
		for time.Now().Before(deadline) {
			n, err := q.RxPackets(bufs, segs)
			if err != nil {
				t.Fatal(err)
			}
			k := 0
			for i := range n {
				var f []byte
				for _, b := range bufs[k : k+segs[i]] {
					f = append(f, b...)
				}
				if bytes.Contains(f, payload[:64]) {
					got, nsegs = f, segs[i]
				}
				k += segs[i]
			}
			if got != nil {
				return nil
			}
			q.Wait(10 * time.Millisecond)
		}
		return errNoFrame
	})
	t.Logf("peer's 9014-byte frame arrived in %d descriptors", nsegs)
	if !bytes.Equal(got, in) {
		t.Fatalf("received frame of %d bytes differs from the %d sent", len(got), len(in))
	}
	if nsegs < 2 {
		t.Fatalf("a 9014-byte frame came in %d descriptor, want a chain", nsegs)
	}

	// Stack → peer's kernel: UDP datagrams of 8972 bytes to a socket.
	var ufd int
	if err := netns.Do(r.PeerNS, func() (err error) {
		if ufd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		return unix.Bind(ufd, &unix.SockaddrInet4{Port: 9, Addr: r.PeerAddr4.As4()})
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ufd)
	recvWhole := func(what string, want []byte) {
		t.Helper()
		buf := make([]byte, 16384)
		pfd := []unix.PollFd{{Fd: int32(ufd), Events: unix.POLLIN}}
		if n, err := unix.Poll(pfd, 5000); n != 1 || err != nil {
			t.Fatalf("%s: no datagram at the peer (poll %d, %v); stats %+v", what, n, err, q.Stats())
		}
		n, _, err := unix.Recvfrom(ufd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !bytes.Equal(buf[:n], want) {
			t.Fatalf("%s: peer received %d bytes, want the %d sent", what, n, len(want))
		}
	}

	out := jumboPayload(jumboMTU-28, 2)
	frame := udp4Frame(r.PeerMAC, r.StackMAC, r.StackAddr4, r.PeerAddr4, out)
	ipv4Checksum(frame)
	if n, err := q.Tx([][]byte{frame}); n != 1 || err != nil {
		t.Fatalf("Tx of a 9014-byte frame: %d, %v", n, err)
	}
	recvWhole("Tx", out)

	// The same size built in lent buffers, 2000 bytes each.
	out2 := jumboPayload(jumboMTU-28, 3)
	frame2 := udp4Frame(r.PeerMAC, r.StackMAC, r.StackAddr4, r.PeerAddr4, out2)
	ipv4Checksum(frame2)
	lent := make([][]byte, (len(frame2)+1999)/2000)
	if n := q.TxReserve(lent); n != len(lent) {
		t.Fatalf("TxReserve lent %d of %d", n, len(lent))
	}
	for i := range lent {
		lent[i] = append(lent[i], frame2[i*2000:min((i+1)*2000, len(frame2))]...)
	}
	if n, err := q.TxSubmitPackets(lent, []int{len(lent)}); n != 1 || err != nil {
		t.Fatalf("TxSubmitPackets of a %d-buffer frame: %d, %v", len(lent), n, err)
	}
	recvWhole("TxSubmitPackets", out2)

	// Too long a chain is refused before the kernel sees it.
	huge := make([]byte, (copyModeMaxSegs+1)*int(q.frameSize-q.txMeta))
	if n, err := q.Tx([][]byte{huge}); n != 0 || !errors.Is(err, ErrTxTooManySegs) {
		t.Fatalf("Tx of a %d-byte frame: %d, %v; want ErrTxTooManySegs", len(huge), n, err)
	}

	// The multi-buffer paths allocate nothing per frame either.
	batch := [][]byte{frame}
	if a := testing.AllocsPerRun(200, func() {
		q.Tx(batch)
		q.RxPackets(bufs, segs)
	}); a != 0 {
		t.Fatalf("Tx of a chain and RxPackets allocate %v times per call", a)
	}
	lent = lent[:len(lent):len(lent)]
	one := []int{len(lent)}
	if a := testing.AllocsPerRun(200, func() {
		if n := q.TxReserve(lent); n != len(lent) {
			q.TxRelease(lent[:n])
			return
		}
		// Whatever the buffers hold, 9000 bytes in all: within the MTU.
		for i := range lent {
			lent[i] = lent[i][:9000/len(lent)]
		}
		q.TxSubmitPackets(lent, one)
	}); a != 0 {
		t.Fatalf("TxSubmitPackets of a chain allocates %v times per call", a)
	}

	xstest.WaitFor(t, 2*time.Second, "TX frames back", func() error {
		q.RxPackets(bufs, segs)
		if st := q.Stats(); st.UMEMTxKernel != 0 {
			return errors.New("TX frames still with the kernel")
		}
		return nil
	})
	st := q.Stats()
	checkUMEM(t, st)
	if st.TxInvalidDescs != 0 || st.RxDropped != 0 {
		t.Fatalf("kernel counted %d invalid TX descriptors, %d dropped RX frames", st.TxInvalidDescs, st.RxDropped)
	}
}

// TestSingleBufferQueueDropsJumbo: on a frags-aware port at MTU 9000, a
// queue without XDP_USE_SG does not get a frame larger than its UMEM
// frame; the kernel drops it and counts it (Stats.RxDropped).
func TestSingleBufferQueueDropsJumbo(t *testing.T) {
	r := newRig(t)
	r.setMTU(t, jumboMTU)
	_, q := r.openPortConfig(t, XDPNative, QueueConfig{Queue: 0, ZeroCopy: ZeroCopyOff})
	peer := r.peerSocket(t)
	in := udp4Frame(r.StackMAC, r.PeerMAC, r.PeerAddr4, r.StackAddr4, jumboPayload(jumboMTU-28, 4))
	frames := make([][]byte, 16)
	xstest.WaitFor(t, 5*time.Second, "the kernel to drop a 9014-byte frame", func() error {
		peer.send(t, in)
		time.Sleep(20 * time.Millisecond)
		if n, err := q.Rx(frames); err != nil || n != 0 {
			t.Fatalf("Rx: %d frames, %v; want none", n, err)
		}
		if q.Stats().RxDropped == 0 {
			return errors.New("no drop counted")
		}
		return nil
	})
}
