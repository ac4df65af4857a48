package nic

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// PortConfig configures the XDP side of one interface.
type PortConfig struct {
	Ifname string
	// XDPMode is how to attach the program; "" means XDPAuto.
	XDPMode XDPMode
	// PassToKernel makes the program redirect only the stack's frames
	// (see Port) and XDP_PASS the rest. When false, every frame that
	// arrives on a queue with a socket goes to the socket.
	PassToKernel bool
	// Addrs are the stack's addresses at start; AddAddr adds more.
	Addrs []netip.Addr
	// MaxQueues bounds the queue indexes OpenQueue accepts (the XSKMAP
	// size). Default 256.
	MaxQueues int
	// Logf, if set, reports choices made at run time (the XDP mode).
	Logf func(format string, args ...any)

	// singleBuffer loads the program without BPF_F_XDP_HAS_FRAGS, as
	// before multi-buffer, for tests of what the kernel then refuses.
	singleBuffer bool
}

// Port is the XDP program of one interface, its maps and its attachment.
//
// The program sends a frame to the AF_XDP socket of the queue that received
// it when the frame belongs to the stack: an IPv4 packet to one of its
// addresses, an ARP packet whose target protocol address is one of them, an
// IPv6 packet to one of them, or an ICMPv6 neighbor solicitation or
// advertisement whose target is one of them. Everything else, and every frame
// of a queue without a socket, goes on to the kernel (XDP_PASS), except an
// ARP request for one of the stack's addresses on a queue without a socket,
// which the program answers itself (see xdpProgram).
//
// The program is attached with a bpf_link: when the last file descriptor of
// the link is closed — Close, or the death of every process holding it —
// the kernel detaches it and the interface is the kernel's again.
//
// Methods are safe for concurrent use.
type Port struct {
	ifname  string
	ifindex int
	mode    XDPMode // XDPNative or XDPGeneric once attached
	frags   bool    // the program was loaded with BPF_F_XDP_HAS_FRAGS
	logf    func(string, ...any)

	mu     sync.Mutex
	closed bool // +checklocks:mu
	xsks   *ebpf.Map
	addrs4 *ebpf.Map
	addrs6 *ebpf.Map
	prog   *ebpf.Program
	link   link.Link
}

// OpenPort loads the XDP program and its maps and attaches it to cfg.Ifname.
// Call it on a thread in the interface's network namespace.
func OpenPort(cfg PortConfig) (_ *Port, err error) {
	if cfg.XDPMode == "" {
		cfg.XDPMode = XDPAuto
	}
	if cfg.MaxQueues == 0 {
		cfg.MaxQueues = 256
	}
	if !cfg.XDPMode.Valid() {
		return nil, fmt.Errorf("xdp on %s: xdp_mode %q: must be auto, native or generic", cfg.Ifname, cfg.XDPMode)
	}
	ifi, err := net.InterfaceByName(cfg.Ifname)
	if err != nil {
		return nil, fmt.Errorf("xdp on %s: %w", cfg.Ifname, err)
	}
	p := &Port{ifname: ifi.Name, ifindex: ifi.Index, logf: cfg.Logf}
	if p.logf == nil {
		p.logf = func(string, ...any) {}
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	wrap := func(what string, err error) error {
		return fmt.Errorf("xdp on %s: %s: %w", p.ifname, what, err)
	}

	// Needed only before Linux 5.11, where BPF memory counted against
	// RLIMIT_MEMLOCK; a no-op after.
	_ = rlimit.RemoveMemlock()

	if p.xsks, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "xstack_xsks", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(cfg.MaxQueues),
	}); err != nil {
		return nil, wrap("create XSKMAP", err)
	}
	if p.addrs4, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "xstack_addrs4", Type: ebpf.Hash, KeySize: 4, ValueSize: 1, MaxEntries: 256,
	}); err != nil {
		return nil, wrap("create IPv4 address map", err)
	}
	if p.addrs6, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "xstack_addrs6", Type: ebpf.Hash, KeySize: 16, ValueSize: 1, MaxEntries: 256,
	}); err != nil {
		return nil, wrap("create IPv6 address map", err)
	}
	for _, a := range cfg.Addrs {
		if err := p.AddAddr(a); err != nil {
			return nil, err
		}
	}
	spec := &ebpf.ProgramSpec{
		Name:         "xstack_xdp",
		Type:         ebpf.XDP,
		License:      "Dual MIT/GPL",
		Instructions: xdpProgram(p.xsks.FD(), p.addrs4.FD(), p.addrs6.FD(), cfg.PassToKernel, ifi.HardwareAddr),
	}
	// The program is frags-aware (BPF_F_XDP_HAS_FRAGS, Linux 5.18)
	// always: it reads only the headers at the start of the first buffer,
	// which is all the flag asks of it, and the flag costs nothing where
	// frames fit one buffer (the kernel checks it when attaching, against
	// the MTU, and generic mode then keeps a non-linear skb as it is
	// instead of linearizing it). Without it a driver refuses to attach
	// where the MTU does not fit one page (veth: ERANGE, "Peer MTU is too
	// large to set XDP"), which multi-buffer queues need.
	if !cfg.singleBuffer {
		spec.Flags = unix.BPF_F_XDP_HAS_FRAGS
	}
	if p.prog, err = ebpf.NewProgram(spec); err != nil && spec.Flags != 0 && errors.Is(err, unix.EINVAL) {
		// A kernel before 5.18 knows no such flag.
		p.logf("xdp on %s: frags-aware program refused (%v), loading it without frags", p.ifname, err)
		spec.Flags = 0
		p.prog, err = ebpf.NewProgram(spec)
	}
	if err != nil {
		return nil, wrap("load program", err)
	}
	p.frags = spec.Flags != 0

	attach := func(flags link.XDPAttachFlags) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: p.ifindex, Flags: flags})
	}
	switch cfg.XDPMode {
	case XDPNative:
		p.link, err = attach(link.XDPDriverMode)
		if errors.Is(err, unix.EOPNOTSUPP) {
			err = &NotSupportedError{
				Feature: fmt.Sprintf("native XDP in driver %s", driverName(p.ifname)),
				Hint:    "set xdp_mode=generic or xdp_mode=auto",
				Err:     err,
			}
		}
		p.mode = XDPNative
	case XDPGeneric:
		p.link, err = attach(link.XDPGenericMode)
		p.mode = XDPGeneric
	default:
		p.link, err = attach(link.XDPDriverMode)
		p.mode = XDPNative
		if err != nil {
			p.logf("xdp on %s: native mode failed (%v), trying generic mode", p.ifname, err)
			p.link, err = attach(link.XDPGenericMode)
			p.mode = XDPGeneric
		}
	}
	if errors.Is(err, unix.ERANGE) && !p.frags {
		err = fmt.Errorf("%w: the interface's MTU needs a frags-aware XDP program (BPF_F_XDP_HAS_FRAGS), which this kernel did not load", err)
	}
	if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
		err = fmt.Errorf("%w: an XDP program is already attached to %s (another xstack process? with several lcores, proc-id 0 attaches it and the others join)", err, p.ifname)
	}
	if err != nil {
		return nil, wrap(fmt.Sprintf("attach in %s mode", p.mode), err)
	}
	p.logf("xdp on %s: attached in %s mode", p.ifname, p.mode)
	return p, nil
}

// Frags reports whether the program is frags-aware (BPF_F_XDP_HAS_FRAGS),
// so that it attaches where the MTU exceeds one page and multi-buffer
// queues (QueueConfig.MultiBuffer) receive frames larger than a UMEM frame.
func (p *Port) Frags() bool { return p.frags }

// Mode returns the XDP mode in use: XDPNative or XDPGeneric.
func (p *Port) Mode() XDPMode { return p.mode }

// Ifname returns the interface name.
func (p *Port) Ifname() string { return p.ifname }

// Ifindex returns the interface index.
func (p *Port) Ifindex() int { return p.ifindex }

// Link returns the bpf_link of the attachment, e.g. to pass its file
// descriptor to another process that must keep the program attached.
func (p *Port) Link() link.Link { return p.link }

func addrKey(a netip.Addr) (m4 bool, key []byte, err error) {
	a = a.Unmap()
	switch {
	case a.Is4():
		k := a.As4()
		return true, k[:], nil
	case a.Is6() && a.Zone() == "":
		k := a.As16()
		return false, k[:], nil
	}
	return false, nil, fmt.Errorf("address %v: want IPv4 or IPv6 without zone", a)
}

// AddAddr makes frames for a reach the stack.
func (p *Port) AddAddr(a netip.Addr) error {
	return p.updateAddr(a, "add", func(m *ebpf.Map, key []byte) error {
		return m.Update(key, uint8(1), ebpf.UpdateAny)
	})
}

// RemoveAddr gives frames for a back to the kernel.
func (p *Port) RemoveAddr(a netip.Addr) error {
	return p.updateAddr(a, "remove", func(m *ebpf.Map, key []byte) error {
		return m.Delete(key)
	})
}

// updateAddr applies op to a's entry in the address map of its family.
func (p *Port) updateAddr(a netip.Addr, what string, op func(m *ebpf.Map, key []byte) error) error {
	is4, key, err := addrKey(a)
	if err != nil {
		return fmt.Errorf("xdp on %s: %w", p.ifname, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	m := p.addrs6
	if is4 {
		m = p.addrs4
	}
	if err := op(m, key); err != nil {
		return fmt.Errorf("xdp on %s: %s address %v: %w", p.ifname, what, a, err)
	}
	return nil
}

// OpenQueue opens an AF_XDP socket on queue cfg.Queue of the port's
// interface (see Open) and enters it in the XSKMAP, so that the program
// starts redirecting that queue's frames to it. Closing the queue removes
// it. Call it on a thread in the interface's network namespace.
func (p *Port) OpenQueue(cfg QueueConfig) (*XSKQueue, error) {
	if cfg.Queue < 0 || cfg.Queue >= int(p.xsks.MaxEntries()) {
		return nil, fmt.Errorf("xsk on %s queue %d: queue index beyond the XSKMAP size %d (PortConfig.MaxQueues)",
			p.ifname, cfg.Queue, p.xsks.MaxEntries())
	}
	q, err := Open(p.ifname, cfg)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		q.Close()
		return nil, net.ErrClosed
	}
	key := uint32(cfg.Queue)
	if err := p.xsks.Update(key, uint32(q.fd), ebpf.UpdateAny); err != nil {
		q.Close()
		return nil, fmt.Errorf("xsk on %s queue %d: insert into XSKMAP: %w", p.ifname, cfg.Queue, err)
	}
	q.onClose = func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.closed {
			// The kernel also drops a closed socket from its maps;
			// doing it first stops redirects to a dying socket.
			_ = p.xsks.Delete(key)
		}
	}
	p.logf("xsk on %s queue %d: %s mode, tx checksum offload %v, multi-buffer %v", p.ifname, cfg.Queue, q.Mode(), q.TxChecksumOffload(), q.MultiBuffer())
	return q, nil
}

// Close detaches the program (closes the bpf_link) and frees the maps.
// Queues stay open but receive nothing more. Close is idempotent.
func (p *Port) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	if p.link != nil {
		if err := p.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach: %w", err))
		}
	}
	for _, c := range []interface{ Close() error }{p.prog, p.xsks, p.addrs4, p.addrs6} {
		if c == nil || isNilCloser(c) {
			continue
		}
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("xdp on %s: close: %w", p.ifname, err)
	}
	return nil
}

func isNilCloser(c interface{ Close() error }) bool {
	switch v := c.(type) {
	case *ebpf.Program:
		return v == nil
	case *ebpf.Map:
		return v == nil
	}
	return false
}

// netOrder16 returns the value a native-endian 16-bit load reads from the
// big-endian bytes of v, so the program compares header fields without
// byte swaps.
func netOrder16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// Frame layout offsets used by the program (Ethernet II, no VLAN tag).
const (
	offEtherType = 12
	ethHdrLen    = 14

	offIPv4Dst = ethHdrLen + 16 // struct iphdr daddr
	ipv4MinEnd = ethHdrLen + 20

	offARPHType = ethHdrLen + 0  // htype
	offARPProto = ethHdrLen + 2  // ptype
	offARPLens  = ethHdrLen + 4  // hlen, plen
	offARPOper  = ethHdrLen + 6  // oper
	offARPSHA   = ethHdrLen + 8  // sender hardware address
	offARPSPA   = ethHdrLen + 14 // sender protocol address
	offARPTHA   = ethHdrLen + 18 // target hardware address
	offARPTPA   = ethHdrLen + 24 // target protocol address
	arpEnd      = ethHdrLen + 28 // IPv4-over-Ethernet ARP

	offIPv6Next = ethHdrLen + 6
	offIPv6Dst  = ethHdrLen + 24
	ipv6End     = ethHdrLen + 40

	offICMPv6Type = ipv6End
	offNDTarget   = ipv6End + 8 // RFC 4861 4.3, 4.4
	ndEnd         = offNDTarget + 16

	// struct xdp_md
	offMdData          = 0
	offMdDataEnd       = 4
	offMdRxQueueIndex  = 16
	xdpPass            = 2 // XDP_PASS
	xdpTx              = 3 // XDP_TX
	ipProtoICMPv6      = 58
	icmpv6NeighSolicit = 135
	icmpv6NeighAdvert  = 136
)

// xdpProgram builds the port's program. R6 holds the context throughout
// (callee-saved across helper calls); R2/R3 hold data/data_end and are
// reloaded after a call. Every packet load is preceded by a data_end check
// covering it, which is what the verifier needs to accept it; short frames
// take the pass branch. A negative xsks builds the classifier alone, for
// tests (see the redirect label).
//
// With passToKernel and a 6-byte mac, an ARP request for one of the
// stack's addresses that arrives on a queue without a socket (an lcore
// process died and has not been restarted yet) is answered by the program
// itself, rewritten in place into the reply and sent back with XDP_TX: the
// kernel, which does not own the address, would ignore it, and a peer
// whose requests hash to that queue would lose the stack's address for
// every queue, not just the dead one. R7 is 1 while the frame is such a
// request.
func xdpProgram(xsks, addrs4, addrs6 int, passToKernel bool, mac net.HardwareAddr) asm.Instructions {
	answerARP := passToKernel && xsks >= 0 && len(mac) == 6
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.Mov.Imm(asm.R7, 0),
	}
	if passToKernel {
		// checkLen jumps to pass unless data+n <= data_end.
		checkLen := func(n int32) []asm.Instruction {
			return []asm.Instruction{
				asm.Mov.Reg(asm.R4, asm.R2),
				asm.Add.Imm(asm.R4, n),
				asm.JGT.Reg(asm.R4, asm.R3, "pass"),
			}
		}
		loadData := []asm.Instruction{
			asm.LoadMem(asm.R2, asm.R6, offMdData, asm.Word),
			asm.LoadMem(asm.R3, asm.R6, offMdDataEnd, asm.Word),
		}
		// lookup6 looks up the 16 bytes at data+off in addrs6; R0 is
		// the result.
		lookup6 := func(off int16) []asm.Instruction {
			return []asm.Instruction{
				asm.LoadMem(asm.R5, asm.R2, off, asm.DWord),
				asm.StoreMem(asm.RFP, -16, asm.R5, asm.DWord),
				asm.LoadMem(asm.R5, asm.R2, off+8, asm.DWord),
				asm.StoreMem(asm.RFP, -8, asm.R5, asm.DWord),
				asm.LoadMapPtr(asm.R1, addrs6),
				asm.Mov.Reg(asm.R2, asm.RFP),
				asm.Add.Imm(asm.R2, -16),
				asm.FnMapLookupElem.Call(),
			}
		}

		insns = append(insns, loadData...)
		insns = append(insns, checkLen(ethHdrLen)...)
		insns = append(insns,
			asm.LoadMem(asm.R5, asm.R2, offEtherType, asm.Half),
			asm.JEq.Imm(asm.R5, netOrder16(0x0800), "ipv4"),
			asm.JEq.Imm(asm.R5, netOrder16(0x0806), "arp"),
			asm.JEq.Imm(asm.R5, netOrder16(0x86dd), "ipv6"),
			asm.Ja.Label("pass"),
		)

		// IPv4: the destination address.
		insns = append(insns, asm.Mov.Reg(asm.R4, asm.R2).WithSymbol("ipv4"))
		insns = append(insns, checkLen(ipv4MinEnd)[1:]...)
		insns = append(insns,
			asm.LoadMem(asm.R5, asm.R2, offIPv4Dst, asm.Word),
			asm.Ja.Label("lookup4"),
		)

		// ARP (IPv4 over Ethernet): the target protocol address.
		insns = append(insns, asm.Mov.Reg(asm.R4, asm.R2).WithSymbol("arp"))
		insns = append(insns, checkLen(arpEnd)[1:]...)
		insns = append(insns,
			asm.LoadMem(asm.R5, asm.R2, offARPProto, asm.Half),
			asm.JNE.Imm(asm.R5, netOrder16(0x0800), "pass"),
		)
		if answerARP {
			insns = append(insns,
				asm.LoadMem(asm.R5, asm.R2, offARPHType, asm.Half),
				asm.JNE.Imm(asm.R5, netOrder16(1), "arptpa"),
				asm.LoadMem(asm.R5, asm.R2, offARPLens, asm.Half),
				asm.JNE.Imm(asm.R5, netOrder16(0x0604), "arptpa"),
				asm.LoadMem(asm.R5, asm.R2, offARPOper, asm.Half),
				asm.JNE.Imm(asm.R5, netOrder16(1), "arptpa"),
				asm.Mov.Imm(asm.R7, 1),
			)
		}
		insns = append(insns,
			asm.LoadMem(asm.R5, asm.R2, offARPTPA, asm.Word).WithSymbol("arptpa"),

			asm.StoreMem(asm.RFP, -4, asm.R5, asm.Word).WithSymbol("lookup4"),
			asm.LoadMapPtr(asm.R1, addrs4),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "pass"),
			asm.Ja.Label("redirect"),
		)

		// IPv6: the destination address, then neighbor discovery
		// (a solicitation goes to the solicited-node multicast group,
		// so its target is what names the stack).
		insns = append(insns, asm.Mov.Reg(asm.R4, asm.R2).WithSymbol("ipv6"))
		insns = append(insns, checkLen(ipv6End)[1:]...)
		insns = append(insns, lookup6(offIPv6Dst)...)
		insns = append(insns, asm.JNE.Imm(asm.R0, 0, "redirect"))
		insns = append(insns, loadData...)
		insns = append(insns, checkLen(ndEnd)...)
		insns = append(insns,
			asm.LoadMem(asm.R5, asm.R2, offIPv6Next, asm.Byte),
			asm.JNE.Imm(asm.R5, ipProtoICMPv6, "pass"),
			asm.LoadMem(asm.R5, asm.R2, offICMPv6Type, asm.Byte),
			asm.JLT.Imm(asm.R5, icmpv6NeighSolicit, "pass"),
			asm.JGT.Imm(asm.R5, icmpv6NeighAdvert, "pass"),
		)
		insns = append(insns, lookup6(offNDTarget)...)
		insns = append(insns, asm.JEq.Imm(asm.R0, 0, "pass"))
	}
	if xsks < 0 {
		// Tests classify frames with BPF_PROG_TEST_RUN: "redirect"
		// answers XDP_TX so that it differs from XDP_PASS.
		insns = append(insns,
			asm.Mov.Imm(asm.R0, xdpTx).WithSymbol("redirect"),
			asm.Return(),
		)
	} else {
		insns = append(insns,
			// bpf_redirect_map(xsks, rx_queue_index, XDP_PASS): a
			// queue without a socket falls back to the kernel.
			asm.LoadMem(asm.R2, asm.R6, offMdRxQueueIndex, asm.Word).WithSymbol("redirect"),
			asm.LoadMapPtr(asm.R1, xsks),
			asm.Mov.Imm(asm.R3, xdpPass),
			asm.FnRedirectMap.Call(),
		)
		if answerARP {
			insns = append(insns, arpReply(mac)...)
		}
		insns = append(insns, asm.Return().WithSymbol("verdict"))
	}
	if passToKernel {
		// The verifier rejects unreachable code, so the pass branch
		// exists only when something jumps to it.
		insns = append(insns,
			asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
			asm.Return(),
		)
	}
	return insns
}

// arpReply follows the redirect call: unless the call redirected (R0 is not
// XDP_PASS) or the frame is not an ARP request for the stack (R7 is 0), it
// turns the request into the reply from mac and sets R0 to XDP_TX. The
// frame keeps its length; its padding, if any, goes back as it came.
func arpReply(mac net.HardwareAddr) []asm.Instruction {
	mac4 := int32(binary.NativeEndian.Uint32(mac[:4]))
	mac2 := int32(binary.NativeEndian.Uint16(mac[4:]))
	// copy6 copies the 6 bytes at src to dst within the frame (R2).
	copy6 := func(dst, src int16) []asm.Instruction {
		return []asm.Instruction{
			asm.LoadMem(asm.R4, asm.R2, src, asm.Word),
			asm.StoreMem(asm.R2, dst, asm.R4, asm.Word),
			asm.LoadMem(asm.R4, asm.R2, src+4, asm.Half),
			asm.StoreMem(asm.R2, dst+4, asm.R4, asm.Half),
		}
	}
	// putMAC stores mac at off.
	putMAC := func(off int16) []asm.Instruction {
		return []asm.Instruction{
			asm.Mov.Imm32(asm.R4, mac4),
			asm.StoreMem(asm.R2, off, asm.R4, asm.Word),
			asm.Mov.Imm32(asm.R4, mac2),
			asm.StoreMem(asm.R2, off+4, asm.R4, asm.Half),
		}
	}
	insns := []asm.Instruction{
		asm.JNE.Imm(asm.R0, xdpPass, "verdict"),
		asm.JEq.Imm(asm.R7, 0, "verdict"),
		asm.LoadMem(asm.R2, asm.R6, offMdData, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, offMdDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, arpEnd),
		asm.JGT.Reg(asm.R4, asm.R3, "verdict"),
	}
	// Ethernet: to the requester, from the stack.
	insns = append(insns, copy6(0, offARPSHA)...)
	insns = append(insns, putMAC(6)...)
	// ARP: the requester becomes the target, the stack the sender.
	insns = append(insns, copy6(offARPTHA, offARPSHA)...)
	insns = append(insns, putMAC(offARPSHA)...)
	insns = append(insns,
		asm.LoadMem(asm.R4, asm.R2, offARPSPA, asm.Word),
		asm.LoadMem(asm.R5, asm.R2, offARPTPA, asm.Word),
		asm.StoreMem(asm.R2, offARPTPA, asm.R4, asm.Word),
		asm.StoreMem(asm.R2, offARPSPA, asm.R5, asm.Word),
		asm.Mov.Imm32(asm.R4, netOrder16(2)),
		asm.StoreMem(asm.R2, offARPOper, asm.R4, asm.Half),
		asm.Mov.Imm(asm.R0, xdpTx),
	)
	return insns
}
