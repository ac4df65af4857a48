package nic

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/rigtest"
	"github.com/xstack/xstack/internal/xstest"
)

// TestTxMetadataLayout checks where SetTxChecksum puts its request: a
// struct xsk_tx_metadata (include/uapi/linux/if_xdp.h) right before the
// frame, flags first, then csum_start and csum_offset, in host order.
func TestTxMetadataLayout(t *testing.T) {
	const fs = 2048
	q := &XSKQueue{umem: make([]byte, 4*fs), frameSize: fs, rxSideFrames: 2, txMeta: xskTxMetadataLen}
	base := uint64(3 * fs)
	frame := q.umem[base+xskTxMetadataLen : base+xskTxMetadataLen+100]
	if err := q.SetTxChecksum(frame, 34, 6); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, xskTxMetadataLen)
	binary.NativeEndian.PutUint64(want[0:], unix.XDP_TXMD_FLAGS_CHECKSUM)
	binary.NativeEndian.PutUint16(want[8:], 34)
	binary.NativeEndian.PutUint16(want[10:], 6)
	if got := q.umem[base : base+xskTxMetadataLen]; string(got) != string(want) {
		t.Errorf("metadata (-want +got):\n-%x\n+%x", want, got)
	}
	if xskTxMetadataLen%8 != 0 || xskTxMetadataLen >= 256 {
		t.Errorf("metadata length %d: the kernel takes multiples of 8 below 256", xskTxMetadataLen)
	}

	for _, tc := range []struct {
		name          string
		frame         []byte
		start, offset int
		want          error
	}{
		{"field past the end", frame, 90, 9, errTxChecksumRange},
		{"negative start", frame, -1, 6, errTxChecksumRange},
		{"start beyond u16", q.umem[base+xskTxMetadataLen : base+xskTxMetadataLen : base+fs], 1 << 16, 0, errTxChecksumRange},
		{"not where a TX buffer starts", q.umem[base : base+100], 34, 6, errTxChecksumBuf},
		{"an RX-side frame", q.umem[fs+xskTxMetadataLen : fs+xskTxMetadataLen+100], 34, 6, errTxChecksumBuf},
		{"not UMEM", make([]byte, 100), 34, 6, errTxChecksumBuf},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := q.SetTxChecksum(tc.frame, tc.start, tc.offset); !errors.Is(err, tc.want) {
				t.Errorf("SetTxChecksum = %v, want %v", err, tc.want)
			}
		})
	}
	off := &XSKQueue{umem: make([]byte, 4*fs), frameSize: fs, rxSideFrames: 2}
	if err := off.SetTxChecksum(off.umem[base:base+100], 34, 6); !errors.Is(err, ErrTxChecksumOff) {
		t.Errorf("SetTxChecksum with the offload off = %v, want ErrTxChecksumOff", err)
	}
	if a := testing.AllocsPerRun(100, func() {
		q.SetTxChecksum(frame, 34, 6)
		q.SetTxChecksum(frame, 90, 9)
	}); a != 0 {
		t.Errorf("SetTxChecksum allocates %v times per call", a)
	}
}

// csumFrame4 builds an IPv4 frame (with its header checksum) carrying l4,
// whose checksum field at csumOff holds only the pseudo-header sum, as a
// checksum request expects it.
func csumFrame4(dst, src net.HardwareAddr, saddr, daddr netip.Addr, proto byte, l4 []byte, csumOff int) []byte {
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0}
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	ip = append(ip, saddr.AsSlice()...)
	ip = append(ip, daddr.AsSlice()...)
	binary.BigEndian.PutUint16(ip[10:], ^onesSum(0, ip))
	pseudo := append(append(saddr.AsSlice(), daddr.AsSlice()...), 0, proto, byte(len(l4)>>8), byte(len(l4)))
	binary.BigEndian.PutUint16(l4[csumOff:], onesSum(0, pseudo))
	return ethFrame(dst, src, 0x0800, append(ip, l4...))
}

// csumFrame6 is csumFrame4 for IPv6.
func csumFrame6(dst, src net.HardwareAddr, saddr, daddr netip.Addr, next byte, l4 []byte, csumOff int) []byte {
	ip := []byte{0x60, 0, 0, 0, byte(len(l4) >> 8), byte(len(l4)), next, 64}
	ip = append(ip, saddr.AsSlice()...)
	ip = append(ip, daddr.AsSlice()...)
	pseudo := append(append(saddr.AsSlice(), daddr.AsSlice()...), 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, next)
	binary.BigEndian.PutUint16(l4[csumOff:], onesSum(0, pseudo))
	return ethFrame(dst, src, 0x86dd, append(ip, l4...))
}

// onesSum adds b to sum in one's complement, folded to 16 bits.
func onesSum(sum uint32, b []byte) uint16 {
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

// l4ChecksumOK reports whether the IPv4 frame f carries a complete L4
// checksum.
func l4ChecksumOK(f []byte) bool {
	ip := f[14:]
	l4 := ip[20:binary.BigEndian.Uint16(ip[2:])]
	pseudo := append(append([]byte(nil), ip[12:20]...), 0, ip[9], byte(len(l4)>>8), byte(len(l4)))
	return onesSum(uint32(onesSum(0, pseudo)), l4) == 0xffff
}

// peerSNMP reads one counter of /proc/net/snmp in the peer's namespace;
// proto "Udp6" reads /proc/net/snmp6.
func (r *testRig) peerSNMP(tb testing.TB, proto, name string) uint64 {
	tb.Helper()
	if proto == "Udp6" {
		out, err := r.Run(r.PeerNS, "cat", "/proc/net/snmp6")
		if err != nil {
			tb.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == proto+name {
				v, err := strconv.ParseUint(f[1], 10, 64)
				if err != nil {
					tb.Fatalf("/proc/net/snmp6 %s: %v", f[0], err)
				}
				return v
			}
		}
		tb.Fatalf("/proc/net/snmp6 has no %s%s", proto, name)
	}
	out, err := r.Run(r.PeerNS, "cat", "/proc/net/snmp")
	if err != nil {
		tb.Fatal(err)
	}
	var head []string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != proto+":" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		for i := range min(len(head), len(f)) {
			if head[i] == name {
				v, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					tb.Fatalf("/proc/net/snmp %s %s: %v", proto, name, err)
				}
				return v
			}
		}
	}
	tb.Fatalf("/proc/net/snmp has no %s %s", proto, name)
	return 0
}

func kernelAtLeast(tb testing.TB, major, minor int) bool {
	tb.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		tb.Fatal(err)
	}
	var ma, mi int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi)
	return ma > major || ma == major && mi >= minor
}

// TestTxChecksumOffloadVeth sends UDP and TCP frames whose checksum field
// holds only the pseudo-header sum to the kernel peer, with and without a
// checksum request: the peer's kernel must take the first and drop the
// second as a bad checksum. Copy mode on veth, in both XDP modes, with the
// offload (the skb goes out CHECKSUM_PARTIAL) and with the kernel's
// software checksum (XDP_UMEM_TX_SW_CSUM), and with the offload on a
// device without checksum offload (the stack end's tx-checksumming off),
// where the kernel completes the checksum before the driver sees it.
func TestTxChecksumOffloadVeth(t *testing.T) {
	for _, tc := range []struct {
		xdp        XDPMode
		csum       TxChecksumMode
		stackTxOff bool // ethtool -K <stack end> tx off
		complete   bool // the wire carries a complete checksum
	}{
		{XDPNative, TxChecksumAuto, false, false},
		{XDPGeneric, TxChecksumAuto, false, false},
		{XDPNative, TxChecksumSoftware, false, true},
		{XDPNative, TxChecksumAuto, true, true},
	} {
		name := fmt.Sprintf("%s/%s", tc.xdp, tc.csum)
		if tc.stackTxOff {
			name += "/device-without-csum"
		}
		t.Run(name, func(t *testing.T) {
			r := newRig(t)
			if !kernelAtLeast(t, 6, 8) {
				t.Skip("AF_XDP TX metadata needs Linux 6.8")
			}
			if tc.stackTxOff {
				if _, err := r.Run(r.StackNS, "ethtool", "-K", r.StackIf, "tx", "off"); err != nil {
					t.Fatal(err)
				}
			}
			_, q := r.openPortConfig(t, tc.xdp, QueueConfig{Frames: 512, RxRing: 128, TxRing: 128, TxChecksum: tc.csum})
			t.Logf("queue %v", q)
			if !q.TxChecksumOffload() || q.TxChecksumSoftware() != (tc.csum == TxChecksumSoftware) {
				t.Fatalf("TxChecksumOffload %v TxChecksumSoftware %v with tx_checksum=%s on Linux >= 6.8",
					q.TxChecksumOffload(), q.TxChecksumSoftware(), tc.csum)
			}
			peer := r.peerSocket(t)
			var uc *net.UDPConn
			if err := r.Do(r.PeerNS, func() (err error) {
				uc, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(r.PeerAddr4, 9)))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer uc.Close()

			send := func(frame []byte, start, offset int, request bool) {
				t.Helper()
				bufs := make([][]byte, 1)
				if q.TxReserve(bufs) != 1 {
					t.Fatal("TxReserve lent nothing")
				}
				bufs[0] = append(bufs[0], frame...)
				if request {
					if err := q.SetTxChecksum(bufs[0], start, offset); err != nil {
						t.Fatal(err)
					}
				}
				if n, err := q.TxSubmit(bufs); n != 1 || err != nil {
					t.Fatalf("TxSubmit = %d, %v", n, err)
				}
			}
			udp := func(marker string) []byte {
				l4 := binary.BigEndian.AppendUint16(nil, 40000)
				l4 = binary.BigEndian.AppendUint16(l4, 9)
				l4 = binary.BigEndian.AppendUint16(l4, uint16(8+len(marker)))
				l4 = append(append(l4, 0, 0), marker...)
				return csumFrame4(r.PeerMAC, r.StackMAC, r.StackAddr4, r.PeerAddr4, unix.IPPROTO_UDP, l4, 6)
			}
			waitCounter := func(proto, name string, from uint64) {
				t.Helper()
				if err := xstest.Until(3*time.Second, func() error {
					if v := r.peerSNMP(t, proto, name); v <= from {
						return fmt.Errorf("%s %s still %d", proto, name, v)
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}

			t.Run("udp", func(t *testing.T) {
				csumErrs := r.peerSNMP(t, "Udp", "InCsumErrors")
				// Without a request the peer sees the pseudo-header sum as
				// the checksum and drops the datagram.
				send(udp("no-request"), 14+20, 6, false)
				waitCounter("Udp", "InCsumErrors", csumErrs)
				before := q.Stats().TxCsumOffload
				frame := udp("with-request")
				send(frame, 14+20, 6, true)
				buf := make([]byte, 100)
				uc.SetReadDeadline(time.Now().Add(3 * time.Second))
				n, _, err := uc.ReadFromUDPAddrPort(buf)
				if err != nil || string(buf[:n]) != "with-request" {
					t.Fatalf("peer UDP socket read %q, %v; want the datagram sent with a checksum request", buf[:n], err)
				}
				if v := r.peerSNMP(t, "Udp", "InCsumErrors"); v != csumErrs+1 {
					t.Errorf("Udp InCsumErrors %d, want %d (only the frame without a request)", v, csumErrs+1)
				}
				st := q.Stats()
				if st.TxCsumOffload != before+1 || st.TxInvalidDescs != 0 {
					t.Errorf("TxCsumOffload %d (want %d), TxInvalidDescs %d (want 0)", st.TxCsumOffload, before+1, st.TxInvalidDescs)
				}
				// What the wire carries: the kernel's own checksum in
				// software mode or where the device has no checksum
				// offload (validate_xmit_skb's skb_checksum_help); with
				// the offload on veth (tx-checksumming on) the skb
				// crosses CHECKSUM_PARTIAL and the field keeps the
				// pseudo-header sum, which the peer's kernel trusts.
				wire := peer.recvMatching(t, 2*time.Second, hasPayload([]byte("with-request")))
				if wire == nil {
					t.Fatal("the peer's packet socket saw no frame with the request")
				}
				complete := l4ChecksumOK(wire)
				t.Logf("on the peer's wire the UDP checksum is complete: %v (sent %#04x, seen %#04x)",
					complete, binary.BigEndian.Uint16(frame[14+20+6:]), binary.BigEndian.Uint16(wire[14+20+6:]))
				if complete != tc.complete {
					t.Errorf("complete checksum on the wire %v, want %v", complete, tc.complete)
				}
			})

			t.Run("udp6", func(t *testing.T) {
				var uc6 *net.UDPConn
				if err := r.Do(r.PeerNS, func() (err error) {
					uc6, err = net.ListenUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(r.PeerAddr6, 9)))
					return err
				}); err != nil {
					t.Fatal(err)
				}
				defer uc6.Close()
				udp6 := func(marker string) []byte {
					l4 := binary.BigEndian.AppendUint16(nil, 40000)
					l4 = binary.BigEndian.AppendUint16(l4, 9)
					l4 = binary.BigEndian.AppendUint16(l4, uint16(8+len(marker)))
					l4 = append(append(l4, 0, 0), marker...)
					return csumFrame6(r.PeerMAC, r.StackMAC, r.StackAddr6, r.PeerAddr6, unix.IPPROTO_UDP, l4, 6)
				}
				csumErrs := r.peerSNMP(t, "Udp6", "InCsumErrors")
				send(udp6("no-request"), 14+40, 6, false)
				waitCounter("Udp6", "InCsumErrors", csumErrs)
				send(udp6("with-request6"), 14+40, 6, true)
				buf := make([]byte, 100)
				uc6.SetReadDeadline(time.Now().Add(3 * time.Second))
				n, _, err := uc6.ReadFromUDPAddrPort(buf)
				if err != nil || string(buf[:n]) != "with-request6" {
					t.Fatalf("peer UDP socket read %q, %v; want the datagram sent with a checksum request", buf[:n], err)
				}
				if v := r.peerSNMP(t, "Udp6", "InCsumErrors"); v != csumErrs+1 {
					t.Errorf("Udp6 InCsumErrors %d, want %d (only the frame without a request)", v, csumErrs+1)
				}
			})

			t.Run("tcp", func(t *testing.T) {
				// A SYN to a closed port: the peer answers a SYN it takes
				// with a RST, and counts one it drops in InCsumErrors.
				syn := func(seq uint32) []byte {
					l4 := binary.BigEndian.AppendUint16(nil, 40001)
					l4 = binary.BigEndian.AppendUint16(l4, 9)
					l4 = binary.BigEndian.AppendUint32(l4, seq)
					l4 = append(l4, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0)
					return csumFrame4(r.PeerMAC, r.StackMAC, r.StackAddr4, r.PeerAddr4, unix.IPPROTO_TCP, l4, 16)
				}
				csumErrs := r.peerSNMP(t, "Tcp", "InCsumErrors")
				send(syn(1), 14+20, 16, false)
				waitCounter("Tcp", "InCsumErrors", csumErrs)
				rsts := r.peerSNMP(t, "Tcp", "OutRsts")
				send(syn(2), 14+20, 16, true)
				waitCounter("Tcp", "OutRsts", rsts)
				if v := r.peerSNMP(t, "Tcp", "InCsumErrors"); v != csumErrs+1 {
					t.Errorf("Tcp InCsumErrors %d, want %d (only the frame without a request)", v, csumErrs+1)
				}
			})

			t.Run("allocations", func(t *testing.T) {
				frame := udp("allocs")
				bufs := make([][]byte, 1)
				if a := testing.AllocsPerRun(200, func() {
					if q.TxReserve(bufs) == 1 {
						bufs[0] = append(bufs[0], frame...)
						q.SetTxChecksum(bufs[0], 14+20, 6)
						q.TxSubmit(bufs)
					}
				}); a != 0 {
					t.Errorf("TxReserve+SetTxChecksum+TxSubmit allocate %v times per call", a)
				}
			})
		})
	}
}

// TestCompleteChecksum checks CompleteChecksum against a plain 16-bit
// one's complement sum, on every length and alignment of a short frame.
func TestCompleteChecksum(t *testing.T) {
	src := make([]byte, 80)
	for i := range src {
		src[i] = byte(i*37 + 11)
	}
	for start := 0; start < 9; start++ {
		for n := start + 8; n <= len(src); n++ {
			f := append([]byte(nil), src[:n]...)
			const offset = 6
			if !CompleteChecksum(f, start, offset) {
				t.Fatalf("start %d len %d: refused", start, n)
			}
			// What a receiver checks: the pseudo-header sum (here the
			// field's old value) plus the frame sum to 0xffff.
			pseudo := uint32(src[start+offset])<<8 | uint32(src[start+offset+1])
			if got := onesSum(pseudo, f[start:]); got != 0xffff {
				t.Fatalf("start %d len %d: frame and pseudo-header sum to %#04x after CompleteChecksum, want 0xffff", start, n, got)
			}
			if string(f[:start+offset]) != string(src[:start+offset]) || string(f[start+offset+2:]) != string(src[start+offset+2:n]) {
				t.Fatalf("start %d len %d: bytes outside the checksum field changed", start, n)
			}
		}
	}
	// A sum that folds to 0xffff is sent as 0xffff, not 0 (which means
	// "no checksum" to UDP over IPv4).
	zero := []byte{0xff, 0xff, 0, 0}
	CompleteChecksum(zero, 0, 2)
	if zero[2] != 0xff || zero[3] != 0xff {
		t.Errorf("checksum %x, want ffff", zero[2:])
	}
	if CompleteChecksum(make([]byte, 10), 4, 5) || CompleteChecksum(make([]byte, 10), -1, 0) {
		t.Error("a checksum field outside the frame was accepted")
	}
}

// TestTxChecksumOff: tx_checksum=off registers no metadata, so TX buffers
// have the whole frame and requests are refused.
func TestTxChecksumOff(t *testing.T) {
	r := newRig(t)
	_, q := r.openPortConfig(t, XDPNative, QueueConfig{Frames: 256, RxRing: 64, TxRing: 64, TxChecksum: TxChecksumOff})
	if q.TxChecksumOffload() || q.TxChecksumSoftware() {
		t.Fatalf("TxChecksumOffload %v TxChecksumSoftware %v with tx_checksum=off", q.TxChecksumOffload(), q.TxChecksumSoftware())
	}
	bufs := make([][]byte, 1)
	if q.TxReserve(bufs) != 1 {
		t.Fatal("TxReserve lent nothing")
	}
	if cap(bufs[0]) != 2048 {
		t.Errorf("TX buffer capacity %d, want the whole frame, 2048", cap(bufs[0]))
	}
	bufs[0] = append(bufs[0], make([]byte, 60)...)
	if err := q.SetTxChecksum(bufs[0], 34, 6); !errors.Is(err, ErrTxChecksumOff) {
		t.Errorf("SetTxChecksum = %v, want ErrTxChecksumOff", err)
	}
	if err := q.TxRelease(bufs); err != nil {
		t.Fatal(err)
	}
}

// TestTxMetadataFallback registers a UMEM with a metadata length this
// kernel refuses (EINVAL, as a kernel before 6.8 answers the flag): auto
// falls back to a plain registration, on fails with ErrNotSupported.
func TestTxMetadataFallback(t *testing.T) {
	rigtest.RequireRoot(t)
	for _, tc := range []struct {
		mode    TxChecksumMode
		wantErr bool
	}{{TxChecksumAuto, false}, {TxChecksumOn, true}, {TxChecksumSoftware, true}} {
		t.Run(string(tc.mode), func(t *testing.T) {
			fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			umem, err := unix.Mmap(-1, 0, 16*2048, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Munmap(umem)
			q := &XSKQueue{fd: fd, umem: umem, frameSize: 2048}
			cfg := QueueConfig{FrameSize: 2048, TxChecksum: tc.mode}
			err = q.registerUMEMMeta(cfg, unix.XDP_COPY, 20) // not a multiple of 8
			if tc.wantErr {
				if !errors.Is(err, ErrNotSupported) || !errors.Is(err, unix.EINVAL) {
					t.Fatalf("register = %v, want ErrNotSupported wrapping EINVAL", err)
				}
				return
			}
			if err != nil || q.txMeta != 0 {
				t.Fatalf("register = %v with txMeta %d, want a plain registration", err, q.txMeta)
			}
			// The socket has its UMEM: a second registration is refused.
			if err := registerUMEM(fd, umem, 2048, 0, 0); !errors.Is(err, unix.EBUSY) {
				t.Errorf("second registration = %v, want EBUSY", err)
			}
		})
	}
}
