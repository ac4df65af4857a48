package stack_test

import (
	"bytes"
	"fmt"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/nic/nictest"
	"github.com/xstack/xstack/stack"
	"github.com/xstack/xstack/stack/stacktest"
)

// TestGSO has the stack send a stream and close, with GSO on and off, to
// a peer that acknowledges all it gets. Every frame on the wire must be a
// complete segment of at most the MTU, with correct IP and TCP checksums
// and lengths, carrying the stream's bytes at its sequence number, FIN on
// the last frame only; with GSO on, gVisor's packets were cut into frames
// by the endpoint (link.gso_packets), and off, none were. With the queue's
// TX checksum offload, the queue completed every frame's TCP checksum (as
// nictest does, with nic.CompleteChecksum, before the frame reaches the
// wire); without it, none.
func TestGSO(t *testing.T) {
	const total = 300_000
	for _, v6 := range []bool{false, true} {
		for _, on := range []bool{true, false} {
			for _, offload := range []bool{true, false} {
				t.Run(fmt.Sprintf("v6=%v/gso=%v/csum-offload=%v", v6, on, offload), func(t *testing.T) {
					testGSO(t, total, v6, on, offload)
				})
			}
		}
	}
}

func testGSO(t *testing.T, total int, v6, on, offload bool) {
	q := nictest.New(stacktest.MTU)
	q.SetTxChecksumOffload(offload)
	p, ep := wireConnOn(t, q, v6, func(st *stack.Stack, _ tcpip.Endpoint) {
		if err := st.SetSysctl("net.inet.tcp.gso", map[bool]string{true: "1", false: "0"}[on]); err != nil {
			t.Fatal(err)
		}
	})
	iss := p.rcvNxt // the stream's first byte
	var frames, data, fins int
	p.onFrame = func(f []byte) {
		frames++
		tcp := checkFrame(t, f, v6)
		if tcp == nil {
			return
		}
		off := int(tcp.SequenceNumber() - iss)
		pl := tcp.Payload()
		if len(pl) > 0 {
			data++
			if fins > 0 {
				t.Errorf("a segment at offset %d after the FIN", off)
			}
			if !bytes.Equal(pl, streamBytes(off, len(pl))) {
				t.Errorf("the segment at offset %d (%d bytes) does not carry the stream's bytes", off, len(pl))
			}
		}
		if tcp.Flags().Contains(header.TCPFlagFin) {
			fins++
			if end := off + len(pl); end != total {
				t.Errorf("FIN on the segment ending at %d, want %d (the stream's end)", end, total)
			}
		}
	}
	before := p.st.LinkStats()
	go writeStream(t, ep, total)
	p.until("the whole stream and its FIN", func() bool {
		p.send(p.sndNxt, header.TCPFlagAck, p.rcvNxt, 65535, nil)
		return int(p.rcvNxt-iss) == total && fins > 0
	})
	after := p.st.LinkStats()
	gso := after.GSOPackets - before.GSOPackets
	if on && gso == 0 || !on && gso != 0 {
		t.Errorf("%d packets cut by the endpoint, with GSO %v", gso, on)
	}
	if fins != 1 {
		t.Errorf("%d FINs, want 1", fins)
	}
	// Every frame the stack sent is TCP: each went with a
	// checksum request, or none did.
	st := q.Stats()
	if offload && st.TxCsumOffload != st.TxFrames || !offload && st.TxCsumOffload != 0 {
		t.Errorf("%d of %d frames sent with a checksum request, with the offload %v", st.TxCsumOffload, st.TxFrames, offload)
	}
	t.Logf("%d frames, %d with data; %d GSO packets cut into %d frames; %d checksums offloaded",
		frames, data, gso, after.GSOFrames-before.GSOFrames, st.TxCsumOffload)
}

// writeStream writes the stream's first total bytes to ep and shuts its
// sending side. The endpoint takes what its send buffer holds: it writes
// until all of it is in.
func writeStream(t *testing.T, ep tcpip.Endpoint, total int) {
	for w := 0; w < total; {
		n, err := ep.Write(bytes.NewReader(streamBytes(w, total-w)), tcpip.WriteOptions{})
		if err != nil {
			if _, ok := err.(*tcpip.ErrWouldBlock); ok {
				continue
			}
			t.Errorf("write: %v", err)
			return
		}
		w += int(n)
	}
	ep.Shutdown(tcpip.ShutdownWrite)
}

// checkFrame checks that f is a well-formed Ethernet frame of at most the
// MTU carrying TCP with correct lengths and checksums, and returns its TCP
// segment, or nil if it carries no TCP.
func checkFrame(t *testing.T, f []byte, v6 bool) header.TCP {
	t.Helper()
	if len(f) > 1500+header.EthernetMinimumSize {
		t.Errorf("a frame of %d bytes, beyond the MTU", len(f))
	}
	var seg []byte
	var src, dst tcpip.Address
	if v6 {
		ip := header.IPv6(f[header.EthernetMinimumSize:])
		if !ip.IsValid(len(ip)) || ip.TransportProtocol() != header.TCPProtocolNumber {
			return nil
		}
		if int(ip.PayloadLength())+header.IPv6MinimumSize != len(ip) {
			t.Errorf("IPv6 payload length %d in a packet of %d bytes", ip.PayloadLength(), len(ip))
		}
		seg, src, dst = ip.Payload(), ip.SourceAddress(), ip.DestinationAddress()
	} else {
		ip := header.IPv4(f[header.EthernetMinimumSize:])
		if !ip.IsValid(len(ip)) || ip.TransportProtocol() != header.TCPProtocolNumber {
			return nil
		}
		if int(ip.TotalLength()) != len(ip) {
			t.Errorf("IPv4 total length %d in a packet of %d bytes", ip.TotalLength(), len(ip))
		}
		if !ip.IsChecksumValid() {
			t.Errorf("IPv4 header checksum wrong (ID %d)", ip.ID())
		}
		seg, src, dst = ip.Payload(), ip.SourceAddress(), ip.DestinationAddress()
	}
	tcp := header.TCP(seg)
	sum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(len(seg)))
	if checksum.Checksum(seg, sum) != 0xffff {
		t.Errorf("TCP checksum wrong on the segment at %d (%d bytes)", tcp.SequenceNumber(), len(seg))
	}
	return tcp
}
