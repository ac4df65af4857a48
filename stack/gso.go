package stack

import (
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// GSO on send. The endpoint tells gVisor it segments TCP itself (host
// GSO), so gVisor's sender builds one packet of up to gsoMaxSize bytes
// where it would build one per MSS: one trip through its TCP output, IP
// and link layers, one entry in its retransmit queue and loss detection.
// The endpoint cuts such a packet into MSS-sized frames while copying it
// into the queue's buffers, as a NIC's TSO would: every frame gets the
// packet's headers, its own sequence number, IP length and ID, FIN and PSH
// on the last frame only, CWR on the first only, and its checksums, which
// gVisor leaves to the endpoint for every TCP packet of such a connection
// (the TCP checksum is the queue's to complete where it offloads them,
// txcsum.go).
//
// It is off unless net.inet.tcp.gso=1. Loss recovery suffers: gVisor's
// sender keeps a packet as one segment of its retransmit queue, SACKed or
// lost as a whole, and at 1% loss a download ran at an eighth of its rate
// without GSO, where on a clean link it ran at twice the rate. The setting
// applies to connections opened after it; those opened before keep what
// they had, and the endpoint goes on cutting their packets.

// gsoMaxSize is the largest packet gVisor builds: what IPv4's 16-bit total
// length allows, as Linux's TSO limit.
const gsoMaxSize = 1<<16 - 1

// txOffload is the endpoint's GSO state; off is read by gVisor's
// goroutines and written by the control plane, the counters are written
// under txMu.
type txOffload struct {
	on      atomic.Bool   // net.inet.tcp.gso=1
	packets atomic.Uint64 // packets of more than one segment cut
	frames  atomic.Uint64 // frames they made
}

// GSOMaxSize implements gvstack.GSOEndpoint.
func (e *endpoint) GSOMaxSize() uint32 { return gsoMaxSize }

// SupportedGSO implements gvstack.GSOEndpoint.
func (e *endpoint) SupportedGSO() gvstack.SupportedGSO {
	if e.tx.on.Load() {
		return gvstack.HostGSOSupported
	}
	return gvstack.GSONotSupported
}

var _ gvstack.GSOEndpoint = (*endpoint)(nil)

// isHostGSO says whether pkt is a TCP packet of a connection using host
// GSO: the endpoint must segment it and compute its TCP checksum.
func isHostGSO(pkt *gvstack.PacketBuffer) bool {
	t := pkt.GSOOptions.Type
	return t == gvstack.GSOTCPv4 || t == gvstack.GSOTCPv6
}

// writeTCPLocked writes pkt, a host-GSO TCP packet, into the batch as
// frames of at most its MSS of payload each; more is how many packets of
// the call are left, this one included, to size the buffer reservation.
// It reports whether any frame of pkt was written; frames for which no
// buffer was free are dropped and counted, and TCP retransmits them.
// +checklocks:txMu
func (e *endpoint) writeTCPLocked(pkt *gvstack.PacketBuffer, more int) bool {
	linkHdr := pkt.LinkHeader().Slice()
	link := len(linkHdr)
	netHdr := pkt.NetworkHeader().Slice()
	tcpHdr := pkt.TransportHeader().Slice()
	nh, th := len(netHdr), len(tcpHdr)
	hdr := link + nh + th
	payload := pkt.Data().Size()
	mss := int(pkt.GSOOptions.MSS)
	if mss <= 0 || mss >= payload {
		mss = payload
	}
	segs := 1
	if payload > 0 {
		segs = (payload + mss - 1) / mss
	}
	if hdr+mss > e.maxFrame || th < header.TCPMinimumSize {
		e.txDropped.Add(uint64(segs))
		return false
	}

	var base uint16 // the pseudo-header's sum without its length
	v4 := pkt.GSOOptions.Type == gvstack.GSOTCPv4
	var id uint16
	if v4 {
		ip := header.IPv4(netHdr)
		base = header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), 0)
		id = ip.ID()
	} else {
		ip := header.IPv6(netHdr)
		base = header.PseudoHeaderChecksum(header.TCPProtocolNumber, ip.SourceAddress(), ip.DestinationAddress(), 0)
	}
	seq := header.TCP(tcpHdr).SequenceNumber()
	flags := tcpHdr[header.TCPFlagsOffset]

	wrote := 0
	for k := 0; k < segs; k++ {
		n := min(mss, payload-k*mss)
		buf := e.txBufLocked(segs - k + more - 1)
		var chain [][]byte // the frame's buffers when it needs several
		if buf == nil || hdr+n > cap(buf) {
			if buf != nil && e.mq != nil && hdr <= cap(buf) {
				chain = e.takeChainLocked(buf, hdr+n, segs-k+more-1)
				buf = nil // taken by the chain, or given back
			}
			if chain == nil {
				if buf != nil {
					e.txSpareAt--
				}
				e.txDropped.Add(uint64(segs - k))
				break
			}
		}
		var f []byte
		if chain != nil {
			f = chain[0]
		} else {
			f = buf[:hdr+n]
		}
		copy(f, linkHdr)
		copy(f[link:], netHdr)
		copy(f[link+nh:], tcpHdr)
		if chain == nil {
			copyFrom(f[hdr:], pkt, hdr+k*mss)
		} else {
			copyChainFrom(chain, hdr, pkt, hdr+k*mss)
		}

		if v4 {
			ip := header.IPv4(f[link:])
			ip.SetTotalLength(uint16(nh + th + n))
			ip.SetID(id + uint16(k))
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
		} else {
			header.IPv6(f[link:]).SetPayloadLength(uint16(nh - header.IPv6MinimumSize + th + n))
		}
		tcp := header.TCP(f[link+nh:])
		tcp.SetSequenceNumber(seq + uint32(k*mss))
		fl := flags
		if k < segs-1 {
			fl &^= uint8(header.TCPFlagFin | header.TCPFlagPsh)
		}
		if k > 0 {
			fl &^= uint8(header.TCPFlagCwr)
		}
		tcp[header.TCPFlagsOffset] = fl
		sum := checksum.Combine(base, uint16(th+n))
		switch {
		case chain != nil:
			// The queue completes it (txcsum.go), or this does,
			// across the chain.
			tcp.SetChecksum(sum)
			if e.csum == nil || e.csum.SetTxChecksum(f, link+nh, header.TCPChecksumOffset) != nil {
				completeChainChecksum(chain, link+nh, header.TCPChecksumOffset, hdr+n)
			}
			e.queueChainLocked(chain)
			wrote++
			continue
		case e.csum != nil:
			// The queue completes it (txcsum.go).
			tcp.SetChecksum(sum)
			if e.csum.SetTxChecksum(f, link+nh, header.TCPChecksumOffset) != nil {
				tcp.SetChecksum(0)
				tcp.SetChecksum(^checksum.Checksum(tcp, sum))
			}
		default:
			tcp.SetChecksum(0)
			tcp.SetChecksum(^checksum.Checksum(tcp, sum))
		}

		e.txBatch[e.txN] = f
		e.txN++
		wrote++
	}
	if segs > 1 {
		e.tx.packets.Add(1)
		e.tx.frames.Add(uint64(wrote))
	}
	return wrote > 0
}

// copyFrom copies pkt's bytes from offset skip on into dst, as many as
// fit, without allocating.
func copyFrom(dst []byte, pkt *gvstack.PacketBuffer, skip int) {
	vl, off := pkt.AsViewList()
	off += skip
	n := 0
	for v := vl.Front(); v != nil && n < len(dst); v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		n += copy(dst[n:], b[off:])
		off = 0
	}
}
