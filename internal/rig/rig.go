// Package rig builds the test and benchmark rig: two network namespaces
// joined by a veth pair. The stack side ("<name>-s") holds the interface
// xstack attaches to; the peer side ("<name>-p") is the real Linux kernel
// that tests and benchmarks use as the other end.
//
// Addresses come from the benchmark ranges 198.18.0.0/15 and 2001:2::/48.
// xstack's addresses (StackAddr4/6) are not configured on the kernel's
// interface: the XDP program takes their traffic. The kernel on the stack
// side has KernelAddr4/6 on the same veth, for traffic that must pass to the
// kernel. Nothing is done to the root namespace's interfaces.
package rig

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"

	"github.com/xstack/xstack/internal/netns"
)

// Options describe a rig.
type Options struct {
	// Name is the rig's name: namespaces are Name+"-s" and Name+"-p".
	// Empty means a random "xs" name. At most 10 characters.
	Name string
	// Queues is the number of RX/TX queues of each veth end (default 1).
	Queues int
	// RxCPU is where each side's receive work runs (default RxSender,
	// veth as it comes). RxReceiver runs it on StackCPU for the stack
	// side's end and on PeerCPU for the peer's, as on a NIC.
	RxCPU    RxCPU
	StackCPU int
	PeerCPU  int
}

// Rig is a pair of namespaces joined by a veth pair.
type Rig struct {
	Name    string
	StackNS string // namespace of the stack side
	PeerNS  string // namespace of the kernel peer
	StackIf string // veth end in StackNS that xstack attaches to
	PeerIf  string // veth end in PeerNS
	Queues  int

	// RxCPU, StackCPU and PeerCPU are the receive mode (Options.RxCPU).
	RxCPU    RxCPU
	StackCPU int
	PeerCPU  int

	StackMAC net.HardwareAddr
	PeerMAC  net.HardwareAddr

	StackAddr4  netip.Addr // xstack's IPv4 address
	PeerAddr4   netip.Addr // the peer kernel's IPv4 address
	KernelAddr4 netip.Addr // the stack-side kernel's IPv4 address
	Prefix4     int
	StackAddr6  netip.Addr
	PeerAddr6   netip.Addr
	KernelAddr6 netip.Addr
	Prefix6     int
}

// Fixed rig addressing. Namespaces isolate rigs from each other, so every rig
// uses the same addresses.
var (
	stackAddr4  = netip.MustParseAddr("198.18.0.1")
	peerAddr4   = netip.MustParseAddr("198.18.0.2")
	kernelAddr4 = netip.MustParseAddr("198.18.0.3")
	stackAddr6  = netip.MustParseAddr("2001:2::1")
	peerAddr6   = netip.MustParseAddr("2001:2::2")
	kernelAddr6 = netip.MustParseAddr("2001:2::3")
)

// ErrNotRoot is returned by Up when the process lacks the privileges to
// create namespaces.
var ErrNotRoot = errors.New("rig: creating network namespaces needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)")

// Up creates a rig. On error, whatever was created is removed.
func Up(o Options) (r *Rig, err error) {
	if os.Geteuid() != 0 {
		return nil, ErrNotRoot
	}
	if o.Name == "" {
		var b [4]byte
		rand.Read(b[:])
		o.Name = "xs" + hex.EncodeToString(b[:])
	}
	if len(o.Name) > 10 {
		return nil, fmt.Errorf("rig: name %q longer than 10 characters", o.Name)
	}
	if o.Queues <= 0 {
		o.Queues = 1
	}
	if o.RxCPU == "" {
		o.RxCPU = RxSender
	}
	if _, err := ParseRxCPU(string(o.RxCPU)); err != nil {
		return nil, err
	}
	if o.RxCPU == RxReceiver && (o.StackCPU < 0 || o.PeerCPU < 0 || o.StackCPU == o.PeerCPU) {
		return nil, fmt.Errorf("rig: -rx-cpu %s needs two distinct CPUs (have stack %d, peer %d)", o.RxCPU, o.StackCPU, o.PeerCPU)
	}
	r = &Rig{
		Name:        o.Name,
		StackNS:     o.Name + "-s",
		PeerNS:      o.Name + "-p",
		StackIf:     "xs0",
		PeerIf:      "xp0",
		Queues:      o.Queues,
		RxCPU:       o.RxCPU,
		StackCPU:    o.StackCPU,
		PeerCPU:     o.PeerCPU,
		StackAddr4:  stackAddr4,
		PeerAddr4:   peerAddr4,
		KernelAddr4: kernelAddr4,
		Prefix4:     16,
		StackAddr6:  stackAddr6,
		PeerAddr6:   peerAddr6,
		KernelAddr6: kernelAddr6,
		Prefix6:     64,
	}
	if netns.Exists(r.StackNS) || netns.Exists(r.PeerNS) {
		return nil, fmt.Errorf("rig %s: namespace already exists (remove it with: go run ./tools/rig down -name %s)", r.Name, r.Name)
	}
	// A failed step returns a nil rig: remove what was made by name.
	name := r.Name
	defer func() {
		if err != nil {
			Remove(name)
			r = nil
		}
	}()
	q := fmt.Sprint(o.Queues)
	steps := [][]string{
		{"ip", "netns", "add", r.StackNS},
		{"ip", "netns", "add", r.PeerNS},
		// Create the pair inside the stack namespace, so no interface ever
		// appears in the root namespace, then move one end to the peer.
		{"ip", "-n", r.StackNS, "link", "add", r.StackIf, "numtxqueues", q, "numrxqueues", q,
			"type", "veth", "peer", "name", r.PeerIf, "numtxqueues", q, "numrxqueues", q},
		{"ip", "-n", r.StackNS, "link", "set", r.PeerIf, "netns", r.PeerNS},
		{"ip", "-n", r.StackNS, "link", "set", "lo", "up"},
		{"ip", "-n", r.PeerNS, "link", "set", "lo", "up"},
		{"ip", "netns", "exec", r.StackNS, "sysctl", "-qw", "net.ipv6.conf." + r.StackIf + ".accept_dad=0"},
		{"ip", "netns", "exec", r.PeerNS, "sysctl", "-qw", "net.ipv6.conf." + r.PeerIf + ".accept_dad=0"},
		{"ip", "-n", r.StackNS, "addr", "add", fmt.Sprintf("%s/%d", r.KernelAddr4, r.Prefix4), "dev", r.StackIf},
		{"ip", "-n", r.StackNS, "addr", "add", fmt.Sprintf("%s/%d", r.KernelAddr6, r.Prefix6), "dev", r.StackIf, "nodad"},
		{"ip", "-n", r.PeerNS, "addr", "add", fmt.Sprintf("%s/%d", r.PeerAddr4, r.Prefix4), "dev", r.PeerIf},
		{"ip", "-n", r.PeerNS, "addr", "add", fmt.Sprintf("%s/%d", r.PeerAddr6, r.Prefix6), "dev", r.PeerIf, "nodad"},
		{"ip", "-n", r.StackNS, "link", "set", r.StackIf, "up"},
		{"ip", "-n", r.PeerNS, "link", "set", r.PeerIf, "up"},
	}
	if o.Queues > 1 {
		// veth delivers a frame to the receive queue of the transmit queue
		// the sender picked, and Linux picks a socket's queue by its
		// transmit hash, which it draws anew when a SYN or a segment times
		// out (sk_rethink_txhash). A flow could then move to another
		// queue, and so to another lcore, in mid-handshake, where a NIC's
		// RSS hash of the 4-tuple never moves it. Keep the hash fixed on
		// the peer's side.
		steps = append(steps, []string{"ip", "netns", "exec", r.PeerNS, "sysctl", "-qw", "net.core.txrehash=0"})
	}
	for _, s := range steps {
		if err := run(s...); err != nil {
			return nil, fmt.Errorf("rig %s: %w", r.Name, err)
		}
	}
	// veth hands locally made packets over with partial checksums (TX
	// checksum offload); AF_XDP delivers those bytes as they are and the
	// stack would drop them as corrupt. Turn it off on the peer's end.
	if err := r.PeerChecksumOffload(false); err != nil {
		return nil, fmt.Errorf("rig %s: %w", r.Name, err)
	}
	if r.RxCPU == RxReceiver {
		if err := r.receiverRx(); err != nil {
			return nil, err
		}
	}
	if r.StackMAC, err = r.mac(r.StackNS, r.StackIf); err != nil {
		return nil, err
	}
	if r.PeerMAC, err = r.mac(r.PeerNS, r.PeerIf); err != nil {
		return nil, err
	}
	return r, nil
}

// PeerChecksumOffload turns TX checksum offload on the peer's veth end on
// or off (ethtool -K <peer> tx on|off).
func (r *Rig) PeerChecksumOffload(on bool) error {
	v := "off"
	if on {
		v = "on"
	}
	return run("ip", "netns", "exec", r.PeerNS, "ethtool", "-K", r.PeerIf, "tx", v)
}

func (r *Rig) mac(ns, ifname string) (net.HardwareAddr, error) {
	var hw net.HardwareAddr
	err := netns.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		hw = ifi.HardwareAddr
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rig %s: read MAC of %s: %w", r.Name, ifname, err)
	}
	return hw, nil
}

// Down removes the rig's namespaces (and with them the veth pair, any XDP
// program on it, and in RxReceiver mode its NAPI kthreads and settings,
// which belong to the veth devices). It is safe to call more than once.
func (r *Rig) Down() error {
	return Remove(r.Name)
}

// Remove deletes the namespaces of the rig with the given name, if present.
func Remove(name string) error {
	var errs []error
	for _, ns := range []string{name + "-s", name + "-p"} {
		if !netns.Exists(ns) {
			continue
		}
		if err := run("ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Do runs f on a thread inside namespace ns (r.StackNS or r.PeerNS). Sockets
// made inside f keep working outside it.
func (r *Rig) Do(ns string, f func() error) error { return netns.Do(ns, f) }

// Command returns a command that runs inside namespace ns.
func (r *Rig) Command(ns string, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Run runs a command inside namespace ns and returns its combined output.
func (r *Rig) Run(ns string, name string, args ...string) (string, error) {
	out, err := r.Command(ns, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), ns, err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// XDPAttached reports whether an XDP program is attached to the stack-side
// interface.
func (r *Rig) XDPAttached() (bool, error) {
	out, err := r.Run(r.StackNS, "ip", "-d", "link", "show", "dev", r.StackIf)
	if err != nil {
		return false, err
	}
	return strings.Contains(out, "prog/xdp"), nil
}

// PortConfig returns the [port0] section of a config.ini that puts an
// xstack process on the stack-side interface, with the stack's addresses.
// The tests' config and tools/bench's both use it, so that a change of the
// rig's addressing reaches both.
func (r *Rig) PortConfig() string {
	return fmt.Sprintf(`[port0]
ifname=%s
netns=%s
addr=%s
netmask=255.255.0.0
addr6=%s/%d
`, r.StackIf, r.StackNS, r.StackAddr4, r.StackAddr6, r.Prefix6)
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
