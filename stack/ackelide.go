package stack

import "encoding/binary"

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
		parseSeg(f, m)
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

const (
	tcpFlagFIN = 0x01
	tcpFlagSYN = 0x02
	tcpFlagRST = 0x04
	tcpFlagACK = 0x10
	tcpFlagURG = 0x20

	tcpOptEOL  = 0
	tcpOptNOP  = 1
	tcpOptSACK = 5
)

// parseSeg fills m from an Ethernet frame the stack itself built. Anything
// it does not recognise is marked as not TCP and left alone.
func parseSeg(f []byte, m *segMeta) {
	*m = segMeta{}
	if len(f) < 14 {
		return
	}
	var tcp []byte
	switch binary.BigEndian.Uint16(f[12:14]) {
	case 0x0800:
		ip := f[14:]
		if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != 6 {
			return
		}
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		// Fragments are never merged with anything.
		if binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 || ihl < 20 || total < ihl || total > len(ip) {
			return
		}
		m.flow.n = uint8(copy(m.flow.b[:], ip[12:20]))
		tcp = ip[ihl:total]
	case 0x86dd:
		ip := f[14:]
		if len(ip) < 40 || ip[6] != 6 {
			return
		}
		plen := int(binary.BigEndian.Uint16(ip[4:6]))
		if 40+plen > len(ip) {
			return
		}
		m.flow.n = uint8(copy(m.flow.b[:], ip[8:40]))
		tcp = ip[40 : 40+plen]
	default:
		return
	}
	if len(tcp) < 20 {
		return
	}
	doff := int(tcp[12]>>4) * 4
	if doff < 20 || doff > len(tcp) {
		return
	}
	copy(m.flow.b[m.flow.n:], tcp[0:4])
	flags := tcp[13]
	m.rst = flags&tcpFlagRST != 0
	m.syn = flags&tcpFlagSYN != 0
	m.tcp = flags&tcpFlagACK != 0 && !m.rst
	if !m.tcp {
		return
	}
	m.ack = binary.BigEndian.Uint32(tcp[8:12])
	m.win = binary.BigEndian.Uint16(tcp[14:16])
	m.pureAck = flags&(tcpFlagSYN|tcpFlagFIN|tcpFlagURG) == 0 && len(tcp) == doff
	opts := tcp[20:doff]
	for len(opts) > 0 {
		switch opts[0] {
		case tcpOptEOL:
			return
		case tcpOptNOP:
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || int(opts[1]) < 2 || int(opts[1]) > len(opts) {
			// A malformed option list: never drop such a frame.
			m.sack = true
			return
		}
		if opts[0] == tcpOptSACK {
			m.sack = true
			return
		}
		opts = opts[opts[1]:]
	}
}
