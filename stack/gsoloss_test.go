package stack_test

import (
	"bytes"
	"fmt"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/nic/nictest"
	"github.com/xstack/xstack/stack"
	"github.com/xstack/xstack/stack/stacktest"
)

// TestGSOUnderLoss has the stack send a stream with GSO on to a peer that
// loses frames: the first copy of every 11th MSS of the stream, and the
// first retransmission of one of them. The peer acknowledges each data
// frame as a receiver without delayed ACKs does (duplicate ACKs for what
// arrives past a hole) and keeps what arrives out of order. The stream
// must arrive whole and unchanged, each frame well formed, with one FIN at
// the end. It logs how many bytes were received twice: gVisor cuts what
// it retransmits to one MSS, whatever the size of the packet it was first
// sent in.
func TestGSOUnderLoss(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) { testGSOUnderLoss(t, v6) })
	}
}

func testGSOUnderLoss(t *testing.T, v6 bool) {
	const total, mss = 400_000, 1448
	q := nictest.New(stacktest.MTU)
	p, ep := wireConnOn(t, q, v6, func(st *stack.Stack, _ tcpip.Endpoint) {
		if err := st.SetSysctl("net.inet.tcp.gso", "1"); err != nil {
			t.Fatal(err)
		}
		// A lost retransmission waits for the timer: keep it short.
		if err := st.SetSysctl("net.inet.tcp.rexmit_min", "10"); err != nil {
			t.Fatal(err)
		}
	})
	iss := p.rcvNxt
	got := make([]byte, total)
	have := make([]bool, total)
	next := 0                 // the first byte not yet received
	copies := map[int]int{}   // transmissions of each MSS-aligned offset seen
	var lost, again, fins int // bytes dropped, bytes received more than once
	p.onFrame = func(f []byte) {
		tcp := checkFrame(t, f, v6)
		if tcp == nil {
			return
		}
		off := int(tcp.SequenceNumber() - iss)
		pl := tcp.Payload()
		if tcp.Flags().Contains(header.TCPFlagFin) {
			if end := off + len(pl); end != total {
				t.Errorf("FIN on the segment ending at %d, want %d", end, total)
			}
		}
		if len(pl) > 0 {
			if off < 0 || off+len(pl) > total {
				t.Errorf("a segment at %d..%d, outside the stream", off, off+len(pl))
				return
			}
			copies[off]++
			k := off / mss
			if drop := k%11 == 5 && copies[off] == 1 || k == 49 && copies[off] == 2; drop {
				lost += len(pl)
				return
			}
			for i, b := range pl {
				if have[off+i] {
					again++
				}
				have[off+i], got[off+i] = true, b
			}
			for next < total && have[next] {
				next++
			}
		}
		ack := iss + uint32(next)
		if tcp.Flags().Contains(header.TCPFlagFin) || fins > 0 {
			if next == total {
				ack++
				fins++
			}
		}
		if len(pl) > 0 || tcp.Flags().Contains(header.TCPFlagFin) {
			p.send(p.sndNxt, header.TCPFlagAck, ack, 65535, nil)
		}
	}
	before := p.st.LinkStats()
	go writeStream(t, ep, total)
	p.until("the whole stream and its FIN", func() bool { return next == total && fins > 0 })
	if !bytes.Equal(got, streamBytes(0, total)) {
		t.Fatal("the stream arrived changed")
	}
	after := p.st.LinkStats()
	if after.GSOPackets == before.GSOPackets {
		t.Error("no packet was cut by the endpoint: GSO was not in use")
	}
	t.Logf("%d bytes lost, %d received twice; %d GSO packets in %d frames",
		lost, again, after.GSOPackets-before.GSOPackets, after.GSOFrames-before.GSOFrames)
}
