package stack

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/xstack/xstack/nic"
	"github.com/xstack/xstack/stack/packet"
)

// LinkStats are the link endpoint's counters.
type LinkStats struct {
	RxFrames uint64 // frames handed to gVisor
	// RxMalformed are frames too short for an Ethernet header, and
	// frames of several buffers (a multi-buffer queue's chains) longer
	// than the MTU the stack started with allows.
	RxMalformed uint64
	RxNotForUs  uint64 // unicast frames for another MAC address
	RxUnknown   uint64 // frames of an EtherType the stack does not speak
	RxSynFin    uint64 // TCP segments with both SYN and FIN, dropped
	// RxBadChecksum are frames with a wrong IPv4 header, TCP or UDP
	// checksum, dropped before gVisor (which skips those checks).
	RxBadChecksum uint64
	// GROMerged are frames GRO merged into the segment before them: gVisor
	// received RxFrames-GROMerged packets.
	GROMerged uint64
	// GSOPackets are TCP packets of more than one segment gVisor handed
	// the endpoint (GSO), cut into GSOFrames frames.
	GSOPackets, GSOFrames uint64
	// The SYN-flood guard (net.inet.tcp.syn_guard): times it engaged,
	// first SYNs it dropped, and retransmitted SYNs it let through.
	SynGuardEngaged, SynGuardDropped, SynGuardPassed uint64
	TxFrames                                         uint64 // frames written to the queue
	TxDropped                                        uint64 // frames the queue did not accept, or too large
	AcksElided                                       uint64 // pure ACKs superseded in the same batch and not sent
	FinsJoined                                       uint64 // FINs sent on the data segment before them, not alone
	// ZeroWindowAcks are pure ACKs made from segments beyond a zero
	// receive window, so that gVisor takes their acknowledgment.
	ZeroWindowAcks uint64
	// TIME-WAIT in the link endpoint (timewait.go): connections that
	// entered it, ACKs it answered segments with, connections it ended
	// early to make room, and connections it holds now.
	TimeWaitEntered, TimeWaitAcks, TimeWaitEvicted, TimeWaitHeld uint64
}

// endpoint is the gVisor link endpoint over one nic.Queue. It speaks
// Ethernet itself: deliver strips the header, AddHeader writes it.
//
// RX runs only on the lcore loop (deliver). TX (WritePackets) is called by
// the loop and by gVisor's goroutines; txMu serialises it with flush.
//
// TX builds each frame once, in a buffer the queue lends (a UMEM frame on
// AF_XDP): WritePackets copies gVisor's packet into it, and flush edits
// the batch in place (FIN joining), submits the frames to send and gives
// the elided ones back. Between a WritePackets and the next flush the
// endpoint holds the batch's buffers and a few spare ones, never more
// than the batch size (on a multi-buffer queue, whose frames may span
// several buffers, txchain.go, the buffers of that many frames); after a
// flush it holds none.
type endpoint struct {
	q   nic.Queue
	mtu atomic.Uint32
	mac tcpip.LinkAddress
	// mac6 is mac as an array, which compares with a frame's destination
	// in two loads, where a string compare is a call.
	mac6 [header.EthernetAddressSize]byte

	dispatcher gvstack.NetworkDispatcher // set by Attach before any deliver

	// rxView holds the frame deliverChain is delivering, joined from the
	// buffers of its chain into gVisor memory; dispatch hands it to
	// gVisor as the packet's payload instead of copying the frame again.
	// nil outside deliverChain. Only the lcore loop touches it.
	rxView *buffer.View

	// maxFrame is the largest frame sent: the MTU the stack started
	// with plus the Ethernet header.
	maxFrame int

	// csum is the queue's TX checksum offload, nil where it has none;
	// fixed at creation (txcsum.go).
	csum nic.TxChecksumOffloader

	txMu sync.Mutex
	// txBatch[:txN] are the frames waiting for flush, each in a buffer
	// lent by the queue; len(txBatch) is the batch size. +checklocks:txMu
	txBatch [][]byte
	txN     int // +checklocks:txMu
	// txSpare[txSpareAt:txSpareN] are buffers lent by the queue and not
	// used yet; flush gives them back. +checklocks:txMu
	txSpare             [][]byte
	txSpareAt, txSpareN int
	txOut               [][]byte // frames passed to TxSubmit; scratch of flush. +checklocks:txMu
	txBack              [][]byte // buffers given back unsent; scratch of flush. +checklocks:txMu
	txClosed            bool     // +checklocks:txMu; set by closeTx

	// Frames of several buffers, on a multi-buffer queue (mq, nil on
	// any other; maxSegs is the most buffers it sends as one frame): a
	// frame larger than a lent buffer is written across as many as it
	// needs (txchain.go). txBatch holds its first buffer, txMore[i] the
	// number of further buffers of batch frame i, which wait in txExtra
	// in batch order, txSize[i] its size (0 for a frame of one buffer;
	// ACK elision reads it), and txChains counts the batch's frames of
	// more than one buffer. txChain holds the buffers of the frame being
	// written; txSubmit and txSegs are flush's scratch for
	// TxSubmitPackets. +checklocks:txMu
	mq       nic.MultiBufferQueue
	maxSegs  int
	txMore   []int
	txSize   []int
	txExtra  [][]byte
	txChains int
	txChain  [][]byte
	txSubmit [][]byte
	txSegs   []int

	elide ackElider
	pcap  pcapTap // capture of RX and TX frames; see pcap.go
	guard synGuard
	zw    zeroWindow // ACKs beyond a zero window; see zerowindow.go
	tw    timeWait   // connections in TIME-WAIT; see timewait.go
	rx    rxOffload  // GRO and receive checksums; see gro.go
	tx    txOffload  // GSO; see gso.go

	rxFrames, rxMalformed, rxNotForUs, rxUnknown, rxSynFin atomic.Uint64
	txFrames, txDropped, acksElided, finsJoined            atomic.Uint64
}

var _ gvstack.LinkEndpoint = (*endpoint)(nil)

func newEndpoint(q nic.Queue, mtu, batch int) *endpoint {
	e := &endpoint{q: q, mac: tcpip.LinkAddress(q.HardwareAddr())}
	copy(e.mac6[:], e.mac)
	e.mtu.Store(uint32(mtu))
	e.maxFrame = mtu + header.EthernetMinimumSize
	e.csum = txChecksumOffload(q)
	e.txBatch = make([][]byte, batch)
	e.txSpare = make([][]byte, batch)
	e.txOut = make([][]byte, 0, batch)
	e.txBack = make([][]byte, 0, 2*batch)
	e.elide.init(batch)
	e.elide.partial = e.csum != nil
	e.rx.init(e)
	if mq, ok := q.(nic.MultiBufferQueue); ok && mq.MultiBuffer() {
		e.mq, e.maxSegs = mq, mq.MaxTxSegments()
		e.txMore = make([]int, batch)
		e.txSize = make([]int, batch)
		e.elide.sizes = e.txSize
		e.txExtra = make([][]byte, 0, batch*(e.maxSegs-1))
		e.txChain = make([][]byte, 0, e.maxSegs)
		e.txSubmit = make([][]byte, 0, batch*e.maxSegs)
		e.txSegs = make([]int, 0, batch)
	}
	return e
}

// deliver hands frame to gVisor; p holds its parsed headers.
func (e *endpoint) deliver(frame []byte, p *packet.Parsed) {
	if e.dispatcher == nil {
		return // the stack is closed
	}
	e.pcap.rx(frame)
	if p.Flags&packet.Ether == 0 {
		e.rxMalformed.Add(1)
		return
	}
	dst := frame[:6]
	// Unicast frames for another station can reach the queue when the
	// XDP program passes everything; the stack must not answer them.
	if dst[0]&1 == 0 && [header.EthernetAddressSize]byte(dst) != e.mac6 {
		e.rxNotForUs.Add(1)
		return
	}
	proto := p.Network()
	switch proto {
	case header.IPv4ProtocolNumber, header.IPv6ProtocolNumber, header.ARPProtocolNumber:
	default:
		e.rxUnknown.Add(1)
		return
	}
	// Before anything reads the TCP header: a corrupted segment must not
	// reach the SYN guard or the zero-window rescue either.
	ok, validated := rxChecksums(frame, p)
	if !ok {
		e.rx.badChecksum.Add(1)
		return
	}
	// The endpoint reads a TCP header before gVisor does: a segment with
	// both SYN and FIN is dropped (no TCP state takes it as sent: Linux
	// discards it in LISTEN, FreeBSD has net.inet.tcp.drop_synfin, gVisor
	// would answer it as a SYN), and SYNs go through the SYN-flood guard.
	// Both apply to a first fragment too, whose TCP header is all there
	// is to read before reassembly, so that fragmenting does not get a
	// segment past them.
	if p.Flags&packet.TCP != 0 {
		switch flags := uint8(p.TCPFlags); {
		case flags&synFinFlags == synFinFlags:
			e.rxSynFin.Add(1)
			return
		case flags&synAckFlags == uint8(header.TCPFlagSyn) && e.guard.check(frame, p):
			return // counted by the guard
		}
		if e.tw.used.Load() != 0 {
			if consumed, answer, a := e.tw.rx(frame, p); consumed {
				if answer {
					e.sendTimeWaitAck(frame, p, a)
				}
				return
			}
		}
		if e.zw.active() {
			if ack := e.zw.rescue(frame, p); ack != nil {
				// Made here with its checksums right.
				e.dispatch(ack, dst, proto, true)
			}
		}
	}
	e.dispatch(frame, dst, proto, validated)
}

// deliverChain hands gVisor a frame that arrived in several buffers of a
// multi-buffer queue, chain, in order. The buffers are copied once, into
// one view of gVisor memory, which becomes the packet's payload: the frame
// is then contiguous, so that it goes through every check deliver makes
// (and GRO) as a one-buffer frame does, and gVisor is handed the same
// single-view packet; gVisor must have its own copy in any case, since
// the buffers return to the NIC with the next burst. A chain longer than
// the MTU the stack started with allows is counted as malformed and
// dropped. p receives the frame's parsed headers.
func (e *endpoint) deliverChain(chain [][]byte, p *packet.Parsed) {
	if e.dispatcher == nil {
		return
	}
	size := chainLen(chain)
	if size > e.maxFrame {
		e.rxMalformed.Add(1)
		return
	}
	v := buffer.NewView(size)
	for _, b := range chain {
		v.Write(b)
	}
	frame := v.AsSlice()
	packet.Parse(frame, p)
	e.rxView = v
	e.deliver(frame, p)
	if e.rxView != nil {
		// Dropped before dispatch.
		e.rxView = nil
		v.Release()
	}
}

// dispatch hands an Ethernet frame, whose destination MAC is dst, to
// gVisor, through GRO when validated says the endpoint checked its
// checksums. The frame is copied, unless it is the one deliverChain
// already copied into gVisor memory (rxView).
func (e *endpoint) dispatch(frame, dst []byte, proto tcpip.NetworkProtocolNumber, validated bool) {
	var payload buffer.Buffer
	if v := e.rxView; v != nil && &frame[0] == &v.AsSlice()[0] {
		payload = buffer.MakeWithView(v)
		e.rxView = nil
	} else {
		payload = buffer.MakeWithData(frame)
	}
	pkt := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{
		Payload: payload,
	})
	pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	pkt.NetworkProtocolNumber = proto
	switch {
	case string(dst) == string(header.EthernetBroadcastAddress):
		pkt.PktType = tcpip.PacketBroadcast
	case dst[0]&1 != 0:
		pkt.PktType = tcpip.PacketMulticast
	default:
		pkt.PktType = tcpip.PacketHost
	}
	e.rxFrames.Add(1)
	e.enqueue(pkt, validated)
	pkt.DecRef()
}

const (
	synFinFlags = uint8(header.TCPFlagSyn | header.TCPFlagFin)
	synAckFlags = uint8(header.TCPFlagSyn | header.TCPFlagAck)
)

// WritePackets implements gvstack.LinkEndpoint. Each packet is copied into
// a buffer the queue lent, where it is sent from; a TCP packet of more
// than one segment (GSO, gso.go) is cut into frames on the way. A full
// batch is flushed at once.
func (e *endpoint) WritePackets(pkts gvstack.PacketBufferList) (int, tcpip.Error) {
	e.txMu.Lock()
	defer e.txMu.Unlock()
	n := 0
	list := pkts.AsSlice()
	for i, pkt := range list {
		if e.writePacketLocked(pkt, len(list)-i) {
			n++
		}
	}
	return n, nil
}

// writePacketLocked copies pkt into the batch, reserving buffers for the
// more packets that follow it in the caller's list, and says whether it
// was queued. A packet that cannot be is counted as dropped: gVisor
// retransmits what it lost. +checklocks:txMu
func (e *endpoint) writePacketLocked(pkt *gvstack.PacketBuffer, more int) bool {
	if isHostGSO(pkt) {
		return e.writeTCPLocked(pkt, more)
	}
	size := pkt.Size()
	if size > e.maxFrame {
		e.txDropped.Add(1)
		return false
	}
	buf := e.txBufLocked(more)
	if buf == nil || size > cap(buf) {
		if buf != nil && e.mq != nil {
			return e.writeChainLocked(pkt, buf, size, more)
		}
		// No buffer free even after a flush (every frame is out with
		// the kernel), or the queue's frames are smaller than the MTU.
		if buf != nil {
			e.txSpareAt--
		}
		e.txDropped.Add(1)
		return false
	}
	buf = buf[:size]
	copyFrom(buf, pkt, 0)
	if e.csum != nil {
		buf = e.requestTxChecksum(buf)
	}
	e.txBatch[e.txN] = buf
	e.txN++
	return true
}

// qdisc is the NIC's queueing discipline: it hands each packet straight
// to the endpoint. gVisor sends nearly every packet one at a time, and its
// default discipline wraps each in a list that escapes through the
// WritePackets interface call, an allocation per packet sent.
type qdisc struct{ e *endpoint }

// WritePacket implements gvstack.QueueingDiscipline. Like WritePackets, it
// reports no error for a packet it drops (the drop is counted).
func (q qdisc) WritePacket(pkt *gvstack.PacketBuffer) tcpip.Error {
	e := q.e
	e.txMu.Lock()
	e.writePacketLocked(pkt, 1)
	e.txMu.Unlock()
	return nil
}

// Close implements gvstack.QueueingDiscipline; the endpoint's queue is
// closed with the stack (closeTx).
func (qdisc) Close() {}

// txBufLocked returns a buffer for the next frame of the batch, flushing
// a full batch first: a spare one, or one of those it reserves for the
// next want frames. A caller that does not use it puts it back with
// txSpareAt--. nil means the queue has none free. +checklocks:txMu
func (e *endpoint) txBufLocked(want int) []byte {
	if e.txN == len(e.txBatch) {
		e.flushLocked()
	}
	if e.txSpareAt < e.txSpareN {
		e.txSpareAt++
		return e.txSpare[e.txSpareAt-1]
	}
	return e.txReserveLocked(want)
}

// txReserveMin is the fewest buffers the endpoint asks the queue for at a
// time: gVisor often writes one packet per call, and one TxReserve for
// several of them saves taking the queue's lock per packet.
const txReserveMin = 8

// txReserveLocked takes spare buffers from the queue, once those it had
// are used up: enough for the next want packets, within the batch. It
// returns the first, or nil if the queue has none free even after the
// batch is flushed to make room. +checklocks:txMu
func (e *endpoint) txReserveLocked(want int) []byte {
	if e.txClosed {
		return nil
	}
	e.txSpareAt = 0
	e.txSpareN = e.q.TxReserve(e.txSpare[:min(len(e.txBatch)-e.txN, max(want, txReserveMin))])
	if e.txSpareN == 0 && e.txN > 0 {
		// Every free frame is in this batch or out with the kernel:
		// send the batch, which gives the kernel work and lets the
		// queue reap what it has finished.
		e.flushLocked()
		e.txSpareN = e.q.TxReserve(e.txSpare[:min(len(e.txBatch), max(want, txReserveMin))])
	}
	if e.txSpareN == 0 {
		return nil
	}
	e.txSpareAt = 1
	return e.txSpare[0]
}

// flush sends the batch, once a pass, and ends the TIME-WAIT of the
// connections whose 2*MSL is over.
func (e *endpoint) flush() int {
	e.txMu.Lock()
	n := e.flushLocked()
	e.txMu.Unlock()
	e.tw.expire()
	return n
}

// flushLocked submits the batch to the queue and gives back every other
// buffer it holds. Pure ACKs that a later frame of the same flow in the
// batch supersedes, and FINs joined to the data before them, are not sent.
// +checklocks:txMu
func (e *endpoint) flushLocked() int {
	back := e.txBack[:0]
	sent := 0
	if e.txN > 0 {
		frames := e.txBatch[:e.txN]
		var out [][]byte
		out, back = e.elide.filter(frames, e.txOut[:0], back)
		e.zw.sent(e.elide.meta[:len(frames)])
		e.tw.sent(frames, e.elide.meta[:len(frames)])
		if d := len(frames) - len(out) - e.elide.fins; d > 0 {
			e.acksElided.Add(uint64(d))
		}
		if e.elide.fins > 0 {
			e.finsJoined.Add(uint64(e.elide.fins))
		}
		// TxSubmit takes every buffer back; an error (a closed
		// queue) leaves nothing to send.
		if e.txChains > 0 {
			sent, back = e.submitChainsLocked(frames, out, back)
		} else {
			sent, _ = e.q.TxSubmit(out)
			// The sent frames are unchanged until the queue lends
			// their buffers again, which needs txMu.
			e.pcap.tx(out[:sent])
		}
		e.txFrames.Add(uint64(sent))
		if sent < len(out) {
			e.txDropped.Add(uint64(len(out) - sent))
		}
		e.txN = 0
	}
	back = append(back, e.txSpare[e.txSpareAt:e.txSpareN]...)
	if len(back) > 0 {
		_ = e.q.TxRelease(back) // only a closed queue refuses, and then owns nothing
	}
	// The slices left in txBatch, txOut, txBack and txSpare point into
	// the queue's memory, not the Go heap, and are overwritten before
	// they are read again: clearing them would cost a write barrier each.
	e.txSpareAt, e.txSpareN = 0, 0
	return sent
}

// closeTx makes the endpoint stop taking buffers from the queue, so that
// the queue can be closed (its UMEM unmapped) once the frames still in the
// batch are flushed. gVisor's writes after it are dropped.
func (e *endpoint) closeTx() {
	e.txMu.Lock()
	defer e.txMu.Unlock()
	e.txClosed = true
	if e.txSpareAt < e.txSpareN {
		_ = e.q.TxRelease(e.txSpare[e.txSpareAt:e.txSpareN])
		e.txSpareAt, e.txSpareN = 0, 0
	}
}

func (e *endpoint) stats() LinkStats {
	// delivered first: a frame is counted in rxFrames before GRO lets it
	// go, so the difference cannot go below zero.
	delivered := e.rx.delivered.Load()
	frames := e.rxFrames.Load()
	return LinkStats{
		RxFrames:      frames,
		RxMalformed:   e.rxMalformed.Load(),
		RxNotForUs:    e.rxNotForUs.Load(),
		RxUnknown:     e.rxUnknown.Load(),
		RxSynFin:      e.rxSynFin.Load(),
		RxBadChecksum: e.rx.badChecksum.Load(),
		GROMerged:     frames - delivered,
		GSOPackets:    e.tx.packets.Load(),
		GSOFrames:     e.tx.frames.Load(),

		SynGuardEngaged: e.guard.engaged.Load(),
		SynGuardDropped: e.guard.dropped.Load(),
		SynGuardPassed:  e.guard.passed.Load(),
		TxFrames:        e.txFrames.Load(),
		TxDropped:       e.txDropped.Load(),
		AcksElided:      e.acksElided.Load(),
		FinsJoined:      e.finsJoined.Load(),
		ZeroWindowAcks:  e.zw.acks.Load(),

		TimeWaitEntered: e.tw.entered.Load(),
		TimeWaitAcks:    e.tw.acks.Load(),
		TimeWaitEvicted: e.tw.evicted.Load(),
		TimeWaitHeld:    uint64(e.tw.held.Load()),
	}
}

// MTU implements gvstack.LinkEndpoint.
func (e *endpoint) MTU() uint32 { return e.mtu.Load() }

// SetMTU implements gvstack.LinkEndpoint. The stack's frames are bounded by
// the MTU it started with, so the MTU can only shrink.
func (e *endpoint) SetMTU(mtu uint32) {
	if int(mtu)+header.EthernetMinimumSize <= e.maxFrame {
		e.mtu.Store(mtu)
	}
}

// MaxHeaderLength implements gvstack.LinkEndpoint.
func (*endpoint) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements gvstack.LinkEndpoint.
func (e *endpoint) LinkAddress() tcpip.LinkAddress { return e.mac }

// SetLinkAddress implements gvstack.LinkEndpoint. The MAC address is the
// NIC's and does not change.
func (*endpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements gvstack.LinkEndpoint. TX checksum offload is
// reported where the queue completes TCP and UDP checksums (txcsum.go);
// elsewhere gVisor computes every sent checksum. RX checksum offload is
// reported while the packets being handed to gVisor are ones whose
// checksums the endpoint checked (gro.go): gVisor reads it for every
// packet it receives.
func (e *endpoint) Capabilities() gvstack.LinkEndpointCapabilities {
	caps := gvstack.CapabilityResolutionRequired
	if e.csum != nil {
		caps |= gvstack.CapabilityTXChecksumOffload
	}
	if e.rx.validated.Load() {
		caps |= gvstack.CapabilityRXChecksumOffload
	}
	return caps
}

// Attach implements gvstack.LinkEndpoint.
func (e *endpoint) Attach(d gvstack.NetworkDispatcher) { e.dispatcher = d }

// IsAttached implements gvstack.LinkEndpoint.
func (e *endpoint) IsAttached() bool { return e.dispatcher != nil }

// Wait implements gvstack.LinkEndpoint. The endpoint has no goroutines.
func (*endpoint) Wait() {}

// ARPHardwareType implements gvstack.LinkEndpoint.
func (*endpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements gvstack.LinkEndpoint.
func (e *endpoint) AddHeader(pkt *gvstack.PacketBuffer) {
	src := pkt.EgressRoute.LocalLinkAddress
	if src == "" {
		src = e.mac
	}
	eth := header.Ethernet(pkt.LinkHeader().Push(header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{
		SrcAddr: src,
		DstAddr: pkt.EgressRoute.RemoteLinkAddress,
		Type:    pkt.NetworkProtocolNumber,
	})
}

// ParseHeader implements gvstack.LinkEndpoint, for packets that carry their
// link header in the payload (packet sockets). Received frames do not come
// this way: deliver consumes their header itself.
func (*endpoint) ParseHeader(pkt *gvstack.PacketBuffer) bool {
	_, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	return ok
}

// Close implements gvstack.LinkEndpoint. The queue belongs to the lcore,
// which closes it after the stack.
func (*endpoint) Close() {}

// SetOnCloseAction implements gvstack.LinkEndpoint.
func (*endpoint) SetOnCloseAction(func()) {}
