package stack

import (
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/stack/packet"
)

// gVisor acknowledges received data at once, with a pure ACK, and the
// application's reply follows moments later with the same acknowledgment.
// Both wait in the same TX batch until the loop flushes it after the
// application has run, so the pure ACK can be left out when a later frame
// of the same flow in the batch says everything it says:
//
//   - the later frame acknowledges the same or a later sequence number,
//   - advertises no smaller window (same connection, same window scale),
//   - and neither carries SACK blocks: a pure ACK with SACK blocks reports
//     loss or reordering, and the peer counts such duplicate ACKs (RFC 5681
//     section 3.2, RFC 6675), so it is always sent.
//
// A later pure ACK with the same acknowledgment number does not supersede an
// earlier one either: together they are duplicate ACKs.
type ackElider struct {
	meta     []segMeta
	disabled bool // net.inet.tcp.delayed_ack=0
}

type segMeta struct {
	tcp     bool // a TCP segment with ACK and without RST
	rst     bool // a TCP segment with RST
	syn     bool
	pureAck bool
	sack    bool
	ack     uint32
	win     uint16
	flow    flowKey
}

// flowKey holds a frame's addresses and ports: source then destination
// address (4 or 16 bytes each), then the two ports.
type flowKey struct {
	b [36]byte
	n uint8
}

func (a *ackElider) init(batch int) { a.meta = make([]segMeta, batch) }

// filter appends to out the frames that must be sent, in order.
// Every frame's segMeta is left in meta[:len(frames)].
func (a *ackElider) filter(frames [][]byte, out [][]byte) [][]byte {
	candidates := 0
	for i, f := range frames {
		m := &a.meta[i]
		m.fill(f)
		if m.pureAck && !m.sack {
			candidates++
		}
	}
	if candidates == 0 || a.disabled {
		return append(out, frames...)
	}
	for i, f := range frames {
		if a.superseded(i, len(frames)) {
			continue
		}
		out = append(out, f)
	}
	return out
}

func (a *ackElider) superseded(i, n int) bool {
	m := &a.meta[i]
	if !m.pureAck || m.sack {
		return false
	}
	for j := i + 1; j < n; j++ {
		l := &a.meta[j]
		if !l.tcp || l.flow != m.flow {
			continue
		}
		d := int32(l.ack - m.ack)
		if l.sack || d < 0 || l.win < m.win {
			return false
		}
		if l.pureAck && d == 0 {
			return false
		}
		return true
	}
	return false
}

// fill sets m from f, an Ethernet frame the stack itself built, parsing
// its headers once. Anything but an unfragmented TCP segment is marked as
// not TCP and left alone: fragments are never merged with anything.
func (m *segMeta) fill(f []byte) {
	*m = segMeta{}
	var p packet.Parsed
	packet.Parse(f, &p)
	if p.Flags&(packet.TCP|packet.Fragment) != packet.TCP {
		return
	}
	// Fixed-size copies: each is a move or two, not a call.
	if p.Flags&packet.IPv4 != 0 {
		*(*[8]byte)(m.flow.b[:]) = [8]byte(p.AddrPair(f))
		m.flow.n = 8
	} else {
		*(*[32]byte)(m.flow.b[:]) = [32]byte(p.AddrPair(f))
		m.flow.n = 32
	}
	*(*[4]byte)(m.flow.b[m.flow.n:]) = [4]byte(p.PortPair(f))
	flags := p.TCPFlags
	m.rst = flags&header.TCPFlagRst != 0
	m.syn = flags&header.TCPFlagSyn != 0
	m.tcp = flags&header.TCPFlagAck != 0 && !m.rst
	if !m.tcp {
		return
	}
	m.ack, m.win = p.Ack, p.Window
	m.pureAck = flags&(header.TCPFlagSyn|header.TCPFlagFin|header.TCPFlagUrg) == 0 && p.TCPPayloadLen() == 0
	m.sack = p.TCPHdrLen > header.TCPMinimumSize && hasSACK(p.TCPOptions(f))
}

// hasSACK reports whether a TCP option list carries SACK blocks, or is
// malformed: a frame with a malformed list is never dropped either.
func hasSACK(opts []byte) bool {
	for len(opts) > 0 {
		switch opts[0] {
		case header.TCPOptionEOL:
			return false
		case header.TCPOptionNOP:
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || int(opts[1]) < 2 || int(opts[1]) > len(opts) {
			return true
		}
		if opts[0] == header.TCPOptionSACK {
			return true
		}
		opts = opts[opts[1]:]
	}
	return false
}
