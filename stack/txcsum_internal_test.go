package stack

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/xstack/xstack/nic"
	"github.com/xstack/xstack/nic/nictest"
	"github.com/xstack/xstack/stack/packet"
)

// pairEndpointCsum is pairEndpoint with the sending queue's TX checksum
// offload on or off.
func pairEndpointCsum(tb testing.TB, batch int, offload bool) (e *endpoint, qa, qb *nictest.Queue) {
	tb.Helper()
	qa, qb = nictest.Pair(1500)
	tb.Cleanup(func() { qa.Close(); qb.Close() })
	qa.SetTxChecksumOffload(offload)
	return newEndpoint(qa, 1500, batch), qa, qb
}

var (
	txAddr4a, txAddr4b = tcpip.AddrFrom4([4]byte{198, 18, 0, 1}), tcpip.AddrFrom4([4]byte{198, 18, 0, 2})
	txAddr6a, txAddr6b = tcpip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: 1}), tcpip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: 2})
)

// ipFrame builds an Ethernet frame carrying l4 as protocol proto over
// IPv4 or IPv6 from the a to the b addresses, with a correct IPv4 header
// checksum; frag sets IPv4's more-fragments flag.
func ipFrame(v6 bool, proto tcpip.TransportProtocolNumber, l4 []byte, frag bool) []byte {
	if v6 {
		f := make([]byte, header.EthernetMinimumSize+header.IPv6MinimumSize+len(l4))
		header.Ethernet(f).Encode(&header.EthernetFields{Type: header.IPv6ProtocolNumber})
		header.IPv6(f[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{
			PayloadLength: uint16(len(l4)), TransportProtocol: proto, HopLimit: 64,
			SrcAddr: txAddr6a, DstAddr: txAddr6b,
		})
		copy(f[header.EthernetMinimumSize+header.IPv6MinimumSize:], l4)
		return f
	}
	f := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+len(l4))
	header.Ethernet(f).Encode(&header.EthernetFields{Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	fields := &header.IPv4Fields{
		TotalLength: uint16(header.IPv4MinimumSize + len(l4)), TTL: 64, ID: 7,
		Protocol: uint8(proto), SrcAddr: txAddr4a, DstAddr: txAddr4b,
	}
	if frag {
		fields.Flags = header.IPv4FlagMoreFragments
	}
	ip.Encode(fields)
	ip.SetChecksum(^ip.CalculateChecksum())
	copy(f[header.EthernetMinimumSize+header.IPv4MinimumSize:], l4)
	return f
}

// l4Segment returns a TCP or UDP header with payload bytes of data and a
// zero checksum, as gVisor builds it for an endpoint that offloads; each
// length makes a flow of its own, so that ACK elision leaves the segments
// alone.
func l4Segment(proto tcpip.TransportProtocolNumber, payload int) []byte {
	port := uint16(40000 + payload)
	if proto == header.UDPProtocolNumber {
		u := make([]byte, header.UDPMinimumSize+payload)
		header.UDP(u).Encode(&header.UDPFields{SrcPort: 5353, DstPort: port, Length: uint16(len(u))})
		for i := header.UDPMinimumSize; i < len(u); i++ {
			u[i] = byte(i * 7)
		}
		return u
	}
	s := make([]byte, header.TCPMinimumSize+payload)
	header.TCP(s).Encode(&header.TCPFields{
		SrcPort: 80, DstPort: port, SeqNum: 1, AckNum: 1, DataOffset: header.TCPMinimumSize,
		Flags: header.TCPFlagAck | header.TCPFlagPsh, WindowSize: 65535,
	})
	for i := header.TCPMinimumSize; i < len(s); i++ {
		s[i] = byte(i * 5)
	}
	return s
}

// fullChecksum fills in f's L4 checksum, as gVisor does without the
// offload.
func fullChecksum(f []byte) []byte {
	var p packet.Parsed
	packet.Parse(f, &p)
	off := header.TCPChecksumOffset
	if p.Proto == uint8(header.UDPProtocolNumber) {
		off = udpChecksumOffset
	}
	src, dst := p.Addrs(f)
	l4 := p.L4(f)
	binary.BigEndian.PutUint16(l4[off:], 0)
	sum := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(p.Proto), tcpip.AddrFromSlice(src), tcpip.AddrFromSlice(dst), uint16(len(l4)))
	binary.BigEndian.PutUint16(l4[off:], ^checksum.Checksum(l4, sum))
	return f
}

// l4ChecksumOK reports whether the TCP or UDP segment of the unfragmented
// frame f carries a correct checksum.
func l4ChecksumOK(f []byte) bool {
	var p packet.Parsed
	packet.Parse(f, &p)
	src, dst := p.Addrs(f)
	l4 := p.L4(f)
	sum := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(p.Proto), tcpip.AddrFromSlice(src), tcpip.AddrFromSlice(dst), uint16(len(l4)))
	return checksum.Checksum(l4, sum) == 0xffff
}

// TestEndpointTxChecksum sends TCP and UDP frames over IPv4 and IPv6 as
// gVisor builds them with the queue's TX checksum offload on (checksum
// field 0) and off (checksums complete), with frames the offload does not
// apply to: ICMP, an IPv4 fragment, a frame that is not IP. The frames the
// peer receives, after the queue completed what the endpoint asked it to
// (nictest does it with nic.CompleteChecksum, as a device would), must
// carry correct checksums; only the TCP and UDP ones are offloaded, and
// the others arrive as they were written. With the offload on, the
// endpoint declares it to gVisor.
func TestEndpointTxChecksum(t *testing.T) {
	type frame struct {
		name     string
		f        []byte
		offload  bool // the endpoint asks the queue to complete its checksum
		checksum bool // carries a TCP or UDP checksum to check
	}
	icmp := make([]byte, header.ICMPv4MinimumSize+32)
	header.ICMPv4(icmp).SetType(header.ICMPv4Echo)
	header.ICMPv4(icmp).SetChecksum(^checksum.Checksum(icmp, 0))
	build := func(offload bool) []frame {
		var fs []frame
		for _, v6 := range []bool{false, true} {
			for _, proto := range []tcpip.TransportProtocolNumber{header.TCPProtocolNumber, header.UDPProtocolNumber} {
				// Odd and even lengths, up to the MTU.
				for _, n := range []int{0, 1, 1000, 1500 - header.IPv6MinimumSize - header.TCPMinimumSize} {
					f := ipFrame(v6, proto, l4Segment(proto, n), false)
					if !offload {
						f = fullChecksum(f)
					}
					fs = append(fs, frame{fmt.Sprintf("v6=%v/proto=%d/payload=%d", v6, proto, n), f, true, true})
				}
			}
		}
		// gVisor computes ICMP checksums whatever the capability says,
		// and a fragment's checksum, if any, covers the whole datagram.
		fs = append(fs,
			frame{"icmp", ipFrame(false, header.ICMPv4ProtocolNumber, icmp, false), false, false},
			frame{"udp fragment", ipFrame(false, header.UDPProtocolNumber, l4Segment(header.UDPProtocolNumber, 64), true), false, false},
			frame{"not ip", rawFrame(3, 200), false, false},
		)
		return fs
	}
	for _, offload := range []bool{true, false} {
		t.Run(fmt.Sprintf("offload=%v", offload), func(t *testing.T) {
			e, qa, qb := pairEndpointCsum(t, 8, offload)
			if got := e.Capabilities()&gvstack.CapabilityTXChecksumOffload != 0; got != offload {
				t.Errorf("CapabilityTXChecksumOffload declared %v, want %v", got, offload)
			}
			frames := build(offload)
			var want [][]byte
			offloaded := 0
			for _, fr := range frames {
				want = append(want, fr.f)
				if fr.offload && offload {
					offloaded++
				}
			}
			pkts, release := txPackets(want...)
			if n, _ := e.WritePackets(pkts); n != len(want) {
				t.Fatalf("WritePackets = %d, want %d", n, len(want))
			}
			release()
			e.flush()
			checkTxBuffers(t, qa, "after flush")
			got := received(t, qb)
			if len(got) != len(frames) {
				t.Fatalf("peer received %d frames, want %d", len(got), len(frames))
			}
			for i, fr := range frames {
				if fr.checksum && !l4ChecksumOK(got[i]) {
					t.Errorf("%s: checksum wrong on the wire", fr.name)
				}
				if !fr.offload && !bytes.Equal(got[i], want[i]) {
					t.Errorf("%s: changed on the way (-want +got):\n-%x\n+%x", fr.name, want[i], got[i])
				}
				if fr.checksum && !offload && !bytes.Equal(got[i], want[i]) {
					t.Errorf("%s: changed without the offload", fr.name)
				}
			}
			if st := qa.Stats(); st.TxCsumOffload != uint64(offloaded) {
				t.Errorf("Stats.TxCsumOffload = %d, want %d", st.TxCsumOffload, offloaded)
			}
		})
	}
}

// TestEndpointTxChecksumFinJoined joins a FIN to the data before it in a
// batch with the offload on and off: the frame on the wire must carry
// the FIN and a correct checksum, over IPv4 and IPv6.
func TestEndpointTxChecksumFinJoined(t *testing.T) {
	psh := header.TCPFlagAck | header.TCPFlagPsh
	fin := header.TCPFlagAck | header.TCPFlagFin
	for _, v6 := range []bool{false, true} {
		for _, offload := range []bool{true, false} {
			t.Run(fmt.Sprintf("v6=%v/offload=%v", v6, offload), func(t *testing.T) {
				e, qa, qb := pairEndpointCsum(t, 8, offload)
				data := finSeg(seg{80, 1000, psh, 28, 500, 201, false, v6}, 1)
				bare := finSeg(seg{80, 1000, fin, 28, 600, 0, false, v6}, 202)
				if offload {
					// As gVisor leaves them for an endpoint that offloads.
					for _, f := range [][]byte{data, bare} {
						var p packet.Parsed
						packet.Parse(f, &p)
						header.TCP(p.L4(f)).SetChecksum(0)
					}
				}
				pkts, release := txPackets(data, bare)
				e.WritePackets(pkts)
				release()
				if sent := e.flush(); sent != 1 {
					t.Fatalf("flush sent %d frames, want 1 (the FIN joined)", sent)
				}
				checkTxBuffers(t, qa, "after flush")
				got := received(t, qb)
				if len(got) != 1 {
					t.Fatalf("peer received %d frames, want 1", len(got))
				}
				var p packet.Parsed
				packet.Parse(got[0], &p)
				if p.TCPFlags != psh|header.TCPFlagFin || p.Window != 600 || p.TCPPayloadLen() != 201 {
					t.Errorf("joined frame: flags %v window %d payload %d, want PSH|ACK|FIN, window 600, 201 bytes", p.TCPFlags, p.Window, p.TCPPayloadLen())
				}
				if !l4ChecksumOK(got[0]) {
					t.Errorf("joined frame: TCP checksum wrong on the wire")
				}
				if ls, st := e.stats(), qa.Stats(); ls.FinsJoined != 1 || st.TxCsumOffload != map[bool]uint64{true: 1, false: 0}[offload] {
					t.Errorf("FinsJoined %d (want 1), TxCsumOffload %d with the offload %v", ls.FinsJoined, st.TxCsumOffload, offload)
				}
			})
		}
	}
}

// gsoPacket6 is gsoPacket over IPv6.
func gsoPacket6(payload, mss int) *gvstack.PacketBuffer {
	pkt := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{
		ReserveHeaderBytes: header.EthernetMinimumSize + header.IPv6MinimumSize + header.TCPMinimumSize,
		Payload:            buffer.MakeWithData(make([]byte, payload)),
	})
	header.TCP(pkt.TransportHeader().Push(header.TCPMinimumSize)).Encode(&header.TCPFields{
		SrcPort: 80, DstPort: 40000, SeqNum: 1, AckNum: 1, DataOffset: header.TCPMinimumSize,
		Flags: header.TCPFlagAck | header.TCPFlagPsh | header.TCPFlagFin, WindowSize: 65535,
	})
	pkt.TransportProtocolNumber = header.TCPProtocolNumber
	header.IPv6(pkt.NetworkHeader().Push(header.IPv6MinimumSize)).Encode(&header.IPv6Fields{
		PayloadLength: uint16(header.TCPMinimumSize + payload), TransportProtocol: header.TCPProtocolNumber,
		HopLimit: 64, SrcAddr: txAddr6a, DstAddr: txAddr6b,
	})
	header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize)).Encode(&header.EthernetFields{Type: header.IPv6ProtocolNumber})
	pkt.GSOOptions = gvstack.GSO{Type: gvstack.GSOTCPv6, NeedsCsum: true, MSS: uint16(mss), L3HdrLen: header.IPv6MinimumSize, MaxSize: gsoMaxSize}
	return pkt
}

// TestEndpointTxChecksumGSO cuts host-GSO packets over IPv4 and IPv6, of
// an odd payload length so that the last frame is odd too, with the
// offload on and off: every frame on the wire carries a correct TCP
// checksum, and with the offload each was the queue's to complete.
func TestEndpointTxChecksumGSO(t *testing.T) {
	const mss, payload = 1000, 4321
	for _, v6 := range []bool{false, true} {
		for _, offload := range []bool{true, false} {
			t.Run(fmt.Sprintf("v6=%v/offload=%v", v6, offload), func(t *testing.T) {
				e, qa, qb := pairEndpointCsum(t, 8, offload)
				var pkts gvstack.PacketBufferList
				if v6 {
					pkts.PushBack(gsoPacket6(payload, mss))
				} else {
					pkts.PushBack(gsoPacket(payload, mss))
				}
				if n, _ := e.WritePackets(pkts); n != 1 {
					t.Fatalf("WritePackets = %d, want 1", n)
				}
				pkts.DecRef()
				e.flush()
				got := received(t, qb)
				const segs = (payload + mss - 1) / mss
				if len(got) != segs {
					t.Fatalf("peer received %d frames, want %d", len(got), segs)
				}
				for i, f := range got {
					if !l4ChecksumOK(f) {
						t.Errorf("frame %d of %d bytes: TCP checksum wrong on the wire", i, len(f))
					}
				}
				want := uint64(0)
				if offload {
					want = segs
				}
				if st := qa.Stats(); st.TxCsumOffload != want {
					t.Errorf("TxCsumOffload = %d, want %d", st.TxCsumOffload, want)
				}
			})
		}
	}
}

// BenchmarkEndpointTxTCP measures the TX path for 32 TCP frames of 1514
// bytes, per frame, with the queue's checksum offload on (the endpoint
// writes the pseudo-header sum and requests the offload) and off (the
// frames carry the checksums gVisor computed). nictest completes the
// requested checksums in software inside TxSubmit, which the "on" figure
// includes: on a real queue that work is the kernel's or the device's,
// and what the offload saves is gVisor's checksum of each segment.
func BenchmarkEndpointTxTCP(b *testing.B) {
	for _, offload := range []bool{false, true} {
		b.Run(fmt.Sprintf("offload=%v", offload), func(b *testing.B) {
			e, _, qb := pairEndpointCsum(b, 64, offload)
			frames := make([][]byte, 32)
			for i := range frames {
				l4 := l4Segment(header.TCPProtocolNumber, 1460)
				binary.BigEndian.PutUint16(l4[2:], uint16(40000+i)) // a flow each: no ACK elision
				frames[i] = ipFrame(false, header.TCPProtocolNumber, l4, false)
				if !offload {
					frames[i] = fullChecksum(frames[i])
				}
			}
			pkts, release := txPackets(frames...)
			defer release()
			batch := make([][]byte, 64)
			b.SetBytes(int64(len(frames) * len(frames[0])))
			b.ReportAllocs()
			for b.Loop() {
				e.WritePackets(pkts)
				e.flush()
				if n, _ := qb.Rx(batch); n != len(frames) {
					b.Fatalf("%d frames, want %d", n, len(frames))
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(frames)), "ns/frame")
		})
	}
}

// BenchmarkTCPChecksum measures what a 1514-byte TCP frame's checksum
// costs: in gVisor's code, as gVisor computes it when the endpoint does
// not declare the offload (the pseudo-header, the header and the payload
// summed), and in nic.CompleteChecksum, as nictest completes a requested
// one, to tell it apart from the endpoint's own work in
// BenchmarkEndpointTxTCP.
func BenchmarkTCPChecksum(b *testing.B) {
	f := ipFrame(false, header.TCPProtocolNumber, l4Segment(header.TCPProtocolNumber, 1460), false)
	b.Run("gvisor", func(b *testing.B) {
		b.SetBytes(int64(len(f)))
		for b.Loop() {
			fullChecksum(f)
		}
	})
	b.Run("nic.CompleteChecksum", func(b *testing.B) {
		b.SetBytes(int64(len(f)))
		start := header.EthernetMinimumSize + header.IPv4MinimumSize
		for b.Loop() {
			nic.CompleteChecksum(f, start, header.TCPChecksumOffset)
		}
	})
}
