package stack

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/stack/packet"
)

// TIME-WAIT in the link endpoint.
//
// The side that closes a TCP connection first holds it in TIME-WAIT for
// 2*MSL, so that a retransmission of the peer's FIN (its final ACK was
// lost) is acknowledged rather than reset, and stray segments of the old
// connection are not taken for a new one. A server of short connections
// closes first, so at 20,000 connections a second and an MSL of 2 s it
// holds 80,000 connections in TIME-WAIT. gVisor holds each as a whole
// endpoint, about 7 KiB of heap full of pointers, which the Go collector
// marks over and over (an lcore spent 12% of its time marking them and
// 9% faulting in the heap they grew into) for a state that needs a
// handful of numbers.
//
// So the link endpoint keeps TIME-WAIT itself, in the way Linux keeps a
// connection in TIME-WAIT as a small timewait socket: an entry of a few
// dozen bytes with no pointers, in a FIFO ring (all entries live for the
// same 2*MSL) indexed by the connection's addresses and ports. gVisor's own
// TIME-WAIT is cut to twHandoff, after which its endpoint is freed.
//
// The endpoint learns of a connection entering TIME-WAIT from the frames
// themselves:
//
//   - the stack sends a FIN: the connection is closing, and its FIN ends at
//     sequence number sndNxt;
//   - a FIN of the peer arrives that acknowledges sndNxt: the peer has our
//     FIN and is closing too; its FIN ends at rcvNxt;
//   - the stack sends a pure ACK of rcvNxt at sndNxt: gVisor took the FIN
//     in order with its own FIN acknowledged, and is in TIME-WAIT. The ACK's
//     window and timestamp are kept for the ACKs the table sends.
//
// A connection that closes any other way (the peer closes first, a
// simultaneous close, a reset) never makes the last step; its entry goes
// at the end of its 2*MSL like any other, and the connection has gVisor's
// handoff TIME-WAIT only.
//
// While a connection is in the table, its segments stop here and gVisor
// never sees them, as RFC 9293 section 3.10.7.4 has TIME-WAIT answer them:
//
//   - a retransmitted FIN is acknowledged and restarts the 2*MSL;
//   - a segment with data or off RCV.NXT is acknowledged; a duplicate ACK
//     is dropped;
//   - a RST is dropped, as gVisor drops it in TIME-WAIT (RFC 1337);
//   - a SYN with a sequence number past RCV.NXT opens a new connection
//     (RFC 1122 4.2.2.13): the entry goes, and the SYN goes on to gVisor.
//     Any other SYN is acknowledged.
//
// The stack sending a SYN or a RST on a tuple removes its entry: gVisor
// reused the ports or gave up on the connection.
type timeWait struct {
	// used counts the ring's live entries (closing or TIME-WAIT), and
	// peerFins those that wait for the stack's final ACK: each lets a
	// path skip the table while it is 0, without the lock.
	used, peerFins atomic.Int32

	mu sync.Mutex
	// ring[head], ring[head+1], ... (mod len) are count entries, in
	// the order of their deadlines; dead ones are skipped. +checklocks:mu
	ring        []twEntry
	head, count int
	index       map[flowKey]uint32 // a live entry's place in ring. +checklocks:mu
	max         int                // net.inet.tcp.tw_max; 0: gVisor keeps TIME-WAIT. +checklocks:mu
	life        time.Duration      // 2*MSL. +checklocks:mu

	now func() time.Duration // the stack's clock
	// ttl is the stack's default TTL (hop limit, for IPv6) for the
	// table's ACKs.
	ttl func(v6 bool) uint8

	entered, acks, evicted atomic.Uint64
	held                   atomic.Int64 // entries in TIME-WAIT
}

// twHandoff is how long gVisor keeps a connection in TIME-WAIT while the
// table holds it: enough for the final ACK to leave, short enough that
// gVisor holds few endpoints.
const twHandoff = 100 * time.Millisecond

// defaultTWMax is net.inet.tcp.tw_max's default: as many connections in
// TIME-WAIT per lcore as Linux's tcp_max_tw_buckets allows a host, which
// at 2*MSL = 4 s is 65,000 connections a second.
const defaultTWMax = 262144

// twStartRing is the ring's first size; it doubles up to max.
const twStartRing = 1024

type twState uint8

const (
	twDead     twState = iota
	twClosing          // the stack sent its FIN
	twPeerFin          // and the peer's FIN acknowledged it
	twTimeWait         // and the stack acknowledged the peer's FIN
)

// twEntry is one connection. It holds no pointers, so that the collector
// never looks into the ring.
type twEntry struct {
	key    flowKey // as the stack sends: its address, the peer's, its port, the peer's
	state  twState
	hasTS  bool   // the connection carries timestamps (RFC 7323)
	win    uint16 // the window field of the stack's final ACK
	sndNxt uint32 // the end of the stack's FIN
	rcvNxt uint32 // the end of the peer's FIN
	tsVal  uint32 // TSval of the stack's final ACK
	tsAt   time.Duration
	expire time.Duration
}

func (tw *timeWait) init(now func() time.Duration, ttl func(v6 bool) uint8) {
	tw.now, tw.ttl = now, ttl
	tw.max = defaultTWMax
	tw.life = 2 * DefaultMSL
	tw.index = make(map[flowKey]uint32)
}

// twAck is an ACK the table answers a segment with.
type twAck struct {
	seq, ack, tsVal, tsEcr uint32
	win                    uint16
	ts                     bool
}

// rx looks at a TCP segment the stack received (frame, parsed in p, its
// checksums good) and reports whether the table takes it, and whether to
// answer it with ack.
func (tw *timeWait) rx(frame []byte, p *packet.Parsed) (consumed, answer bool, ack twAck) {
	if p.Flags&(packet.TCP|packet.Fragment) != packet.TCP {
		return false, false, ack
	}
	key := replyFlow(frame, p)
	tw.mu.Lock()
	defer tw.mu.Unlock()
	i, ok := tw.index[key]
	if !ok {
		return false, false, ack
	}
	x := &tw.ring[i]
	flags := p.TCPFlags
	plen := uint32(p.TCPPayloadLen())
	if x.state != twTimeWait {
		switch {
		case flags&header.TCPFlagRst != 0:
			tw.killLocked(i)
		case x.state == twClosing && flags&(header.TCPFlagFin|header.TCPFlagAck) == header.TCPFlagFin|header.TCPFlagAck && p.Ack == x.sndNxt:
			x.rcvNxt = p.Seq + plen + 1
			x.state = twPeerFin
			tw.peerFins.Add(1)
		}
		return false, false, ack
	}
	now := tw.now()
	switch {
	case flags&header.TCPFlagRst != 0:
		return true, false, ack
	case flags&(header.TCPFlagSyn|header.TCPFlagAck) == header.TCPFlagSyn:
		if int32(p.Seq-x.rcvNxt) > 0 {
			tw.killLocked(i)
			return false, false, ack
		}
	case flags&header.TCPFlagAck == 0:
		return true, false, ack
	case flags&header.TCPFlagFin != 0 && p.Seq+plen+1 == x.rcvNxt:
		// The peer did not get the final ACK: a new 2*MSL.
		i = tw.renewLocked(i, now)
		x = &tw.ring[i]
	case p.Seq == x.rcvNxt && plen == 0:
		return true, false, ack // a duplicate ACK
	}
	ack = twAck{seq: x.sndNxt, ack: x.rcvNxt, win: x.win, ts: x.hasTS}
	if x.hasTS {
		ack.tsVal = x.tsVal + uint32((now-x.tsAt)/time.Millisecond)
		ack.tsEcr, _ = tsOption(p.TCPOptions(frame))
	}
	return true, true, ack
}

// sent looks at the frames of a TX batch, parsed in meta, for FINs, final
// ACKs, SYNs and RSTs of the stack.
func (tw *timeWait) sent(frames [][]byte, meta []segMeta) {
	acks := tw.peerFins.Load() > 0
	wanted := func(m *segMeta) bool {
		return m.flow.n != 0 && (m.fin || m.syn || m.rst || m.pureAck && acks)
	}
	first := 0
	for first < len(meta) && !wanted(&meta[first]) {
		first++
	}
	if first == len(meta) {
		return
	}
	tw.mu.Lock()
	defer tw.mu.Unlock()
	if tw.max == 0 {
		return
	}
	now := tw.now()
	for i := first; i < len(meta); i++ {
		m := &meta[i]
		if !wanted(m) {
			continue
		}
		j, ok := tw.index[m.flow]
		switch {
		case m.syn || m.rst:
			if ok {
				tw.killLocked(j)
			}
		case m.fin:
			if !ok {
				tw.addLocked(twEntry{key: m.flow, state: twClosing, sndNxt: m.seq + m.plen + 1}, now)
			} else if x := &tw.ring[j]; x.state == twClosing {
				x.sndNxt = m.seq + m.plen + 1
			}
		case ok:
			x := &tw.ring[j]
			if x.state != twPeerFin || m.ack != x.rcvNxt || m.seq != x.sndNxt {
				continue
			}
			tw.peerFins.Add(-1)
			x.state = twTimeWait
			x.win = m.win
			if opts := frames[i][m.l4+header.TCPMinimumSize : m.l4+m.hdrLen]; len(opts) > 0 {
				x.tsVal, x.hasTS = tsOption(opts)
			}
			x.tsAt = now
			tw.renewLocked(j, now)
			tw.entered.Add(1)
			tw.held.Add(1)
		}
	}
}

// expire drops the entries whose 2*MSL is over.
func (tw *timeWait) expire() {
	if tw.used.Load() == 0 {
		return
	}
	now := tw.now()
	tw.mu.Lock()
	defer tw.mu.Unlock()
	for tw.count > 0 {
		x := &tw.ring[tw.head]
		if x.state != twDead && x.expire > now {
			break
		}
		tw.popLocked()
	}
}

// addLocked appends x to the ring with a deadline 2*MSL after now, and
// returns its place. A full ring grows up to max; at max the oldest entry
// makes room. +checklocks:tw.mu
func (tw *timeWait) addLocked(x twEntry, now time.Duration) uint32 {
	if tw.count == len(tw.ring) {
		if len(tw.ring) < tw.max {
			tw.growLocked()
		} else {
			for tw.count == len(tw.ring) {
				if tw.ring[tw.head].state != twDead {
					tw.evicted.Add(1)
				}
				tw.popLocked()
			}
		}
	}
	x.expire = now + tw.life
	i := uint32((tw.head + tw.count) % len(tw.ring))
	tw.ring[i] = x
	tw.count++
	tw.index[x.key] = i
	tw.used.Add(1)
	return i
}

// renewLocked moves entry i to the ring's end with a deadline 2*MSL
// after now, and returns its new place. +checklocks:tw.mu
func (tw *timeWait) renewLocked(i uint32, now time.Duration) uint32 {
	x := tw.ring[i]
	tw.ring[i].state = twDead
	tw.used.Add(-1)
	delete(tw.index, x.key)
	return tw.addLocked(x, now)
}

// killLocked drops entry i. +checklocks:tw.mu
func (tw *timeWait) killLocked(i uint32) {
	x := &tw.ring[i]
	switch x.state {
	case twDead:
		return
	case twPeerFin:
		tw.peerFins.Add(-1)
	case twTimeWait:
		tw.held.Add(-1)
	}
	delete(tw.index, x.key)
	x.state = twDead
	tw.used.Add(-1)
}

// popLocked drops the ring's first entry. +checklocks:tw.mu
func (tw *timeWait) popLocked() {
	tw.killLocked(uint32(tw.head))
	tw.head = (tw.head + 1) % len(tw.ring)
	tw.count--
}

// growLocked doubles the ring, within max. +checklocks:tw.mu
func (tw *timeWait) growLocked() {
	tw.relayoutLocked(min(max(2*len(tw.ring), twStartRing), tw.max))
}

// setMax applies net.inet.tcp.tw_max; 0 empties the table.
func (tw *timeWait) setMax(n int) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	tw.max = n
	for tw.count > n {
		tw.popLocked()
	}
	if len(tw.ring) > n {
		tw.relayoutLocked(n)
	}
}

// relayoutLocked moves the entries into a ring of n, n >= count.
// +checklocks:tw.mu
func (tw *timeWait) relayoutLocked(n int) {
	var ring []twEntry
	if n > 0 {
		ring = make([]twEntry, n)
	}
	for k := 0; k < tw.count; k++ {
		x := tw.ring[(tw.head+k)%len(tw.ring)]
		ring[k] = x
		if x.state != twDead {
			tw.index[x.key] = uint32(k)
		}
	}
	tw.ring, tw.head = ring, 0
}

// timeWaitKeys returns the keys of the connections in TIME-WAIT, for the
// tools.
func (tw *timeWait) timeWaitKeys() []flowKey {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	var keys []flowKey
	for k := 0; k < tw.count; k++ {
		if x := &tw.ring[(tw.head+k)%len(tw.ring)]; x.state == twTimeWait {
			keys = append(keys, x.key)
		}
	}
	return keys
}

// settings returns 2*MSL and net.inet.tcp.tw_max.
func (tw *timeWait) settings() (life time.Duration, limit int) {
	tw.mu.Lock()
	defer tw.mu.Unlock()
	return tw.life, tw.max
}

// setLife sets 2*MSL, for the connections that enter TIME-WAIT from now.
func (tw *timeWait) setLife(d time.Duration) {
	tw.mu.Lock()
	tw.life = d
	tw.mu.Unlock()
}

// gvisorTimeWait is how long gVisor is to keep its own TIME-WAIT: the
// handoff while the table holds connections, the whole 2*MSL when it is
// off.
func (tw *timeWait) gvisorTimeWait() time.Duration {
	life, n := tw.settings()
	if n == 0 {
		return life
	}
	return min(life, twHandoff)
}

// tsOption returns the TSval of a TCP option list's timestamp option
// (RFC 7323), and whether it has one.
func tsOption(opts []byte) (uint32, bool) {
	o, _ := tcpOption(opts, header.TCPOptionTS)
	if len(o) != header.TCPOptionTSLength {
		return 0, false
	}
	return binary.BigEndian.Uint32(o[2:6]), true
}

// sendTimeWaitAck sends a, the table's answer to the segment in frame
// (parsed in p), back to where the segment came from. It is queued in the
// TX batch like gVisor's frames, with its checksums complete.
func (e *endpoint) sendTimeWaitAck(frame []byte, p *packet.Parsed, a twAck) {
	optLen := 0
	if a.ts {
		optLen = 12
	}
	ipLen := header.IPv4MinimumSize
	if p.Flags&packet.IPv4 == 0 {
		ipLen = header.IPv6MinimumSize
	}
	tcpLen := header.TCPMinimumSize + optLen
	size := header.EthernetMinimumSize + ipLen + tcpLen
	e.txMu.Lock()
	defer e.txMu.Unlock()
	buf := e.txBufLocked(1)
	if buf == nil || size > cap(buf) {
		if buf != nil {
			e.txSpareAt--
		}
		e.txDropped.Add(1)
		return
	}
	f := buf[:size]
	copy(f[0:6], frame[6:12])
	copy(f[6:12], e.mac6[:])
	copy(f[12:14], frame[12:14])
	peer, local := p.Addrs(frame)
	src, dst := tcpip.AddrFromSlice(local), tcpip.AddrFromSlice(peer)
	ip := f[header.EthernetMinimumSize:]
	if ipLen == header.IPv4MinimumSize {
		v4 := header.IPv4(ip)
		v4.Encode(&header.IPv4Fields{
			TotalLength: uint16(ipLen + tcpLen), Flags: header.IPv4FlagDontFragment,
			TTL: e.tw.ttl(false), Protocol: uint8(header.TCPProtocolNumber),
			SrcAddr: src, DstAddr: dst,
		})
		v4.SetChecksum(^v4.CalculateChecksum())
	} else {
		header.IPv6(ip).Encode(&header.IPv6Fields{
			PayloadLength: uint16(tcpLen), TransportProtocol: header.TCPProtocolNumber,
			HopLimit: e.tw.ttl(true), SrcAddr: src, DstAddr: dst,
		})
	}
	ports := p.PortPair(frame)
	t := header.TCP(ip[ipLen:])
	t.Encode(&header.TCPFields{
		SrcPort: binary.BigEndian.Uint16(ports[2:4]), DstPort: binary.BigEndian.Uint16(ports[0:2]),
		SeqNum: a.seq, AckNum: a.ack, DataOffset: uint8(tcpLen), Flags: header.TCPFlagAck,
		WindowSize: a.win,
	})
	if a.ts {
		o := t[header.TCPMinimumSize:]
		o[0], o[1], o[2], o[3] = header.TCPOptionNOP, header.TCPOptionNOP, header.TCPOptionTS, header.TCPOptionTSLength
		binary.BigEndian.PutUint32(o[4:8], a.tsVal)
		binary.BigEndian.PutUint32(o[8:12], a.tsEcr)
	}
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(tcpLen))
	t.SetChecksum(^checksum.Checksum(t, xsum))
	e.txBatch[e.txN] = f
	e.txN++
	e.tw.acks.Add(1)
}
