package stack

import (
	"encoding/binary"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/stack/packet"
)

// synGuard protects the stack from SYN floods that outrun its SYN-cookie
// path. gVisor answers every SYN with a cookie once a listener's queue is
// full, but a SYN and its SYN-ACK cost the lcore several microseconds, so a
// flood faster than that leaves no time for established connections, and
// the NIC drops frames of every kind, real clients' SYNs among them.
//
// The guard engages when the listeners overflow (gVisor sends cookies) while
// more than limit SYNs a second arrive. While engaged, it drops the first
// SYN of each 4-tuple and remembers the tuple for a few seconds; a client
// retransmits its SYN after a second, and the retransmission passes. A
// flood from random addresses and ports never repeats a tuple, so almost
// all of it is dropped here, for the cost of a hash. Real clients connect
// one retransmission later, and established connections keep their share
// of the lcore. It disengages two seconds after the SYN rate falls below
// limit.
//
// Only the lcore loop calls check; limit is set from any goroutine.
type synGuard struct {
	limit atomic.Uint32 // SYNs per second that engage the guard; 0 = off

	// cookiesSent reads gVisor's count of SYN cookies sent.
	cookiesSent func() uint64
	// now is the stack's clock (Config.Now): monotonic time since a
	// fixed origin, never negative.
	now func() time.Duration
	key [2]uint64 // hash key, random per stack

	winStart    time.Duration // start of the current 100 ms window
	winSYNs     uint32        // SYNs seen in it
	winCookies  uint64        // cookiesSent at its start
	activeUntil time.Duration // engaged until then; 0 = never engaged

	// seen holds two generations of tuple bits, each a Bloom filter
	// with two bits per tuple: a tuple is known when both its bits are
	// set in one of them. The current one is cleared and swapped every
	// genSpan.
	seen     [2][]uint64
	cur      int
	genStart time.Duration

	engaged, dropped, passed atomic.Uint64
}

const (
	guardWindow  = 100 * time.Millisecond
	guardLinger  = 2 * time.Second // engaged this long after the last fast window
	guardGenSpan = 2 * time.Second // a tuple is remembered 2 to 4 s
	guardBits    = 1 << 23         // per generation: 1 MiB
)

// With two bits per tuple a random tuple passes for a known one with the
// square of the filter's fill. A flood that outruns the lcore is seen at
// what the lcore takes, some 130,000 SYNs a second here, so a generation
// holds up to about half a million tuples: one bit a tuple in a filter of
// 4 Mibit let 23% of a 500,000 SYN/s flood through as "retransmissions",
// each then answered with a cookie; two bits in 8 Mibit let about 1%
// through.

// defaultSynGuard is net.inet.tcp.syn_guard's default.
const defaultSynGuard = 10000

func (g *synGuard) init(cookiesSent func() uint64, now func() time.Duration) {
	g.cookiesSent = cookiesSent
	g.now = now
	g.key = [2]uint64{rand.Uint64(), rand.Uint64()}
	g.limit.Store(defaultSynGuard)
}

// check is called for every TCP segment with SYN set and ACK clear, the
// frame and its parsed headers. It reports whether to drop the segment.
func (g *synGuard) check(frame []byte, p *packet.Parsed) bool {
	limit := g.limit.Load()
	if limit == 0 {
		return false
	}
	now := g.now()
	if now-g.winStart >= guardWindow {
		cookies := g.cookiesSent()
		if g.winSYNs > limit/10 && (cookies != g.winCookies || now < g.activeUntil) {
			if now >= g.activeUntil {
				g.engaged.Add(1)
			}
			g.activeUntil = now + guardLinger
		}
		g.winStart, g.winSYNs, g.winCookies = now, 0, cookies
	}
	g.winSYNs++
	if now >= g.activeUntil {
		return false
	}
	if g.seen[0] == nil {
		// Allocated once, the first time a flood engages the guard.
		g.seen[0] = make([]uint64, guardBits/64)
		g.seen[1] = make([]uint64, guardBits/64)
		g.genStart = now
	}
	if now-g.genStart >= guardGenSpan {
		g.cur ^= 1
		clear(g.seen[g.cur])
		g.genStart = now
	}
	h := g.hash(frame, p)
	b1, b2 := h%guardBits, (h>>32)%guardBits
	w1, m1 := b1/64, uint64(1)<<(b1%64)
	w2, m2 := b2/64, uint64(1)<<(b2%64)
	for _, gen := range &g.seen {
		if gen[w1]&m1 != 0 && gen[w2]&m2 != 0 {
			g.passed.Add(1)
			return false
		}
	}
	g.seen[g.cur][w1] |= m1
	g.seen[g.cur][w2] |= m2
	g.dropped.Add(1)
	return true
}

// hash mixes the segment's addresses and ports under the stack's key.
func (g *synGuard) hash(frame []byte, p *packet.Parsed) uint64 {
	h := g.key[0]
	mix := func(v uint64) {
		h ^= v
		h *= 0x9e3779b97f4a7c15
		h ^= h >> 29
	}
	src, dst := p.Addrs(frame)
	if len(src) == header.IPv4AddressSize {
		mix(uint64(binary.BigEndian.Uint32(src)))
		mix(uint64(binary.BigEndian.Uint32(dst)))
	} else {
		mix(binary.BigEndian.Uint64(src))
		mix(binary.BigEndian.Uint64(src[8:]))
		mix(binary.BigEndian.Uint64(dst))
		mix(binary.BigEndian.Uint64(dst[8:]))
	}
	mix((uint64(p.SrcPort)<<16 | uint64(p.DstPort)) ^ g.key[1])
	return h
}
