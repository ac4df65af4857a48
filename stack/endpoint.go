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
	RxFrames    uint64 // frames handed to gVisor
	RxMalformed uint64 // frames too short for an Ethernet header
	RxNotForUs  uint64 // unicast frames for another MAC address
	RxUnknown   uint64 // frames of an EtherType the stack does not speak
	RxSynFin    uint64 // TCP segments with both SYN and FIN, dropped
	// RxBadChecksum are frames with a wrong IPv4 header, TCP or UDP
	// checksum, dropped before gVisor (which skips those checks).
	RxBadChecksum uint64
	// GROMerged are frames GRO merged into the segment before them: gVisor
	// received RxFrames-GROMerged packets.
	GROMerged uint64
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
}

// endpoint is the gVisor link endpoint over one nic.Queue. It speaks
// Ethernet itself: deliver strips the header, AddHeader writes it.
//
// RX runs only on the lcore loop (deliver). TX (WritePackets) is called by
// the loop and by gVisor's goroutines; txMu serialises it with flush.
type endpoint struct {
	q   nic.Queue
	mtu atomic.Uint32
	mac tcpip.LinkAddress
	// mac6 is mac as an array, which compares with a frame's destination
	// in two loads, where a string compare is a call.
	mac6 [header.EthernetAddressSize]byte

	dispatcher gvstack.NetworkDispatcher // set by Attach before any deliver

	txMu sync.Mutex
	// txBufs are the batch's frame buffers, each MTU+header bytes; the
	// first txN hold frames waiting for flush. +checklocks:txMu
	txBufs [][]byte
	txN    int      // +checklocks:txMu
	txOut  [][]byte // frames passed to the queue; scratch of flush. +checklocks:txMu
	elide  ackElider
	pcap   pcapTap // capture of RX and TX frames; see pcap.go
	guard  synGuard
	zw     zeroWindow // ACKs beyond a zero window; see zerowindow.go
	rx     rxOffload  // GRO and receive checksums; see gro.go

	rxFrames, rxMalformed, rxNotForUs, rxUnknown, rxSynFin atomic.Uint64
	txFrames, txDropped, acksElided, finsJoined            atomic.Uint64
}

var _ gvstack.LinkEndpoint = (*endpoint)(nil)

func newEndpoint(q nic.Queue, mtu, batch int) *endpoint {
	e := &endpoint{q: q, mac: tcpip.LinkAddress(q.HardwareAddr())}
	copy(e.mac6[:], e.mac)
	e.mtu.Store(uint32(mtu))
	size := mtu + header.EthernetMinimumSize
	backing := make([]byte, size*batch)
	e.txBufs = make([][]byte, batch)
	for i := range e.txBufs {
		e.txBufs[i] = backing[i*size : (i+1)*size : (i+1)*size]
	}
	e.txOut = make([][]byte, 0, batch)
	e.elide.init(batch)
	e.rx.init(e)
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
		if e.zw.active() {
			if ack := e.zw.rescue(frame, p); ack != nil {
				// Made here with its checksums right.
				e.dispatch(ack, dst, proto, true)
			}
		}
	}
	e.dispatch(frame, dst, proto, validated)
}

// dispatch hands an Ethernet frame, whose destination MAC is dst, to
// gVisor, through GRO when validated says the endpoint checked its
// checksums. The frame is copied.
func (e *endpoint) dispatch(frame, dst []byte, proto tcpip.NetworkProtocolNumber, validated bool) {
	pkt := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{
		Payload: buffer.MakeWithData(frame),
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

// WritePackets implements gvstack.LinkEndpoint. Packets are copied into the
// TX batch; a full batch is written to the queue at once.
func (e *endpoint) WritePackets(pkts gvstack.PacketBufferList) (int, tcpip.Error) {
	e.txMu.Lock()
	defer e.txMu.Unlock()
	n := 0
	for _, pkt := range pkts.AsSlice() {
		if e.txN == len(e.txBufs) {
			e.flushLocked()
		}
		buf := e.txBufs[e.txN]
		size := pkt.Size()
		if size > len(buf) {
			e.txDropped.Add(1)
			continue
		}
		copyPacket(buf, pkt)
		e.txBufs[e.txN] = buf[:size]
		e.txN++
		n++
	}
	return n, nil
}

// copyPacket copies pkt's bytes into dst without allocating.
func copyPacket(dst []byte, pkt *gvstack.PacketBuffer) {
	vl, off := pkt.AsViewList()
	n := 0
	for v := vl.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		n += copy(dst[n:], b[off:])
		off = 0
	}
}

func (e *endpoint) flush() int {
	e.txMu.Lock()
	defer e.txMu.Unlock()
	return e.flushLocked()
}

// flushLocked writes the batch to the queue. Pure ACKs that a later frame of
// the same flow in the batch supersedes are left out. +checklocks:txMu
func (e *endpoint) flushLocked() int {
	if e.txN == 0 {
		return 0
	}
	frames := e.txBufs[:e.txN]
	out := e.elide.filter(frames, e.txOut[:0])
	e.zw.sent(e.elide.meta[:len(frames)])
	if d := len(frames) - len(out) - e.elide.fins; d > 0 {
		e.acksElided.Add(uint64(d))
	}
	if e.elide.fins > 0 {
		e.finsJoined.Add(uint64(e.elide.fins))
	}
	sent, _ := e.q.Tx(out)
	e.pcap.tx(out[:sent])
	e.txFrames.Add(uint64(sent))
	if sent < len(out) {
		e.txDropped.Add(uint64(len(out) - sent))
	}
	// Give every buffer its full capacity back.
	for i := range frames {
		frames[i] = frames[i][:cap(frames[i])]
	}
	e.txN = 0
	return sent
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

		SynGuardEngaged: e.guard.engaged.Load(),
		SynGuardDropped: e.guard.dropped.Load(),
		SynGuardPassed:  e.guard.passed.Load(),
		TxFrames:        e.txFrames.Load(),
		TxDropped:       e.txDropped.Load(),
		AcksElided:      e.acksElided.Load(),
		FinsJoined:      e.finsJoined.Load(),
		ZeroWindowAcks:  e.zw.acks.Load(),
	}
}

// MTU implements gvstack.LinkEndpoint.
func (e *endpoint) MTU() uint32 { return e.mtu.Load() }

// SetMTU implements gvstack.LinkEndpoint. The TX buffers were sized for the
// configured MTU, so it can only shrink.
func (e *endpoint) SetMTU(mtu uint32) {
	if int(mtu)+header.EthernetMinimumSize <= cap(e.txBufs[0]) {
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

// Capabilities implements gvstack.LinkEndpoint. gVisor computes every sent
// checksum. RX checksum offload is reported while the packets being handed
// to gVisor are ones whose checksums the endpoint checked (gro.go): gVisor
// reads it for every packet it receives.
func (e *endpoint) Capabilities() gvstack.LinkEndpointCapabilities {
	caps := gvstack.CapabilityResolutionRequired
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
