// Package lossy drops a chosen share of the frames on one interface, in
// both directions, with BPF programs of its own (built with cilium/ebpf's
// asm package: no C compiler). Tests and tools/bench attach it to the peer's
// veth end of a rig, so that the link between the kernel peer and the stack
// side loses frames both ways while the stack side's interface keeps only
// xstack's own XDP program.
//
//   - ingress (frames the interface receives): an XDP program.
//   - egress (frames the interface sends): a tc program on the egress hook,
//     through a TCX link (Linux 6.6 and later), else a direct-action cls_bpf
//     filter under a clsact qdisc.
//
// Only TCP and UDP over IPv4 and IPv6 are ever dropped. ARP, neighbour
// discovery, ICMP and everything else pass and are counted apart, so that
// the rig stays reachable (neighbours resolve, ping answers) at any loss
// rate. Each candidate frame is dropped independently with the configured
// probability (bpf_get_prandom_u32 against a threshold in an array map), so
// SetLoss takes effect on the next frame, without reattaching.
//
// The tc hook sees socket buffers before segmentation: with GSO on, one
// buffer stands for many frames and a drop loses all of them. Turn GSO
// (and TSO) off on the interface for per-frame loss; the rig's peer end has
// TSO off already (its TX checksum offload is off), and an XDP program on
// a veth end turns its peer's GSO off.
//
// A Dropper is safe for concurrent use.
package lossy

import (
	"errors"
	"fmt"
	"math"
	"net"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/xstack/xstack/internal/netns"
)

// Options change how Attach attaches.
type Options struct {
	// Clsact attaches the egress program through a clsact qdisc even
	// where TCX is available (for tests of that path).
	Clsact bool
}

// Dropper is the pair of programs attached to one interface, their maps and
// their attachments.
type Dropper struct {
	ifname  string
	ifindex int
	egress  string // "tcx" or "clsact"

	mu       sync.Mutex
	closed   bool // +checklocks:mu
	loss     *ebpf.Map
	counters *ebpf.Map
	xdpProg  *ebpf.Program
	tcProg   *ebpf.Program
	xdpLink  link.Link
	tcxLink  link.Link
	cls      *clsact
}

// Direction counts the frames of one direction.
type Direction struct {
	Passed  uint64 // TCP or UDP frames let through
	Dropped uint64 // TCP or UDP frames dropped
	Other   uint64 // other frames (never dropped)
}

// Counts are a Dropper's counters since Attach.
type Counts struct {
	Egress  Direction // frames the interface sent
	Ingress Direction // frames the interface received
}

// Share returns the share of candidate frames dropped, or 0 when there
// were none.
func (d Direction) Share() float64 {
	if n := d.Passed + d.Dropped; n > 0 {
		return float64(d.Dropped) / float64(n)
	}
	return 0
}

// Attach loads the programs and attaches them to ifname in the network
// namespace ns ("" for the caller's). The loss starts at 0 both ways.
func Attach(ns, ifname string) (*Dropper, error) {
	return AttachWith(ns, ifname, Options{})
}

// AttachWith is Attach with options.
func AttachWith(ns, ifname string, o Options) (*Dropper, error) {
	d, err := load(ifname)
	if err != nil {
		return nil, err
	}
	if err := netns.Do(ns, func() error { return d.attach(o) }); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// attach attaches the loaded programs to d's interface. Call it on a thread
// in the interface's namespace.
func (d *Dropper) attach(o Options) error {
	wrap := func(what string, err error) error {
		return fmt.Errorf("lossy on %s: %s: %w", d.ifname, what, err)
	}
	ifi, err := net.InterfaceByName(d.ifname)
	if err != nil {
		return wrap("find interface", err)
	}
	d.ifindex = ifi.Index
	if d.xdpLink, err = link.AttachXDP(link.XDPOptions{Program: d.xdpProg, Interface: d.ifindex}); err != nil {
		return wrap("attach XDP program", err)
	}
	if !o.Clsact {
		d.tcxLink, err = link.AttachTCX(link.TCXOptions{Program: d.tcProg, Interface: d.ifindex, Attach: ebpf.AttachTCXEgress})
		if err == nil {
			d.egress = "tcx"
			return nil
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return wrap("attach tc program (TCX egress)", err)
		}
	}
	if d.cls, err = attachClsact(d.ifindex, d.tcProg.FD()); err != nil {
		return wrap("attach tc program (clsact egress)", err)
	}
	d.egress = "clsact"
	return nil
}

// load creates the maps and loads both programs, attached nowhere.
func load(ifname string) (*Dropper, error) {
	d := &Dropper{ifname: ifname}
	if err := d.load(); err != nil {
		d.Close()
		return nil, fmt.Errorf("lossy on %s: %w", ifname, err)
	}
	return d, nil
}

func (d *Dropper) load() (err error) {
	// Needed only before Linux 5.11, where BPF memory counted against
	// RLIMIT_MEMLOCK.
	_ = rlimit.RemoveMemlock()
	if d.loss, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "lossy_share", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: numDirs,
	}); err != nil {
		return fmt.Errorf("create loss map: %w", err)
	}
	if d.counters, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "lossy_counts", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: numDirs * numKinds,
	}); err != nil {
		return fmt.Errorf("create counter map: %w", err)
	}
	if d.xdpProg, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "lossy_xdp", Type: ebpf.XDP, License: "Dual MIT/GPL",
		Instructions: program(xdpHook, dirIngress, d.loss.FD(), d.counters.FD()),
	}); err != nil {
		return fmt.Errorf("load XDP program: %w", err)
	}
	if d.tcProg, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "lossy_tc", Type: ebpf.SchedCLS, License: "Dual MIT/GPL",
		Instructions: program(tcHook, dirEgress, d.loss.FD(), d.counters.FD()),
	}); err != nil {
		return fmt.Errorf("load tc program: %w", err)
	}
	return nil
}

// EgressHook says how the egress program is attached: "tcx" or "clsact".
func (d *Dropper) EgressHook() string { return d.egress }

// threshold turns a share into the program's threshold: a frame is dropped
// when a uniform 32-bit random number is below it.
func threshold(share float64) (uint64, error) {
	if math.IsNaN(share) || share < 0 || share > 1 {
		return 0, fmt.Errorf("loss share %v: want 0 to 1", share)
	}
	return uint64(math.Round(share * (1 << 32))), nil
}

// SetLoss sets the share (0 to 1) of TCP and UDP frames dropped on the way
// out of the interface (egress) and on the way in (ingress).
func (d *Dropper) SetLoss(egress, ingress float64) error {
	te, err := threshold(egress)
	if err != nil {
		return fmt.Errorf("lossy on %s: egress: %w", d.ifname, err)
	}
	ti, err := threshold(ingress)
	if err != nil {
		return fmt.Errorf("lossy on %s: ingress: %w", d.ifname, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return net.ErrClosed
	}
	if err := d.loss.Update(uint32(dirEgress), te, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("lossy on %s: set egress loss: %w", d.ifname, err)
	}
	if err := d.loss.Update(uint32(dirIngress), ti, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("lossy on %s: set ingress loss: %w", d.ifname, err)
	}
	return nil
}

// Counts reads the counters.
func (d *Dropper) Counts() (Counts, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return Counts{}, net.ErrClosed
	}
	var v [numDirs * numKinds]uint64
	for i := range v {
		if err := d.counters.Lookup(uint32(i), &v[i]); err != nil {
			return Counts{}, fmt.Errorf("lossy on %s: read counters: %w", d.ifname, err)
		}
	}
	dir := func(dir int) Direction {
		b := dir * numKinds
		return Direction{Passed: v[b+kindPassed], Dropped: v[b+kindDropped], Other: v[b+kindOther]}
	}
	return Counts{Egress: dir(dirEgress), Ingress: dir(dirIngress)}, nil
}

// Close detaches both programs and frees them and their maps. It is
// idempotent.
func (d *Dropper) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	if d.cls != nil {
		if err := d.cls.close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, l := range []link.Link{d.tcxLink, d.xdpLink} {
		if l != nil {
			if err := l.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, p := range []*ebpf.Program{d.xdpProg, d.tcProg} {
		if p != nil {
			p.Close()
		}
	}
	for _, m := range []*ebpf.Map{d.loss, d.counters} {
		if m != nil {
			m.Close()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("lossy on %s: close: %w", d.ifname, err)
	}
	return nil
}
