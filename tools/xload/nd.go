package main

import (
	"github.com/xstack/xstack/stack/packet"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// IPv6 Neighbor Discovery (RFC 4861), the part an on-link client needs:
// it answers Neighbor Solicitations for its source addresses and resolves
// the server's link-layer address with solicitations of its own. It keeps
// no neighbor cache beyond the server's one entry; like the ARP path, it
// takes the server's address from any valid message that carries it.

// ndLen is the length of the NS and NA that xload sends: the ICMPv6
// header, the reserved word or flags, the target, and one link-layer
// address option of 8 bytes (RFC 4861 4.3, 4.4, 4.6.1).
const ndLen = header.ICMPv6NeighborSolicitMinimumSize + 8

// nd handles a Neighbor Solicitation or Advertisement. It checks what RFC
// 4861 7.1.1 and 7.1.2 ask a receiver to check; a message that fails is
// counted in RxBadND and changes nothing.
func (e *Engine) nd(frame []byte, p *packet.Parsed) {
	ip := header.IPv6(p.IP(frame))
	s, d := p.Addrs(frame)
	src, dst := addrOf(s), addrOf(d)
	m := header.ICMPv6(p.L4(frame))
	// A Neighbor Solicitation and an Advertisement both hold 24 bytes
	// before their options, and the target in the same place.
	if ip.HopLimit() != header.NDPHopLimit || m.Code() != 0 || header.IsV6MulticastAddress(src) ||
		len(m) < header.ICMPv6NeighborSolicitMinimumSize ||
		checksum.Checksum(m, header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, src, dst, uint16(len(m)))) != 0xffff {
		e.Counts.RxBadND++
		return
	}
	isNS := m.Type() == header.ICMPv6NeighborSolicit
	body := m.MessageBody()
	target := header.NDPNeighborSolicit(body).TargetAddress()
	opts := header.NDPNeighborSolicit(body).Options()
	if !isNS {
		opts = header.NDPNeighborAdvert(body).Options()
	}
	lla, ok := linkAddrOption(opts, isNS)
	if !ok || header.IsV6MulticastAddress(target) {
		e.Counts.RxBadND++
		return
	}
	if isNS {
		e.solicited(frame, src, dst, target, lla)
		return
	}
	na := header.NDPNeighborAdvert(body)
	if header.IsV6MulticastAddress(dst) && na.SolicitedFlag() {
		e.Counts.RxBadND++
		return
	}
	if target != e.server {
		// Someone else's advertisement, or one for an address of ours
		// (another node claims it): neither tells us anything we use.
		e.Counts.RxStray++
		return
	}
	if lla != nil {
		copy(e.srvMAC[:], lla)
		e.haveMAC = true
	}
}

// linkAddrOption walks an NS's or NA's options with gVisor's iterator,
// which rejects an option of length 0 or one that runs past the message.
// It returns the Source (isNS) or Target Link-Layer Address option's
// Ethernet address, nil when there is none, and false when the options
// are malformed or the address is not one a neighbor can have (a group or
// the zero address).
func linkAddrOption(opts header.NDPOptions, isNS bool) ([]byte, bool) {
	it, err := opts.Iter(true)
	if err != nil {
		return nil, false
	}
	var lla []byte
	for {
		o, done, err := it.Next()
		if err != nil {
			return nil, false
		}
		if done {
			break
		}
		var a tcpip.LinkAddress
		switch o := o.(type) {
		case header.NDPSourceLinkLayerAddressOption:
			if !isNS {
				continue
			}
			a = o.EthernetAddress()
		case header.NDPTargetLinkLayerAddressOption:
			if isNS {
				continue
			}
			a = o.EthernetAddress()
		default:
			continue
		}
		if len(a) != header.EthernetAddressSize || a[0]&1 != 0 || a == "\x00\x00\x00\x00\x00\x00" {
			return nil, false
		}
		lla = []byte(a)
	}
	return lla, true
}

// solicited answers a Neighbor Solicitation for one of our addresses
// (RFC 4861 7.2.3, 7.2.4), sent to that address or to its solicited-node
// group, and learns the server's address from the one it sends.
func (e *Engine) solicited(frame []byte, src, dst, target tcpip.Address, sllao []byte) {
	dad := src.Unspecified()
	if dad && (sllao != nil || !header.IsSolicitedNodeAddr(dst)) {
		// 7.1.1: a duplicate address detection probe carries no
		// link-layer address and goes to the solicited-node group.
		e.Counts.RxBadND++
		return
	}
	if e.srcIndex(target) < 0 || (dst != header.SolicitedNodeAddr(target) && e.srcIndex(dst) < 0) {
		e.Counts.RxStray++
		return
	}
	if src == e.server && sllao != nil {
		copy(e.srvMAC[:], sllao)
		e.haveMAC = true
	}
	// The answer goes to the solicitation's source, at the link-layer
	// address it gave or else the frame's own; to a probe of duplicate
	// address detection, to all nodes, unsolicited, so that the prober
	// sees the address is taken.
	to, toMAC, solicited := src, sllao, true
	if dad {
		to, solicited = header.IPv6AllNodesMulticastAddress, false
		toMAC = multicastMAC(to)
	} else if toMAC == nil {
		toMAC = []byte(header.Ethernet(frame).SourceAddress())
	}
	e.sendND(header.ICMPv6NeighborAdvert, target, to, toMAC, target, solicited)
}

// solicit sends a Neighbor Solicitation for the server from our first
// address to the server's solicited-node group (RFC 4861 7.2.2), with our
// link-layer address, so that the answer needs no resolution of its own.
func (e *Engine) solicit() {
	snm := header.SolicitedNodeAddr(e.server)
	e.sendND(header.ICMPv6NeighborSolicit, e.srcs[0], snm, multicastMAC(snm), e.server, false)
}

// sendND builds an NS or NA, from src to dst (link-layer toMAC), for
// target, with our link-layer address as its one option. An NA has the
// Override flag, since the address is no anycast one (RFC 4861 7.2.4),
// and the Solicited flag when it answers a solicitation.
func (e *Engine) sendND(typ header.ICMPv6Type, src, dst tcpip.Address, toMAC []byte, target tcpip.Address, solicited bool) {
	buf := e.tx.Buf()
	if buf == nil {
		e.Counts.TxNoBuffer++
		return
	}
	b := buf[:header.EthernetMinimumSize+header.IPv6MinimumSize+ndLen]
	e.ether(b, toMAC, header.IPv6ProtocolNumber)
	ip := header.IPv6(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv6Fields{
		PayloadLength:     ndLen,
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          header.NDPHopLimit,
		SrcAddr:           src,
		DstAddr:           dst,
	})
	m := header.ICMPv6(ip[header.IPv6MinimumSize:])
	clear(m) // the reserved bits are zero, and the buffer was used before
	m.SetType(typ)
	if typ == header.ICMPv6NeighborSolicit {
		ns := header.NDPNeighborSolicit(m.MessageBody())
		ns.SetTargetAddress(target)
		ns.Options().Serialize(e.sllao)
	} else {
		na := header.NDPNeighborAdvert(m.MessageBody())
		na.SetOverrideFlag(true)
		na.SetSolicitedFlag(solicited)
		na.SetTargetAddress(target)
		na.Options().Serialize(e.tllao)
	}
	m.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: m, Src: src, Dst: dst}))
	e.tx.Send(b)
}

// multicastMAC is the Ethernet group of an IPv6 multicast address: 33:33
// and the address's last four bytes (RFC 2464 7); a solicited-node group's
// is 33:33:ff and the last three bytes of the address solicited.
func multicastMAC(a tcpip.Address) []byte {
	b := a.As16()
	return []byte{0x33, 0x33, b[12], b[13], b[14], b[15]}
}
