package main

import (
	"net/netip"

	"github.com/xstack/xstack/stack/packet"
	"github.com/xstack/xstack/tools/xload/report"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Tx lends the engine a buffer to build one frame in (nil when none is
// free) and takes the built frame, buf[:n], to send.
type Tx interface {
	Buf() []byte
	Send(frame []byte)
}

// Connection states. A client closes actively (finWait) or passively
// (lastAck); it keeps no TIME-WAIT: the port is reused only after every
// other slot was, with a larger initial sequence number.
const (
	stFree = iota
	stSynSent
	stEstab
	stFinWait
	stLastAck
)

const (
	fAckNow   = 1 << iota // a pure ACK is owed at the end of the batch
	fPeerFin              // the server's FIN was received
	fFinAcked             // our FIN was acknowledged
	fInReq                // a request is outstanding
	fIdle                 // open loop: on Engine.idle, waiting for a request
)

// conn is one connection's whole state, a fixed slot of the table.
type conn struct {
	state   uint8
	flags   uint8
	retries uint8
	src     uint8  // index into Engine.srcs
	sport   uint16 // source port
	reqSeq  uint32 // sequence number of the request's first byte
	sndUna  uint32
	sndNxt  uint32
	rcvNxt  uint32
	reqs    uint32 // responses read on this connection
	rto     int64  // current retransmission timeout, ns
	due     int64  // when the timer fires, ns
	sent    int64  // when the latency clock started, ns
	reqAt   int64  // when the request (with -short, the SYN) was sent, ns
	active  int32  // position in Engine.active
	idle    int32  // position in Engine.idle while fIdle is set
	resp    respParser
}

// Config is what the engine needs to know.
type Config struct {
	MAC       [6]byte
	Srcs      []netip.Addr // the generator's addresses, all of Server's family
	PortLo    uint16
	PortHi    uint16
	PortStart uint16     // the first source port used, in PortLo..PortHi
	Server    netip.Addr // IPv4 or IPv6, on-link
	SrvPort   uint16
	Conns     int  // connections open at once
	Short     bool // one request per connection, Connection: close
	PerConn   int  // keep-alive: requests per connection, 0 = no limit
	Request   []byte
	RTO       int64 // initial retransmission timeout, ns
	Retries   int   // retransmissions before a connection counts as timed out
	Timeout   int64 // longest a request may wait for its response, ns
	RcvWindow uint16
	MSS       uint16
	// Rate makes the loop open: requests (connections when Short) are
	// started at Rate per second on a fixed schedule, whether or not the
	// earlier ones were answered, and latency runs from each one's
	// scheduled time. 0 is a closed loop: the next request goes as soon
	// as a connection is free.
	Rate float64
}

// Counts are the engine's totals (report.Counts, the -json report's).
type Counts = report.Counts

// Engine is the client TCP and HTTP of one AF_XDP queue. One goroutine
// drives it: Input for each received frame, then Poll once per pass.
type Engine struct {
	cfg        Config
	v6         bool            // the run is IPv6: ND, not ARP
	srcs       []tcpip.Address // cfg.Srcs; a connection's src indexes it
	server     tcpip.Address
	srvMAC     [6]byte
	haveMAC    bool
	nports     int
	conns      []conn
	free       []uint32 // FIFO of free slots: a port waits its turn
	fhead      int
	fn         int
	active     []uint32
	acks       []uint32
	tx         Tx
	now        int64
	issBase    uint32
	reqSum     uint16
	ipID       uint16
	resolveDue int64 // when the next ARP request or NS for the server is due
	stop       bool
	lastOK     int64

	// The link-layer address options of our NS and NA, made once.
	sllao, tllao header.NDPOptionsSerializer

	// The open loop's schedule: request j is due at rateStart +
	// j×interval; next is the first not yet started, and those below
	// lateUpTo were found due with no connection to take them.
	interval  float64
	rateStart int64
	next      uint64
	lateUpTo  uint64
	idle      []uint32

	Counts Counts
	Hist   Hist
}

// NewEngine preallocates every slot: len(Srcs) × ports. issBase is the
// initial sequence number clock's reading at now = 0, in ticks of 4.096
// µs (now>>12): the caller takes it from a clock that runs on across runs,
// so that a later run's ISNs are above an earlier one's.
func NewEngine(cfg Config, tx Tx, issBase uint32) *Engine {
	n := int(cfg.PortHi-cfg.PortLo) + 1
	e := &Engine{cfg: cfg, tx: tx, nports: n, issBase: issBase, v6: cfg.Server.Is6()}
	e.server = tcpip.AddrFromSlice(cfg.Server.AsSlice())
	e.srcs = make([]tcpip.Address, len(cfg.Srcs))
	for i, a := range cfg.Srcs {
		e.srcs[i] = tcpip.AddrFromSlice(a.AsSlice())
	}
	e.sllao = header.NDPOptionsSerializer{header.NDPSourceLinkLayerAddressOption(cfg.MAC[:])}
	e.tllao = header.NDPOptionsSerializer{header.NDPTargetLinkLayerAddressOption(cfg.MAC[:])}
	total := n * len(cfg.Srcs)
	e.conns = make([]conn, total)
	e.free = make([]uint32, total)
	first := 0
	if cfg.PortStart > cfg.PortLo && cfg.PortStart <= cfg.PortHi {
		first = int(cfg.PortStart - cfg.PortLo)
	}
	// Interleave the sources, so that consecutive connections leave from
	// different addresses, from PortStart on and around.
	for k := 0; k < n; k++ {
		p := (first + k) % n
		for s := range cfg.Srcs {
			i := s*n + p
			e.conns[i].src, e.conns[i].sport = uint8(s), cfg.PortLo+uint16(p)
			e.free[e.fn] = uint32(i)
			e.fn++
		}
	}
	e.active = make([]uint32, 0, total)
	e.acks = make([]uint32, 0, total)
	if cfg.Rate > 0 {
		e.interval = 1e9 / cfg.Rate
		e.rateStart = -1
		e.idle = make([]uint32, 0, total)
	}
	e.reqSum = checksum.Checksum(cfg.Request, 0)
	return e
}

// Active is the number of open connections.
func (e *Engine) Active() int { return len(e.active) }

// Stop makes the engine open no more connections and send no more
// requests. In an open loop, it counts the requests that fell due and
// those of them never sent.
func (e *Engine) Stop() {
	if e.stop {
		return
	}
	e.stop = true
	if e.interval > 0 && e.rateStart >= 0 {
		e.Counts.Scheduled = uint64(float64(e.now-e.rateStart)/e.interval) + 1
		if e.Counts.Scheduled > e.next {
			e.Counts.Unsent = e.Counts.Scheduled - e.next
		} else {
			e.Counts.Scheduled = e.next
		}
	}
}

func seqLT(a, b uint32) bool { return int32(a-b) < 0 }
func seqLE(a, b uint32) bool { return int32(a-b) <= 0 }

// Input handles one received frame.
func (e *Engine) Input(frame []byte, now int64) {
	e.now = now
	e.Counts.RxFrames++
	var p packet.Parsed
	packet.Parse(frame, &p)
	ipf := packet.IPv4
	if e.v6 {
		ipf = packet.IPv6
		if p.Has(packet.IPv6|packet.ICMP) && p.Proto == uint8(header.ICMPv6ProtocolNumber) &&
			(p.ICMPType == uint8(header.ICMPv6NeighborSolicit) || p.ICMPType == uint8(header.ICMPv6NeighborAdvert)) {
			e.nd(frame, &p)
			return
		}
	} else if p.Has(packet.ARP) {
		e.arp(frame)
		return
	}
	if !p.Has(ipf|packet.TCP) || p.Flags&packet.Fragment != 0 {
		e.Counts.RxStray++
		return
	}
	src, dst := p.Addrs(frame)
	srcA, dstA := addrOf(src), addrOf(dst)
	if srcA != e.server || p.SrcPort != e.cfg.SrvPort ||
		p.DstPort < e.cfg.PortLo || p.DstPort > e.cfg.PortHi {
		e.Counts.RxStray++
		return
	}
	s := e.srcIndex(dstA)
	if s < 0 {
		e.Counts.RxStray++
		return
	}
	l4 := p.L4(frame)
	// IPv6 has no header checksum: the pseudo-header's addresses are
	// what the TCP checksum covers of it (RFC 8200 8.1).
	if !e.v6 {
		ip := header.IPv4(p.IP(frame))
		if checksum.Checksum(ip[:ip.HeaderLength()], 0) != 0xffff {
			e.Counts.RxBadChecksum++
			return
		}
	}
	pseudo := header.PseudoHeaderChecksum(header.TCPProtocolNumber, srcA, dstA, uint16(len(l4)))
	if checksum.Checksum(l4, pseudo) != 0xffff {
		// A sender that left its checksum to the NIC (Linux's
		// CHECKSUM_PARTIAL, AF_XDP's TX checksum request) puts the
		// pseudo-header sum in the field, and a veth hands the frame
		// over as it is: the peer's kernel would trust it, and so does
		// xload, counting it apart.
		if header.TCP(l4).Checksum() != pseudo {
			e.Counts.RxBadChecksum++
			return
		}
		e.Counts.RxPartialChecksum++
	}
	idx := uint32(s*e.nports + int(p.DstPort-e.cfg.PortLo))
	e.segment(idx, &p, frame)
}

// addrOf is the 4- or 16-byte address b as gVisor's Address. Unlike
// tcpip.AddrFromSlice, which formats b into its panic message, it does
// not make b, and the frame it is part of, escape to the heap.
func addrOf(b []byte) tcpip.Address {
	if len(b) == 4 {
		return tcpip.AddrFrom4([4]byte(b))
	}
	return tcpip.AddrFrom16([16]byte(b))
}

// srcIndex is a's index in the source table, or -1.
func (e *Engine) srcIndex(a tcpip.Address) int {
	for i := range e.srcs {
		if e.srcs[i] == a {
			return i
		}
	}
	return -1
}

func (e *Engine) segment(idx uint32, p *packet.Parsed, frame []byte) {
	c := &e.conns[idx]
	fl := p.TCPFlags
	if c.state == stFree {
		// RFC 9293 3.10.7.1: a segment for a closed connection gets a
		// reset, unless it is one.
		if fl&header.TCPFlagRst == 0 {
			e.Counts.RxStray++
			if fl&header.TCPFlagAck != 0 {
				e.send(c, header.TCPFlagRst, p.Ack, 0, nil, false)
			} else {
				e.send(c, header.TCPFlagRst|header.TCPFlagAck, 0, p.Seq+uint32(p.TCPPayloadLen())+1, nil, false)
			}
		}
		return
	}
	if c.state == stSynSent {
		if fl&header.TCPFlagAck == 0 {
			return
		}
		if p.Ack != c.sndNxt {
			// RFC 9293 3.10.7.3: an unacceptable ACK gets a reset at
			// SEG.ACK. It is what a server's TIME-WAIT answers a SYN
			// below its sequence space with; the reset ends that
			// TIME-WAIT and the SYN's retransmission opens the
			// connection.
			if fl&header.TCPFlagRst == 0 {
				e.send(c, header.TCPFlagRst, p.Ack, 0, nil, false)
			}
			return
		}
		if fl&header.TCPFlagRst != 0 {
			e.Counts.Reset++
			e.release(idx)
			return
		}
		if fl&header.TCPFlagSyn == 0 {
			return
		}
		c.rcvNxt = p.Seq + 1
		c.sndUna = p.Ack
		c.state = stEstab
		c.retries = 0
		c.rto = e.cfg.RTO
		if e.interval > 0 && !e.cfg.Short {
			// The handshake ends now, as a kernel client's connect
			// does, not when the schedule reaches this connection.
			e.send(c, header.TCPFlagAck, c.sndNxt, c.rcvNxt, nil, false)
			e.makeIdle(idx)
			return
		}
		// With -short, latency runs from the SYN (or its scheduled time).
		e.sendRequest(c, c.sent)
		return
	}
	if fl&header.TCPFlagRst != 0 {
		// RFC 5961 3.2: only a reset at RCV.NXT is believed.
		if p.Seq != c.rcvNxt {
			return
		}
		if c.flags&fInReq != 0 {
			e.Counts.Reset++
		}
		e.release(idx)
		return
	}
	if fl&header.TCPFlagAck != 0 && seqLT(c.sndUna, p.Ack) && seqLE(p.Ack, c.sndNxt) {
		c.sndUna = p.Ack
		c.retries = 0
		c.rto = e.cfg.RTO
		if c.state >= stFinWait && p.Ack == c.sndNxt {
			c.flags |= fFinAcked
		}
	}
	data := frame[int(p.L4Off)+int(p.TCPHdrLen) : p.End]
	seq := p.Seq
	if len(data) > 0 || fl&header.TCPFlagFin != 0 {
		c.ackNow(e, idx)
	}
	// Only in-order data is taken; the server retransmits the rest.
	if seqLT(seq, c.rcvNxt) {
		skip := c.rcvNxt - seq
		if uint32(len(data)) < skip {
			data = nil
			if fl&header.TCPFlagFin != 0 && seq+uint32(p.TCPPayloadLen()) != c.rcvNxt-1 {
				fl &^= header.TCPFlagFin
			}
		} else {
			data = data[skip:]
		}
		seq = c.rcvNxt
	}
	if seq != c.rcvNxt {
		return
	}
	if len(data) > 0 {
		c.rcvNxt += uint32(len(data))
		e.Counts.RespBytes += uint64(len(data))
		if c.flags&fInReq == 0 {
			e.Counts.Malformed++
			e.abort(idx)
			return
		}
		used, r := c.resp.feed(data)
		switch {
		case r == respMalformed:
			e.Counts.Malformed++
			e.abort(idx)
			return
		case r == respDone && used != len(data):
			// Bytes past the response that nobody asked for.
			e.Counts.Malformed++
			e.abort(idx)
			return
		case r == respDone:
			if fl&header.TCPFlagFin != 0 && c.flags&fPeerFin == 0 {
				// The server closed with the response's last bytes:
				// take its FIN first, so that ours acknowledges it,
				// as a kernel client's does, and the server sends
				// and receives one frame fewer for the connection.
				c.rcvNxt++
				c.flags |= fPeerFin
			}
			e.responseDone(idx)
			if c.state == stFree {
				return
			}
		}
	}
	if fl&header.TCPFlagFin != 0 && c.flags&fPeerFin == 0 {
		c.rcvNxt++
		c.flags |= fPeerFin
		if c.flags&fInReq != 0 {
			if c.resp.closeOnly() {
				e.responseDone(idx)
				if c.state == stFree {
					return
				}
			} else {
				e.Counts.Short++
				c.flags &^= fInReq
			}
		}
		if c.state == stEstab {
			e.sendFin(c, stLastAck)
			c.flags &^= fAckNow
			return
		}
	}
	if c.state == stFinWait && c.flags&fFinAcked != 0 && c.flags&fPeerFin != 0 {
		e.send(c, header.TCPFlagAck, c.sndNxt, c.rcvNxt, nil, false)
		e.Counts.ConnsDone++
		e.release(idx)
		return
	}
	if c.state == stLastAck && c.flags&fFinAcked != 0 {
		e.Counts.ConnsDone++
		e.release(idx)
		return
	}
	if c.state == stEstab && c.flags&fInReq != 0 && c.sndUna == c.sndNxt {
		c.due = c.reqAt + e.cfg.Timeout
	}
}

func (c *conn) ackNow(e *Engine, idx uint32) {
	if c.flags&fAckNow == 0 {
		c.flags |= fAckNow
		e.acks = append(e.acks, idx)
	}
}

func (e *Engine) responseDone(idx uint32) {
	c := &e.conns[idx]
	c.flags &^= fInReq
	c.reqs++
	if st := c.resp.status; st >= 200 && st < 400 {
		e.Counts.OK++
	} else {
		e.Counts.BadStatus++
	}
	e.Hist.Record(e.now - c.sent)
	e.lastOK = e.now
	if !e.cfg.Short && !e.stop && c.resp.keepAlive() && c.flags&fPeerFin == 0 &&
		(e.cfg.PerConn == 0 || int(c.reqs) < e.cfg.PerConn) {
		if e.interval > 0 {
			e.makeIdle(idx)
		} else {
			e.sendRequest(c, e.now)
		}
		return
	}
	if c.flags&fPeerFin != 0 {
		e.sendFin(c, stLastAck)
	} else {
		e.sendFin(c, stFinWait)
	}
}

// sendRequest sends the request; its latency runs from start.
func (e *Engine) sendRequest(c *conn, start int64) {
	c.resp.reset()
	c.flags |= fInReq
	c.flags &^= fAckNow
	c.reqSeq = c.sndNxt
	c.sndNxt += uint32(len(e.cfg.Request))
	c.sent = start
	if !e.cfg.Short {
		c.reqAt = e.now
	}
	c.due = e.now + c.rto
	e.send(c, header.TCPFlagAck|header.TCPFlagPsh, c.reqSeq, c.rcvNxt, e.cfg.Request, false)
}

// delAck is how long an idle connection of the open loop holds the ACK
// of its last response for the next request to carry (Linux's least
// delayed-ACK timeout): a kernel client under the same schedule sends
// one frame per request, not two.
const delAck = 40e6

// makeIdle puts an established connection on the open loop's idle list.
func (e *Engine) makeIdle(idx uint32) {
	c := &e.conns[idx]
	c.flags |= fIdle
	c.idle = int32(len(e.idle))
	e.idle = append(e.idle, idx)
	c.due = e.now + delAck
}

// unIdle takes c off the idle list, if it is on it.
func (e *Engine) unIdle(c *conn) {
	if c.flags&fIdle == 0 {
		return
	}
	c.flags &^= fIdle
	last := e.idle[len(e.idle)-1]
	e.idle[c.idle] = last
	e.conns[last].idle = c.idle
	e.idle = e.idle[:len(e.idle)-1]
}

func (e *Engine) sendFin(c *conn, st uint8) {
	e.unIdle(c)
	c.state = st
	c.flags &^= fAckNow
	c.retries = 0
	c.rto = e.cfg.RTO
	c.due = e.now + c.rto
	e.send(c, header.TCPFlagFin|header.TCPFlagAck, c.sndNxt, c.rcvNxt, nil, false)
	c.sndNxt++
}

// abort resets the connection and frees its slot.
func (e *Engine) abort(idx uint32) {
	c := &e.conns[idx]
	e.send(c, header.TCPFlagRst|header.TCPFlagAck, c.sndNxt, c.rcvNxt, nil, false)
	e.release(idx)
}

func (e *Engine) release(idx uint32) {
	c := &e.conns[idx]
	if c.state == stFree {
		return
	}
	e.unIdle(c)
	last := e.active[len(e.active)-1]
	e.active[c.active] = last
	e.conns[last].active = c.active
	e.active = e.active[:len(e.active)-1]
	c.state, c.flags = stFree, 0
	e.free[(e.fhead+e.fn)%len(e.free)] = idx
	e.fn++
}

func (e *Engine) open() bool {
	if e.fn == 0 {
		return false
	}
	idx := e.free[e.fhead]
	e.fhead = (e.fhead + 1) % len(e.free)
	e.fn--
	c := &e.conns[idx]
	src, sport := c.src, c.sport
	*c = conn{src: src, sport: sport, state: stSynSent, rto: e.cfg.RTO}
	c.active = int32(len(e.active))
	e.active = append(e.active, idx)
	// RFC 6528's clock (4 µs ticks) without its keyed hash: xload runs on
	// rigs, where off-path guessing is no concern, and a clock that runs
	// on across runs makes a SYN reusing a 4-tuple the server holds in
	// TIME-WAIT start above the old sequence space, so that it is
	// accepted (RFC 9293 3.10.7.4, Linux tcp_timewait_state_process).
	iss := e.issBase + uint32(e.now>>12)
	c.sndUna, c.sndNxt = iss, iss+1
	c.sent, c.reqAt = e.now, e.now
	c.due = e.now + c.rto
	e.Counts.ConnsOpened++
	e.send(c, header.TCPFlagSyn, iss, 0, nil, true)
	return true
}

// Poll sends the ACKs owed, fires timers and opens connections up to the
// configured number. It returns false while the server's MAC is unknown.
func (e *Engine) Poll(now int64) {
	e.now = now
	for _, idx := range e.acks {
		c := &e.conns[idx]
		if c.flags&(fAckNow|fIdle) == fAckNow && c.state != stFree {
			c.flags &^= fAckNow
			e.send(c, header.TCPFlagAck, c.sndNxt, c.rcvNxt, nil, false)
		}
	}
	e.acks = e.acks[:0]
	if !e.haveMAC {
		if now >= e.resolveDue {
			if e.v6 {
				e.solicit()
			} else {
				e.arpRequest()
			}
			e.resolveDue = now + 200e6
		}
		return
	}
	for i := 0; i < len(e.active); i++ {
		idx := e.active[i]
		c := &e.conns[idx]
		if now < c.due {
			continue
		}
		if e.expire(idx) {
			i-- // the slot's place was taken by the last one
		}
	}
	if e.interval > 0 && e.cfg.Short {
		e.dispatch(now)
		return
	}
	for k := 0; !e.stop && len(e.active) < e.cfg.Conns && k < 64; k++ {
		if !e.open() {
			break
		}
	}
	if e.interval > 0 {
		e.dispatch(now)
	}
}

// due is when the open loop's request j is to start.
func (e *Engine) due(j uint64) int64 {
	return e.rateStart + int64(float64(j)*e.interval)
}

// dispatch starts the open loop's requests that are due: each on an idle
// connection, or with -short on a new connection, while there is one. The
// schedule starts when the first connection can take a request, so that
// the handshakes of a keep-alive run are not counted against it.
func (e *Engine) dispatch(now int64) {
	if e.stop {
		// Idle connections are closed at once: nothing more is sent.
		for len(e.idle) > 0 {
			e.sendFin(&e.conns[e.idle[len(e.idle)-1]], stFinWait)
		}
		return
	}
	if e.rateStart < 0 {
		if !e.cfg.Short && len(e.idle) == 0 {
			return
		}
		e.rateStart = now
	}
	for ; e.due(e.next) <= now; e.next++ {
		if e.cfg.Short {
			if len(e.active) >= e.cfg.Conns || !e.open() {
				break
			}
			e.conns[e.active[len(e.active)-1]].sent = e.due(e.next)
		} else {
			if len(e.idle) == 0 {
				break
			}
			idx := e.idle[len(e.idle)-1]
			c := &e.conns[idx]
			e.unIdle(c)
			e.sendRequest(c, e.due(e.next))
		}
		if e.next < e.lateUpTo {
			e.Counts.Late++
		}
	}
	if e.due(e.next) <= now {
		// Blocked: what is due by now is late when it is finally sent.
		e.lateUpTo = uint64(float64(now-e.rateStart)/e.interval) + 1
	}
}

// NextDue is when the open loop's next request falls due, or -1 when
// there is no schedule to keep (a closed loop, or stopped).
func (e *Engine) NextDue() int64 {
	if e.interval == 0 || e.stop || e.rateStart < 0 {
		return -1
	}
	return e.due(e.next)
}

// expire handles c's timer; it reports whether the slot was freed.
func (e *Engine) expire(idx uint32) bool {
	c := &e.conns[idx]
	if c.flags&fIdle != 0 {
		// The delayed ACK; then no timer runs until the next request.
		if c.flags&fAckNow != 0 {
			c.flags &^= fAckNow
			e.send(c, header.TCPFlagAck, c.sndNxt, c.rcvNxt, nil, false)
		}
		c.due = 1<<63 - 1
		return false
	}
	if c.flags&fInReq != 0 && e.now-c.reqAt >= e.cfg.Timeout {
		e.Counts.Timeout++
		e.abort(idx)
		return true
	}
	if int(c.retries) >= e.cfg.Retries || (c.state == stFinWait && c.flags&fFinAcked != 0) {
		// Out of retransmissions, or the server never closes its side.
		if c.state == stSynSent || c.flags&fInReq != 0 {
			e.Counts.Timeout++
		}
		e.abort(idx)
		return true
	}
	c.retries++
	c.rto *= 2
	c.due = e.now + c.rto
	e.Counts.Retransmits++
	switch {
	case c.state == stSynSent:
		e.send(c, header.TCPFlagSyn, c.sndUna, 0, nil, true)
	case c.state == stEstab && c.sndUna != c.sndNxt:
		off := c.sndUna - c.reqSeq
		e.send(c, header.TCPFlagAck|header.TCPFlagPsh, c.sndUna, c.rcvNxt, e.cfg.Request[off:], false)
	case c.state >= stFinWait && c.flags&fFinAcked == 0:
		e.send(c, header.TCPFlagFin|header.TCPFlagAck, c.sndNxt-1, c.rcvNxt, nil, false)
	default:
		// Waiting for the response with the request acknowledged.
		c.due = c.reqAt + e.cfg.Timeout
		e.Counts.Retransmits--
	}
	return false
}

// Drain resets every connection still open; those with a request
// outstanding count as timed out.
func (e *Engine) Drain() {
	for len(e.active) > 0 {
		idx := e.active[len(e.active)-1]
		if e.conns[idx].flags&fInReq != 0 || e.conns[idx].state == stSynSent {
			e.Counts.Timeout++
		}
		e.abort(idx)
	}
}

const synOptLen = 8 // MSS (4), NOP, window scale (3)

// rcvWScale is the window scale we offer: the engine reads every byte as it
// comes, so the window it advertises is never used up by it.
const rcvWScale = 4

// send builds one TCP segment with gVisor's header encoders.
func (e *Engine) send(c *conn, flags header.TCPFlags, seq, ack uint32, data []byte, syn bool) {
	if !e.haveMAC {
		// A segment that came before the server's address was resolved
		// (one for a closed connection) has no one to answer to.
		return
	}
	buf := e.tx.Buf()
	if buf == nil {
		e.Counts.TxNoBuffer++
		return
	}
	tcpLen := header.TCPMinimumSize
	if syn {
		tcpLen += synOptLen
	}
	ipLen := header.IPv4MinimumSize
	if e.v6 {
		ipLen = header.IPv6MinimumSize
	}
	total := header.EthernetMinimumSize + ipLen + tcpLen + len(data)
	b := buf[:total]
	src, dst := e.srcs[c.src], e.server
	if e.v6 {
		e.ether(b, e.srvMAC[:], header.IPv6ProtocolNumber)
		header.IPv6(b[header.EthernetMinimumSize:]).Encode(&header.IPv6Fields{
			PayloadLength:     uint16(tcpLen + len(data)),
			TransportProtocol: header.TCPProtocolNumber,
			HopLimit:          64,
			SrcAddr:           src,
			DstAddr:           dst,
		})
	} else {
		e.ether(b, e.srvMAC[:], header.IPv4ProtocolNumber)
		ip := header.IPv4(b[header.EthernetMinimumSize:])
		e.ipID++
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(header.IPv4MinimumSize + tcpLen + len(data)),
			ID:          e.ipID,
			Flags:       header.IPv4FlagDontFragment,
			TTL:         64,
			Protocol:    uint8(header.TCPProtocolNumber),
			SrcAddr:     src,
			DstAddr:     dst,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
	}
	t := header.TCP(b[header.EthernetMinimumSize+ipLen:])
	win := e.cfg.RcvWindow
	if syn {
		win = 0xffff // RFC 7323 2.2: a SYN's window is never scaled
	}
	t.Encode(&header.TCPFields{
		SrcPort:    c.sport,
		DstPort:    e.cfg.SrvPort,
		SeqNum:     seq,
		AckNum:     ack,
		DataOffset: uint8(tcpLen),
		Flags:      flags,
		WindowSize: win,
	})
	if syn {
		o := t[header.TCPMinimumSize:]
		n := header.EncodeMSSOption(uint32(e.cfg.MSS), o)
		o[n] = header.TCPOptionNOP
		header.EncodeWSOption(rcvWScale, o[n+1:])
	}
	copy(t[tcpLen:], data)
	sum := e.reqSum
	if len(data) != len(e.cfg.Request) {
		sum = checksum.Checksum(data, 0)
	}
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(tcpLen+len(data)))
	xsum = checksum.Combine(xsum, sum)
	t.SetChecksum(^t.CalculateChecksum(xsum))
	e.tx.Send(b)
}

// ether writes the Ethernet header of a frame from us to dst.
func (e *Engine) ether(b, dst []byte, typ tcpip.NetworkProtocolNumber) {
	header.Ethernet(b).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(e.cfg.MAC[:]),
		DstAddr: tcpip.LinkAddress(dst),
		Type:    typ,
	})
}

// arp answers requests for our addresses (RFC 826) and learns the server's
// MAC address from any ARP packet it sends.
func (e *Engine) arp(frame []byte) {
	a := header.ARP(frame[header.EthernetMinimumSize:])
	spa := addrOf(a.ProtocolAddressSender())
	if spa == e.server {
		copy(e.srvMAC[:], a.HardwareAddressSender())
		e.haveMAC = true
	}
	if a.Op() != header.ARPRequest {
		return
	}
	tpa := addrOf(a.ProtocolAddressTarget())
	for _, s := range e.srcs {
		if s != tpa {
			continue
		}
		buf := e.tx.Buf()
		if buf == nil {
			e.Counts.TxNoBuffer++
			return
		}
		b := buf[:header.EthernetMinimumSize+header.ARPSize]
		header.Ethernet(b).Encode(&header.EthernetFields{
			SrcAddr: tcpip.LinkAddress(e.cfg.MAC[:]),
			DstAddr: tcpip.LinkAddress(a.HardwareAddressSender()),
			Type:    header.ARPProtocolNumber,
		})
		r := header.ARP(b[header.EthernetMinimumSize:])
		r.SetIPv4OverEthernet()
		r.SetOp(header.ARPReply)
		copy(r.HardwareAddressSender(), e.cfg.MAC[:])
		copy(r.ProtocolAddressSender(), s.AsSlice())
		copy(r.HardwareAddressTarget(), a.HardwareAddressSender())
		copy(r.ProtocolAddressTarget(), spa.AsSlice())
		e.tx.Send(b)
		return
	}
}

func (e *Engine) arpRequest() {
	buf := e.tx.Buf()
	if buf == nil {
		e.Counts.TxNoBuffer++
		return
	}
	b := buf[:header.EthernetMinimumSize+header.ARPSize]
	e.ether(b, []byte(header.EthernetBroadcastAddress), header.ARPProtocolNumber)
	r := header.ARP(b[header.EthernetMinimumSize:])
	r.SetIPv4OverEthernet()
	r.SetOp(header.ARPRequest)
	copy(r.HardwareAddressSender(), e.cfg.MAC[:])
	copy(r.ProtocolAddressSender(), e.srcs[0].AsSlice())
	clear(r.HardwareAddressTarget())
	copy(r.ProtocolAddressTarget(), e.server.AsSlice())
	e.tx.Send(b)
}
