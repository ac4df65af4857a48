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
//
// The batch also joins a FIN to the data before it. gVisor always sends a
// FIN in a segment of its own ("Netstack queues FIN segments without
// data"), so a server that writes its response and closes in one pass, as
// an HTTP server answering "Connection: close" does, sends the response and
// then a bare FIN. When the FIN is the next frame of its flow after a data
// segment that it directly follows in sequence space, with the same
// acknowledgment, the data segment leaves with the FIN flag set and the
// FIN's window, and the bare FIN is not sent: the segment says on the wire
// what Linux and FreeBSD send in that case, one frame less each way. gVisor
// still holds them as two segments; should the joined one be lost, it
// retransmits them as two, which the peer takes the same way.
type ackElider struct {
	meta     []segMeta
	joined   []bool // joined[i]: frame i is a FIN carried by an earlier frame
	disabled bool   // net.inet.tcp.delayed_ack=0
	// partial: the TCP frames carry the pseudo-header sum in their
	// checksum field for the queue to complete (txcsum.go).
	partial bool
	// fins counts the FINs joined to data in the last filter.
	fins int
	// sizes, when not nil, holds for each frame of the batch that spans
	// several buffers (txchain.go) its size, of which the frame given
	// to filter is the first buffer; 0 for a frame of one buffer.
	sizes []int
}

type segMeta struct {
	tcp     bool // a TCP segment with ACK and without RST
	rst     bool // a TCP segment with RST
	syn     bool
	pureAck bool
	sack    bool
	data    bool // carries data, and no SYN, FIN or URG
	bareFin bool // FIN and ACK (PSH allowed), no data
	fin     bool // FIN and ACK, with or without data
	ack     uint32
	seq     uint32
	plen    uint32 // payload bytes
	l4      uint32 // offset of the TCP header in the frame
	hdrLen  uint32 // length of the TCP header, options included
	win     uint16
	flow    flowKey
}

// flowKey holds a frame's addresses and ports: source then destination
// address (4 or 16 bytes each), then the two ports.
type flowKey struct {
	b [36]byte
	n uint8
}

func (a *ackElider) init(batch int) {
	a.meta = make([]segMeta, batch)
	a.joined = make([]bool, batch)
}

// filter appends to out the frames that must be sent, in order, and to
// skip the others (superseded pure ACKs, joined FINs), and rewrites in
// place a data frame that takes over the FIN after it. Every frame's
// segMeta is left in meta[:len(frames)].
func (a *ackElider) filter(frames, out, skip [][]byte) ([][]byte, [][]byte) {
	acks, fins := 0, 0
	for i, f := range frames {
		m := &a.meta[i]
		size := len(f)
		if a.sizes != nil && a.sizes[i] != 0 {
			size = a.sizes[i]
		}
		m.fill(f, size)
		if m.pureAck && !m.sack {
			acks++
		}
		if m.bareFin && i > 0 {
			fins++
		}
	}
	a.fins = 0
	if fins > 0 {
		fins = a.joinFins(frames)
	}
	if (acks == 0 || a.disabled) && fins == 0 {
		return append(out, frames...), skip
	}
	for i, f := range frames {
		if a.joined[i] {
			a.joined[i] = false
			skip = append(skip, f)
			continue
		}
		if acks > 0 && !a.disabled && a.superseded(i, len(frames)) {
			skip = append(skip, f)
			continue
		}
		out = append(out, f)
	}
	return out, skip
}

// joinFins sets the FIN flag on each data frame whose flow's next frame in
// the batch is a bare FIN that follows it in sequence space with the same
// acknowledgment, marks those FINs joined, and returns how many it joined.
func (a *ackElider) joinFins(frames [][]byte) int {
	for i := range frames {
		f := &a.meta[i]
		if !f.bareFin {
			continue
		}
		for k := i - 1; k >= 0; k-- {
			d := &a.meta[k]
			if d.flow != f.flow {
				continue
			}
			if d.data && d.seq+d.plen == f.seq && d.ack == f.ack {
				joinFin(frames[k][d.l4:], f.win, a.partial)
				d.data, d.win = false, f.win
				a.joined[i] = true
				a.fins++
			}
			break
		}
	}
	return a.fins
}

// joinFin sets FIN on the TCP segment seg and its window to win, and
// updates its checksum for the two 16-bit words that changed (RFC 1624).
// A partial checksum (the pseudo-header sum, for the device to complete)
// does not cover them and stays as it is.
func joinFin(seg []byte, win uint16, partial bool) {
	t := header.TCP(seg)
	oldFlags := uint16(seg[12])<<8 | uint16(seg[13])
	oldWin := t.WindowSize()
	seg[13] |= uint8(header.TCPFlagFin)
	t.SetWindowSize(win)
	if partial {
		return
	}
	newFlags := uint16(seg[12])<<8 | uint16(seg[13])
	sum := checksumUpdate(t.Checksum(), oldFlags, newFlags)
	t.SetChecksum(checksumUpdate(sum, oldWin, win))
}

// checksumUpdate returns the Internet checksum sum after a 16-bit word of
// the data it covers changed from old to new (RFC 1624, equation 3).
func checksumUpdate(sum, old, new uint16) uint16 {
	s := uint32(^sum) + uint32(^old) + uint32(new)
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return ^uint16(s)
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

// fill sets m from f, the start of an Ethernet frame of size bytes the
// stack itself built (all of it, or the first buffer of a frame of
// several, whose headers it holds), parsing its headers once. Anything but
// an unfragmented TCP segment is marked as not TCP and left alone:
// fragments are never merged with anything.
func (m *segMeta) fill(f []byte, size int) {
	*m = segMeta{}
	var p packet.Parsed
	packet.ParseHead(f, size, &p)
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
	m.ack, m.win, m.seq, m.l4, m.hdrLen = p.Ack, p.Window, p.Seq, p.L4Off, uint32(p.TCPHdrLen)
	m.fin = flags&header.TCPFlagFin != 0
	plen := p.TCPPayloadLen()
	m.plen = uint32(plen)
	other := flags &^ (header.TCPFlagAck | header.TCPFlagPsh)
	m.pureAck = other == 0 && plen == 0
	m.data = other == 0 && plen > 0
	m.bareFin = other == header.TCPFlagFin && plen == 0
	m.sack = p.TCPHdrLen > header.TCPMinimumSize && hasSACK(p.TCPOptions(f))
}

// hasSACK reports whether a TCP option list carries SACK blocks, or is
// malformed: a frame with a malformed list is never dropped either.
func hasSACK(opts []byte) bool {
	o, ok := tcpOption(opts, header.TCPOptionSACK)
	return !ok || o != nil
}

// tcpOption returns the first option of kind in a TCP option list, kind
// and length bytes included, nil if the list has none; ok is false when
// the list is malformed before the option or the list's end.
func tcpOption(opts []byte, kind uint8) (opt []byte, ok bool) {
	for len(opts) > 0 {
		switch opts[0] {
		case header.TCPOptionEOL:
			return nil, true
		case header.TCPOptionNOP:
			opts = opts[1:]
			continue
		}
		if len(opts) < 2 || int(opts[1]) < 2 || int(opts[1]) > len(opts) {
			return nil, false
		}
		if opts[0] == kind {
			return opts[:opts[1]], true
		}
		opts = opts[opts[1]:]
	}
	return nil, true
}
