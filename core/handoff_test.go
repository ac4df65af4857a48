package core

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/internal/xstest"
	"github.com/xstack/xstack/stack/packet"
)

// A process-mode hand-off to an lcore whose process has not made its ring
// yet drops the frame. A copy of a neighbour frame counts apart from a
// frame some connection needed; and the ring is looked for again a
// millisecond later, not a second.
func TestHandoffToAbsentRing(t *testing.T) {
	dir := t.TempDir()
	steer := newLcoreSteer(2, 0)
	h := newHandoff(0, 2, steer, DefaultBurst)
	h.outPath = func(i int) string { return filepath.Join(dir, "ring") }

	lo, _ := steer.PortRange(1)
	reply := rxSegment{sport: 7, dport: lo, seq: 1, ack: 1, flags: header.TCPFlagAck}.frame()
	arp := steerARP(header.ARPReply, rxAddr(rxV4Peer), rxAddr(rxV4Us))
	if v, owner := steer.Classify(reply); v != HandOff || owner != 1 {
		t.Fatalf("the reply classifies as %v for lcore %d; want a hand-off to lcore 1", v, owner)
	}
	if v, _ := steer.Classify(arp); v != Broadcast {
		t.Fatalf("the ARP reply classifies as %v; want Broadcast", v)
	}

	local, parsed := h.steerBurst([][]byte{arp, reply})
	if len(local) != 1 {
		t.Errorf("%d frames kept here; want the ARP reply alone", len(local))
	}
	// The stack gets the headers steering parsed, frame by frame.
	if len(parsed) != len(local) || !parsed[0].Has(packet.ARP) || parsed[0].ARPOp != header.ARPReply {
		t.Errorf("parsed headers %+v for %d local frames; want the ARP reply's", parsed, len(local))
	}
	st := h.Stats()
	if st.Dropped != 1 || st.CopiesDropped != 1 || st.HandedOut != 0 {
		t.Errorf("dropped %d, copies dropped %d, handed out %d; want 1, 1, 0", st.Dropped, st.CopiesDropped, st.HandedOut)
	}
	if wait := time.Until(h.nextTry[1]); wait > time.Millisecond {
		t.Errorf("the absent ring is looked for again in %v; want within a millisecond", wait)
	}

	// The other process makes its ring; the next burst after the retry
	// time gets through.
	r := createRing(t, h.outPath(1), 64, 2048)
	t.Cleanup(func() { r.Remove() })
	xstest.WaitFor(t, 5*time.Second, "the retry time", func() error {
		if left := time.Until(h.nextTry[1]); left > 0 {
			return fmt.Errorf("%v left", left)
		}
		return nil
	})
	h.steerBurst([][]byte{reply})
	if st := h.Stats(); st.HandedOut != 1 || st.Dropped != 1 {
		t.Errorf("after the ring appeared: handed out %d, dropped %d; want 1, 1", st.HandedOut, st.Dropped)
	}
	if h.out[1] != nil {
		h.out[1].Close()
	}
}

// Steering a burst parses each frame once, into the Handoff's own slots,
// and allocates nothing.
func TestSteerBurstAllocs(t *testing.T) {
	steer := newLcoreSteer(2, 0)
	h := newHandoff(0, 2, steer, DefaultBurst)
	lo, _ := steer.PortRange(1)
	reply := rxSegment{sport: 7, dport: lo, seq: 1, ack: 1, flags: header.TCPFlagAck}.frame()
	listen := rxSegment{sport: 40000, dport: 80, seq: 1, ack: 1, flags: header.TCPFlagAck}.frame()
	arp := steerARP(header.ARPReply, rxAddr(rxV4Peer), rxAddr(rxV4Us))
	burst := [][]byte{arp, reply, listen}
	if n := testing.AllocsPerRun(100, func() {
		local, parsed := h.steerBurst(burst)
		if len(local) != 2 || len(parsed) != 2 || !parsed[1].Has(packet.TCP) || parsed[1].DstPort != 80 {
			t.Fatalf("local frames %d, parsed %+v; want the ARP reply and the segment to port 80", len(local), parsed)
		}
	}); n != 0 {
		t.Errorf("steerBurst allocates %v times per burst", n)
	}
}
