package stack

import (
	"encoding/binary"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/internal/testframe"
	"github.com/xstack/xstack/stack/packet"
)

// guardSYN returns an Ethernet frame of a TCP SYN from src:port to the
// stack's port 80, and its parsed headers.
func guardSYN(src uint32, port uint16) ([]byte, *packet.Parsed) {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], src)
	syn := testframe.TCP{SrcPort: port, DstPort: 80, Flags: header.TCPFlagSyn}.Segment(nil)
	b := testframe.IPv4{Src: tcpip.AddrFrom4(a), Dst: testframe.V4Us, Proto: header.TCPProtocolNumber}.Frame(syn)
	var p packet.Parsed
	packet.Parse(b, &p)
	if !p.Has(packet.TCP) {
		panic("guardSYN: not a TCP segment")
	}
	return b, &p
}

func TestSynGuard(t *testing.T) {
	var cookies uint64
	// The guard's clock moves only when the test says: a window ends
	// when advance moves it past the window's end.
	var now time.Duration
	advance := func(d time.Duration) { now += d }
	var g synGuard
	g.init(func() uint64 { return cookies }, func() time.Duration { return now })
	g.limit.Store(1000) // engages above 100 SYNs in a 100 ms window

	next := uint32(0x0a000000)
	burst := func(n int) (dropped int) {
		for range n {
			next++
			f, p := guardSYN(next, uint16(next))
			if g.check(f, p) {
				dropped++
			}
		}
		return dropped
	}

	// A high SYN rate alone, with the listeners keeping up (no cookies),
	// does not engage the guard.
	burst(500)
	advance(guardWindow + 10*time.Millisecond)
	if d := burst(500); d != 0 || g.engaged.Load() != 0 {
		t.Fatalf("engaged without listener overflow: dropped %d, engaged %d", d, g.engaged.Load())
	}

	// With cookies being sent, the next window engages it: fresh tuples
	// are dropped, a retransmitted one passes.
	cookies += 100
	burst(500)
	advance(guardWindow + 10*time.Millisecond)
	if d := burst(1000); d < 900 {
		t.Fatalf("engaged guard dropped %d of 1000 fresh SYNs", d)
	}
	if g.engaged.Load() != 1 {
		t.Fatalf("engaged %d times, want 1", g.engaged.Load())
	}
	f, p := guardSYN(0xc0a80001, 40000)
	if !g.check(f, p) {
		t.Fatal("a client's first SYN passed the engaged guard")
	}
	if g.check(f, p) {
		t.Fatal("the client's retransmitted SYN was dropped")
	}
	if g.passed.Load() == 0 {
		t.Error("link.syn_guard_passed did not count the retransmission")
	}
	// Checking an engaged guard does not allocate.
	if n := testing.AllocsPerRun(1000, func() { g.check(f, p) }); n != 0 {
		t.Errorf("check allocates %v times per SYN", n)
	}

	// It stays engaged while the flood goes on, even though it keeps the
	// flood from the listeners (no new cookies) ...
	advance(guardWindow + 10*time.Millisecond)
	if d := burst(500); d < 450 {
		t.Fatalf("guard let %d of 500 flood SYNs through in its second window", 500-d)
	}
	// ... and lets go once the rate has been low for guardLinger.
	advance(guardLinger + 2*guardWindow)
	if d := burst(1); d != 0 {
		t.Fatal("guard still engaged after the flood ended")
	}

	// Off: never drops.
	g.limit.Store(0)
	cookies += 100
	burst(500)
	advance(guardWindow + 10*time.Millisecond)
	if d := burst(500); d != 0 {
		t.Fatalf("guard off dropped %d SYNs", d)
	}
}
