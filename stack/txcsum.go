package stack

import (
	"encoding/binary"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/nic"
)

// TX checksum offload. Where the queue completes L4 checksums as it sends
// (nic.TxChecksumOffloader reports the offload on), the endpoint declares
// CapabilityTXChecksumOffload and gVisor stops computing TCP and UDP
// checksums (Route.RequiresTXTransportChecksum): it leaves the field 0,
// except in host-GSO packets (NeedsCsum), where it writes the
// pseudo-header sum. The endpoint then writes the pseudo-header sum,
// not complemented, into the checksum field of every TCP and UDP frame it
// sends, over IPv4 and IPv6, and asks the queue to complete it: the
// device sums the segment once as it sends it, where gVisor would have
// read every payload byte a second time.
//
// Everything that edits a sent TCP header afterwards keeps to that form:
// FIN joining (ackelide.go) changes flags and window, which the device's
// sum covers, so it leaves the field alone; GSO (gso.go) writes each
// frame's pseudo-header sum for its own length. Frames of other protocols
// (ICMP, ARP) carry the full checksums gVisor computes for them, the
// capability notwithstanding.
//
// IP fragments are left as gVisor built them: the checksum of a UDP
// datagram gVisor fragments covers every fragment, which the device,
// seeing one frame at a time, cannot sum. gVisor leaves that field 0 with
// the offload, which over IPv4 means "no checksum" (RFC 768) and over
// IPv6 is invalid (RFC 8200 section 8.1): a stack that sends UDP
// datagrams beyond the MTU over IPv6 wants tx_checksum=off.

// udpChecksumOffset is where the checksum sits in a UDP header (RFC 768).
const udpChecksumOffset = 6

// txChecksumOffload returns q's checksum offload, or nil where q has none.
func txChecksumOffload(q nic.Queue) nic.TxChecksumOffloader {
	if o, ok := q.(nic.TxChecksumOffloader); ok && o.TxChecksumOffload() {
		return o
	}
	return nil
}

// requestTxChecksum prepares f, a frame gVisor built in a buffer the
// queue lent, for the queue's checksum offload if it is an unfragmented
// TCP or UDP packet: it writes the pseudo-header sum into the checksum
// field and asks the queue to complete it. Any other frame is left
// unchanged. It returns f, cut to its IP packet's length (gVisor does not
// pad, so that is f itself). Only for an endpoint with the offload
// (e.csum set).
func (e *endpoint) requestTxChecksum(f []byte) []byte {
	start, off, end := putPseudoHeaderSum(f, len(f))
	if end == 0 {
		return f
	}
	f = f[:end]
	if e.csum.SetTxChecksum(f, start, off) != nil {
		// Only a buffer the queue did not lend is refused, which the
		// endpoint never sends; completing it here keeps the frame
		// right all the same.
		nic.CompleteChecksum(f, start, off)
	}
	return f
}

// putPseudoHeaderSum finds the TCP or UDP checksum field of an
// unfragmented packet in frame, whose headers are in head and which is
// size bytes long (head is the frame itself, or the first buffer of a
// frame of several), and writes into it the pseudo-header sum (RFC 9293
// 3.1, RFC 768, RFC 8200 8.1), not complemented. It returns the offset of
// the L4 header, the checksum field's offset in it, and the end of the IP
// packet; end is 0, and head unchanged, for any other frame.
func putPseudoHeaderSum(head []byte, size int) (start, off, end int) {
	if len(head) < header.EthernetMinimumSize {
		return 0, 0, 0
	}
	ip := head[header.EthernetMinimumSize:]
	ipSize := size - header.EthernetMinimumSize
	var l4len int
	var proto uint8
	var sum uint16
	switch binary.BigEndian.Uint16(head[12:]) {
	case uint16(header.IPv4ProtocolNumber):
		if len(ip) < header.IPv4MinimumSize {
			return 0, 0, 0
		}
		ihl := int(ip[0]&0xf) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		// More-fragments set or a fragment offset: a fragment.
		if ihl < header.IPv4MinimumSize || total < ihl || total > ipSize || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return 0, 0, 0
		}
		proto = ip[9]
		start, l4len = header.EthernetMinimumSize+ihl, total-ihl
		sum = checksum.Checksum(ip[12:20], 0)
	case uint16(header.IPv6ProtocolNumber):
		if len(ip) < header.IPv6MinimumSize {
			return 0, 0, 0
		}
		// Only a TCP or UDP header right after the fixed header: gVisor
		// adds extension headers to its own packets only for fragments
		// and for ICMPv6 (MLD's hop-by-hop options).
		proto = ip[6]
		l4len = int(binary.BigEndian.Uint16(ip[4:]))
		if header.IPv6MinimumSize+l4len > ipSize {
			return 0, 0, 0
		}
		start = header.EthernetMinimumSize + header.IPv6MinimumSize
		sum = checksum.Checksum(ip[8:40], 0)
	default:
		return 0, 0, 0
	}
	switch proto {
	case uint8(header.TCPProtocolNumber):
		off = header.TCPChecksumOffset
	case uint8(header.UDPProtocolNumber):
		off = udpChecksumOffset
	default:
		return 0, 0, 0
	}
	if l4len < off+2 || start+off+2 > len(head) {
		return 0, 0, 0
	}
	sum = checksum.Combine(checksum.Combine(sum, uint16(proto)), uint16(l4len))
	binary.BigEndian.PutUint16(head[start+off:], sum)
	return start, off, start + l4len
}
