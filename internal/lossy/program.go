package lossy

import (
	"encoding/binary"

	"github.com/cilium/ebpf/asm"
)

// Direction indexes the loss map and the counter map. Directions are seen
// from the interface the dropper is attached to.
const (
	dirEgress  = 0 // frames the interface sends (tc egress)
	dirIngress = 1 // frames the interface receives (XDP)
)

// Counter slots of one direction in the counter map: the map has
// numDirs*numKinds u64 entries, direction-major.
const (
	kindPassed  = 0 // TCP or UDP over IPv4/IPv6, let through
	kindDropped = 1 // TCP or UDP over IPv4/IPv6, dropped
	kindOther   = 2 // anything else (ARP, ICMP, ICMPv6/ND, ...): never dropped
	numKinds    = 3
	numDirs     = 2
)

// hook describes what differs between the XDP and the tc flavour of the
// program: where the context keeps the packet pointers and what the
// verdicts are.
type hook struct {
	offData, offDataEnd int16 // struct xdp_md or struct __sk_buff
	pass, drop          int32
}

var (
	// struct xdp_md { u32 data; u32 data_end; ... }; XDP_DROP 1,
	// XDP_PASS 2.
	xdpHook = hook{offData: 0, offDataEnd: 4, pass: 2, drop: 1}
	// struct __sk_buff: data at 76, data_end at 80. TC_ACT_UNSPEC (-1)
	// is TCX_NEXT for a TCX link and "go on" for a direct-action
	// cls_bpf filter; TC_ACT_SHOT (2) is TCX_DROP.
	tcHook = hook{offData: 76, offDataEnd: 80, pass: -1, drop: 2}
)

// Frame layout (Ethernet II, no VLAN tag).
const (
	offEtherType = 12
	ethHdrLen    = 14
	offIPv4Proto = ethHdrLen + 9 // struct iphdr protocol
	offIPv6Next  = ethHdrLen + 6 // struct ipv6hdr nexthdr
	ipProtoTCP   = 6
	ipProtoUDP   = 17
)

// netOrder16 returns the value a native-endian 16-bit load reads from the
// big-endian bytes of v.
func netOrder16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// program builds the dropper for one direction. lossFD is an array map of
// numDirs u64 thresholds, counterFD an array map of numDirs*numKinds u64
// counters.
//
// A frame is a candidate when it is IPv4 or IPv6 (no VLAN tag) whose
// protocol (IPv4) or first next header (IPv6) is TCP or UDP. A candidate is
// dropped when bpf_get_prandom_u32() is below the direction's threshold
// (share × 2³², so 2³² drops all and 0 none). Everything else passes
// untouched, so ARP, neighbour discovery and ICMP keep the interface
// reachable whatever the share.
//
// R6 holds the context, R7 the random number, R8 the verdict: R6–R9 survive
// helper calls. fp-4 is the u32 key of both map look-ups.
func program(h hook, dir int32, lossFD, counterFD int) asm.Instructions {
	key := func(kind int32) int32 { return dir*numKinds + kind }
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, h.offData, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, h.offDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, ethHdrLen),
		asm.JGT.Reg(asm.R4, asm.R3, "other"),
		asm.LoadMem(asm.R5, asm.R2, offEtherType, asm.Half),
		asm.JEq.Imm(asm.R5, netOrder16(0x0800), "ipv4"),
		asm.JEq.Imm(asm.R5, netOrder16(0x86dd), "ipv6"),
		asm.Ja.Label("other"),

		asm.Mov.Reg(asm.R4, asm.R2).WithSymbol("ipv4"),
		asm.Add.Imm(asm.R4, offIPv4Proto+1),
		asm.JGT.Reg(asm.R4, asm.R3, "other"),
		asm.LoadMem(asm.R5, asm.R2, offIPv4Proto, asm.Byte),
		asm.Ja.Label("l4"),

		asm.Mov.Reg(asm.R4, asm.R2).WithSymbol("ipv6"),
		asm.Add.Imm(asm.R4, offIPv6Next+1),
		asm.JGT.Reg(asm.R4, asm.R3, "other"),
		asm.LoadMem(asm.R5, asm.R2, offIPv6Next, asm.Byte),

		asm.JEq.Imm(asm.R5, ipProtoTCP, "candidate").WithSymbol("l4"),
		asm.JEq.Imm(asm.R5, ipProtoUDP, "candidate"),
		asm.Ja.Label("other"),

		// A candidate: draw, then compare with the threshold. A
		// missing map entry (it cannot be missing in an array map)
		// would mean no loss.
		asm.FnGetPrandomU32.Call().WithSymbol("candidate"),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.StoreImm(asm.RFP, -4, int64(dir), asm.Word),
		asm.LoadMapPtr(asm.R1, lossFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "passed"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.JGE.Reg(asm.R7, asm.R1, "passed"),
		asm.Mov.Imm(asm.R8, h.drop),
		asm.StoreImm(asm.RFP, -4, int64(key(kindDropped)), asm.Word),
		asm.Ja.Label("count"),

		asm.Mov.Imm(asm.R8, h.pass).WithSymbol("passed"),
		asm.StoreImm(asm.RFP, -4, int64(key(kindPassed)), asm.Word),
		asm.Ja.Label("count"),

		asm.Mov.Imm(asm.R8, h.pass).WithSymbol("other"),
		asm.StoreImm(asm.RFP, -4, int64(key(kindOther)), asm.Word),

		asm.LoadMapPtr(asm.R1, counterFD).WithSymbol("count"),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"),
		asm.Mov.Imm(asm.R1, 1),
		asm.StoreXAdd(asm.R0, asm.R1, asm.DWord),

		asm.Mov.Reg(asm.R0, asm.R8).WithSymbol("out"),
		asm.Return(),
	}
}
