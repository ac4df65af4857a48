package stack_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/stack"
)

// streamByte is the byte at offset off of the stream the peer sends, so
// that a reader can tell a merged segment put every byte in its place.
func streamByte(off int) byte { return byte(off % 251) }

func streamBytes(off, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = streamByte(off + i)
	}
	return b
}

// readStream reads what ep has and checks it continues the stream at
// offset *off.
func readStream(t *testing.T, ep tcpip.Endpoint, off *int) {
	t.Helper()
	var b bytes.Buffer
	if _, err := ep.Read(&b, tcpip.ReadOptions{}); err != nil {
		if _, ok := err.(*tcpip.ErrWouldBlock); ok {
			return
		}
		t.Fatalf("read: %v", err)
	}
	if want := streamBytes(*off, b.Len()); !bytes.Equal(b.Bytes(), want) {
		t.Fatalf("bytes %d..%d of the stream differ from what the peer sent", *off, *off+b.Len())
	}
	*off += b.Len()
}

// TestGRO sends bursts of in-order segments on one connection, with GRO on
// and off: on, each burst reaches gVisor as one segment; either way the
// application reads the stream intact, the peer sees all of it
// acknowledged, and a capture holds the frames as they arrived.
func TestGRO(t *testing.T) {
	const segs, size = 16, 1000
	for _, v6 := range []bool{false, true} {
		for _, on := range []bool{true, false} {
			t.Run(fmt.Sprintf("v6=%v/gro=%v", v6, on), func(t *testing.T) {
				p, ep := wireConn(t, v6, nil)
				if err := p.st.SetSysctl("net.inet.tcp.gro", map[bool]string{true: "1", false: "0"}[on]); err != nil {
					t.Fatal(err)
				}
				dir := t.TempDir()
				if err := p.st.StartPcap(stack.PcapConfig{Dir: dir, Prefix: "gro", Snaplen: 65535, Savelen: 1 << 30}); err != nil {
					t.Fatal(err)
				}
				iss, read := p.sndNxt, 0
				for burst := range 3 {
					before := p.st.LinkStats()
					for range segs {
						off := int(p.sndNxt - iss)
						p.send(p.sndNxt, header.TCPFlagAck, p.rcvNxt, 65535, streamBytes(off, size))
						p.sndNxt += size
					}
					p.pump()
					after := p.st.LinkStats()
					want := uint64(0)
					if on {
						want = segs - 1
					}
					if got := after.GROMerged - before.GROMerged; got != want {
						t.Errorf("burst %d: %d frames merged, want %d", burst, got, want)
					}
					if got := after.RxFrames - before.RxFrames; got != segs {
						t.Errorf("burst %d: %d frames handed on, want %d", burst, got, segs)
					}
					p.until("the burst acknowledged", func() bool {
						readStream(t, ep, &read)
						return p.ack == p.sndNxt
					})
				}
				if read != 3*segs*size {
					t.Fatalf("read %d bytes, want %d", read, 3*segs*size)
				}
				if err := p.st.StopPcap(); err != nil {
					t.Fatal(err)
				}
				hdrs := header.EthernetMinimumSize + header.IPv4MinimumSize + header.TCPMinimumSize
				if v6 {
					hdrs += header.IPv6MinimumSize - header.IPv4MinimumSize
				}
				sizes := pcapSizes(t, filepath.Join(dir, "gro_0.pcap"))
				if n := sizes[hdrs+size]; n != 3*segs {
					t.Errorf("the capture holds %d data frames of %d bytes, want %d; sizes %v", n, hdrs+size, 3*segs, sizes)
				}
			})
		}
	}
}

// TestGROLossAndReorder sends a burst with a segment missing, two swapped
// and one corrupted, with GRO on: the corrupted one is dropped and counted
// before GRO, the others are taken as gVisor takes them without GRO, and
// once the peer sends the missing and corrupted ones again the
// application reads the stream intact.
func TestGROLossAndReorder(t *testing.T) {
	const size = 1000
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) {
			p, ep := wireConn(t, v6, nil)
			iss := p.sndNxt
			seg := func(i int) {
				p.send(iss+uint32(i*size), header.TCPFlagAck, p.rcvNxt, 65535, streamBytes(i*size, size))
			}
			before := p.st.LinkStats()
			for _, i := range []int{0, 1, 2, 4, 3, 6, 7} { // 5 lost, 3 and 4 swapped
				seg(i)
			}
			// 8 has a bit flipped in flight.
			bad := p.frame(iss+8*size, header.TCPFlagAck, p.rcvNxt, 65535, streamBytes(8*size, size))
			bad[len(bad)-1] ^= 1
			p.q.Inject(bad)
			seg(9)
			p.sndNxt = iss + 10*size
			read := 0
			p.until("the data before the hole", func() bool {
				readStream(t, ep, &read)
				return read == 5*size
			})
			if got := p.st.LinkStats().RxBadChecksum - before.RxBadChecksum; got != 1 {
				t.Fatalf("%d frames dropped for a bad checksum, want 1", got)
			}
			seg(5)
			seg(8)
			p.until("the whole stream", func() bool {
				readStream(t, ep, &read)
				return read == 10*size && p.ack == p.sndNxt
			})
		})
	}
}

// pcapSizes counts the records of a pcap file by length.
func pcapSizes(t *testing.T, name string) map[int]int {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[int]int{}
	for b = b[24:]; len(b) >= 16; {
		n := int(binary.LittleEndian.Uint32(b[8:12]))
		sizes[int(binary.LittleEndian.Uint32(b[12:16]))]++
		b = b[min(len(b), 16+n):]
	}
	return sizes
}

// BenchmarkDeliverBulk is the receive side of a bulk transfer: bursts of
// 32 in-order MSS-sized segments delivered to one connection, which the
// application reads, with GRO on and off. Allocations are per burst.
func BenchmarkDeliverBulk(b *testing.B) {
	const burst, mss = 32, 1448
	for _, bc := range []struct {
		v6 bool
		on string
	}{{false, "1"}, {false, "0"}, {true, "1"}, {true, "0"}} {
		on := bc.on
		b.Run(fmt.Sprintf("v6=%v/gro=%s", bc.v6, on), func(b *testing.B) {
			p, ep := wireConn(b, bc.v6, nil)
			if err := p.st.SetSysctl("net.inet.tcp.gro", on); err != nil {
				b.Fatal(err)
			}
			// Frames built once; each burst moves their sequence numbers
			// on and patches the checksum (RFC 1624).
			frames := make([][]byte, burst)
			for i := range frames {
				frames[i] = p.frame(0, header.TCPFlagAck, p.rcvNxt, 65535, streamBytes(0, mss))
			}
			l4 := header.EthernetMinimumSize + header.IPv4MinimumSize
			if bc.v6 {
				l4 = header.EthernetMinimumSize + header.IPv6MinimumSize
			}
			var sink discard
			ack := make([]byte, 2048)
			b.SetBytes(burst * mss)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for i, f := range frames {
					setSeq(f[l4:], p.sndNxt+uint32(i*mss))
				}
				p.sndNxt += burst * mss
				p.st.Deliver(frames)
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

// setSeq sets the sequence number of TCP header t and updates its
// checksum for the change.
func setSeq(t header.TCP, seq uint32) {
	sum := ^t.Checksum()
	old := t.SequenceNumber()
	sum = checksum.Combine(sum, ^uint16(old>>16))
	sum = checksum.Combine(sum, ^uint16(old))
	sum = checksum.Combine(sum, uint16(seq>>16))
	sum = checksum.Combine(sum, uint16(seq))
	binary.BigEndian.PutUint32(t[4:8], seq)
	t.SetChecksum(^sum)
}

// discard counts the bytes written to it.
type discard struct{ n int }

func (d *discard) Write(b []byte) (int, error) { d.n += len(b); return len(b), nil }
