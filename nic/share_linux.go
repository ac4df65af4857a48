package nic

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// SharedFDs returns the file descriptors another process needs to join the
// port (JoinPort): the XSKMAP, the IPv4 and IPv6 address maps and the
// bpf_link, in that order. They stay owned by p; pass them with SCM_RIGHTS.
// A process that holds the link's descriptor keeps the program attached, so
// the NIC stays with the stack while any lcore process lives and returns to
// the kernel when the last one dies.
func (p *Port) SharedFDs() ([]int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, net.ErrClosed
	}
	raw, ok := p.link.(interface{ FD() int })
	if !ok {
		return nil, fmt.Errorf("xdp on %s: the link of type %T has no file descriptor to share", p.ifname, p.link)
	}
	return []int{p.xsks.FD(), p.addrs4.FD(), p.addrs6.FD(), raw.FD()}, nil
}

// JoinPort builds a Port from the descriptors another process's SharedFDs
// returned (received over a Unix socket). The new Port owns the descriptors:
// its Close closes them, which detaches nothing while another process still
// holds the link. mode is the attachment mode the primary reported.
func JoinPort(ifname string, mode XDPMode, fds []int, logf func(string, ...any)) (_ *Port, err error) {
	if len(fds) != 4 {
		return nil, fmt.Errorf("xdp on %s: join: want 4 descriptors (XSKMAP, address maps, link), got %d", ifname, len(fds))
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("xdp on %s: %w", ifname, err)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	p := &Port{ifname: ifi.Name, ifindex: ifi.Index, mode: mode, logf: logf}
	taken := 0
	defer func() {
		if err != nil {
			p.Close()
			for _, fd := range fds[taken:] {
				unix.Close(fd)
			}
		}
	}()
	maps := []**ebpf.Map{&p.xsks, &p.addrs4, &p.addrs6}
	for i, m := range maps {
		if *m, err = ebpf.NewMapFromFD(fds[i]); err != nil {
			return nil, fmt.Errorf("xdp on %s: join: map %d: %w", ifname, i, err)
		}
		taken++
	}
	if p.xsks.Type() != ebpf.XSKMap {
		return nil, errors.New("xdp on " + ifname + ": join: the first descriptor is not an XSKMAP")
	}
	if p.link, err = link.NewFromFD(fds[3]); err != nil {
		return nil, fmt.Errorf("xdp on %s: join: link: %w", ifname, err)
	}
	taken++
	return p, nil
}
