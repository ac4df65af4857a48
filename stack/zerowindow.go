package stack

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/stack/packet"
)

// gVisor tests a segment's sequence number against the window it last
// advertised, rounded down to the window scale, before it looks at the
// acknowledgment field; a segment that fails is dropped whole. With a zero
// window only a segment that starts exactly at RCV.NXT and carries no data
// passes, and RFC 9293 3.10.7.4 asks for the ACK of the others to be
// processed all the same. gVisor does not, and that can wedge a connection
// for good:
//
//  1. the application stops reading while its own writes wait for send
//     buffer space, and the receive buffer fills;
//  2. gVisor refuses a segment inside the window it advertised (its
//     buffer memory, counted with per-segment overhead, ran out first),
//     and the window it advertises next rounds down to zero;
//  3. the peer's later segments all start past RCV.NXT: its pure ACKs sit
//     at its SND.NXT, beyond the refused bytes. gVisor drops them and
//     never learns that the peer has its data; the send buffer stays
//     full, the application stays blocked, the window stays shut.
//
// The link endpoint mends this below gVisor. It watches the segments gVisor
// sends: while a flow's latest one advertises a zero window, it remembers
// the acknowledgment number it carried (gVisor's RCV.NXT, which cannot move
// while the window is shut). A segment of that flow that gVisor would
// refuse (data, or a sequence number other than RCV.NXT) is handed to
// gVisor twice: first as a pure ACK at RCV.NXT with the segment's
// acknowledgment, window and options, which gVisor takes, then as it came,
// so that gVisor still answers it (a zero-window probe needs that answer).
// A pure ACK is made once per distinct acknowledgment and window, so that
// repeated probes do not turn into duplicate ACKs. Flows with an open
// window cost the receive path nothing.
type zeroWindow struct {
	mu sync.Mutex
	// flows are the flows whose last segment from the stack advertised a
	// zero window, by the key of that segment (stack's address and port
	// first). +checklocks:mu
	flows map[flowKey]zeroWindowFlow
	// n is len(flows), read by the receive path without the lock.
	n atomic.Int32

	acks atomic.Uint64 // pure ACKs made

	// scratch holds the pure ACK being made; the receive path only.
	scratch []byte
}

type zeroWindowFlow struct {
	rcvNxt uint32 // acknowledgment number of the stack's zero-window segment
	// made says whether a pure ACK was made for this flow, with the peer's
	// acknowledgment number ack and window field win.
	made bool
	ack  uint32
	win  uint16
}

// maxZeroWindowFlows bounds the table. A flow beyond it is not tracked (a
// random one is dropped to make room), and gets gVisor's behaviour.
const maxZeroWindowFlows = 4096

// sent records the segments of one TX batch, in order, by their segMeta.
func (z *zeroWindow) sent(meta []segMeta) {
	for i := range meta {
		m := &meta[i]
		if !m.tcp && !m.rst {
			continue
		}
		shut := m.tcp && m.win == 0 && !m.syn
		if !shut && z.n.Load() == 0 {
			continue
		}
		z.mu.Lock()
		if shut {
			f, ok := z.flows[m.flow]
			if !ok && len(z.flows) >= maxZeroWindowFlows {
				for k := range z.flows {
					delete(z.flows, k)
					break
				}
			}
			if z.flows == nil {
				z.flows = make(map[flowKey]zeroWindowFlow)
			}
			if f.rcvNxt != m.ack {
				f = zeroWindowFlow{rcvNxt: m.ack}
			}
			z.flows[m.flow] = f
		} else {
			delete(z.flows, m.flow)
		}
		z.n.Store(int32(len(z.flows)))
		z.mu.Unlock()
	}
}

// replyFlow is the key of the flow of a received TCP segment, frame with
// its parsed headers p, as the stack's own segments of that flow name it
// (segMeta): the stack's address and port first.
func replyFlow(frame []byte, p *packet.Parsed) flowKey {
	var key flowKey
	src, dst := p.Addrs(frame)
	key.n = uint8(copy(key.b[:], dst))
	key.n += uint8(copy(key.b[key.n:], src))
	binary.BigEndian.PutUint16(key.b[key.n:], p.DstPort)
	binary.BigEndian.PutUint16(key.b[key.n+2:], p.SrcPort)
	return key
}

// active reports whether any flow is behind a zero window: only then can
// rescue make a pure ACK. It inlines into the receive path, which flows
// with open windows then pass for one load.
func (z *zeroWindow) active() bool { return z.n.Load() != 0 }

// rescue returns the pure ACK to hand to gVisor before frame, or nil. p
// holds frame's parsed headers, a TCP segment's. The result is valid
// until the next call.
func (z *zeroWindow) rescue(frame []byte, p *packet.Parsed) []byte {
	if z.n.Load() == 0 {
		return nil
	}
	// A fragment is left to gVisor: a pure ACK made of its headers would
	// be a fragment too, of a datagram that never completes.
	if p.Flags&(packet.TCP|packet.Fragment) != packet.TCP {
		return nil
	}
	if p.TCPFlags&header.TCPFlagAck == 0 || p.TCPFlags&(header.TCPFlagSyn|header.TCPFlagRst) != 0 {
		return nil
	}
	ipHdr, doff := p.IPHeaderLen(), int(p.TCPHdrLen)
	key := replyFlow(frame, p)
	seq, ack, win := p.Seq, p.Ack, p.Window
	data := p.TCPPayloadLen()

	z.mu.Lock()
	f, ok := z.flows[key]
	if !ok || (data == 0 && seq == f.rcvNxt) || (f.made && f.ack == ack && f.win == win) {
		z.mu.Unlock()
		return nil // not shut, acceptable as it is, or already told
	}
	f.made, f.ack, f.win = true, ack, win
	z.flows[key] = f
	z.mu.Unlock()

	// Ethernet, IP and TCP headers of frame, without data, at RCV.NXT,
	// with ACK the only flag.
	hdrs := header.EthernetMinimumSize + ipHdr + doff
	if cap(z.scratch) < hdrs {
		z.scratch = make([]byte, header.EthernetMinimumSize+header.IPv4MaximumHeaderSize+header.TCPHeaderMaximumSize)
	}
	b := z.scratch[:copy(z.scratch[:hdrs], frame[:hdrs])]
	ip := b[header.EthernetMinimumSize:]
	t := header.TCP(ip[ipHdr:])
	t.SetSequenceNumber(f.rcvNxt)
	t.SetFlags(uint8(header.TCPFlagAck))
	t.SetChecksum(0)
	var src, dst tcpip.Address
	if p.Flags&packet.IPv4 != 0 {
		v4 := header.IPv4(ip)
		v4.SetTotalLength(uint16(ipHdr + doff))
		v4.SetChecksum(0)
		v4.SetChecksum(^v4.CalculateChecksum())
		src, dst = v4.SourceAddress(), v4.DestinationAddress()
	} else {
		v6 := header.IPv6(ip)
		v6.SetPayloadLength(uint16(doff))
		src, dst = v6.SourceAddress(), v6.DestinationAddress()
	}
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(doff))
	t.SetChecksum(^t.CalculateChecksum(xsum))
	z.acks.Add(1)
	return b
}
