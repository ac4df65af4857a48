package lossy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// The clsact fallback, for kernels without TCX (before 6.6): a clsact qdisc
// on the interface and a direct-action cls_bpf filter on its egress hook,
// made with rtnetlink. Unlike a TCX link, the filter outlives the process
// that made it; Close removes the qdisc and its filters with it, and so
// does deleting the interface (or its namespace).

// Values from linux/pkt_sched.h and linux/pkt_cls.h, which x/sys/unix does
// not carry.
const (
	tcHClsact        = 0xFFFFFFF1 // TC_H_CLSACT, the parent of a clsact qdisc
	tcHClsactHandle  = 0xFFFF0000 // TC_H_MAKE(TC_H_CLSACT, 0)
	tcHEgressParent  = 0xFFFFFFF3 // TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_EGRESS)
	tcaBPFFD         = 6          // TCA_BPF_FD
	tcaBPFName       = 7          // TCA_BPF_NAME
	tcaBPFFlags      = 8          // TCA_BPF_FLAGS
	tcaBPFActDirect  = 1          // TCA_BPF_FLAG_ACT_DIRECT
	tcmsgLen         = 20         // struct tcmsg
	filterPrio       = 1
	ethPAllNetOrder  = 0x0300 // htons(ETH_P_ALL) as the little-endian u16 tcm_info wants it
	clsactFilterName = "xstack_lossy"
)

// clsact is an egress filter attached through a clsact qdisc. The netlink
// socket was made in the interface's namespace and keeps talking to it.
type clsact struct {
	fd      int
	ifindex int
	seq     uint32
}

// attachClsact creates a clsact qdisc on ifindex and attaches progFD to its
// egress hook. Call it on a thread in the interface's namespace. It fails
// with EEXIST if the interface already has a clsact qdisc, which it would
// otherwise remove on Close.
func attachClsact(ifindex, progFD int) (_ *clsact, err error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	c := &clsact{fd: fd, ifindex: ifindex}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	if err := c.request(unix.RTM_NEWQDISC, unix.NLM_F_CREATE|unix.NLM_F_EXCL,
		tcmsg(ifindex, tcHClsactHandle, tcHClsact, 0), attr(unix.TCA_KIND, cstring("clsact"))); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("add clsact qdisc: %w", err)
	}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	opts := append(attr(tcaBPFFD, u32(uint32(progFD))), attr(tcaBPFName, cstring(clsactFilterName))...)
	opts = append(opts, attr(tcaBPFFlags, u32(tcaBPFActDirect))...)
	if err := c.request(unix.RTM_NEWTFILTER, unix.NLM_F_CREATE|unix.NLM_F_EXCL,
		tcmsg(ifindex, 0, tcHEgressParent, filterPrio<<16|ethPAllNetOrder),
		append(attr(unix.TCA_KIND, cstring("bpf")), attr(unix.TCA_OPTIONS, opts)...)); err != nil {
		return nil, fmt.Errorf("add egress bpf filter: %w", err)
	}
	return c, nil
}

// close deletes the qdisc (and the filter with it) and the socket.
func (c *clsact) close() error {
	err := c.request(unix.RTM_DELQDISC, 0, tcmsg(c.ifindex, tcHClsactHandle, tcHClsact, 0), attr(unix.TCA_KIND, cstring("clsact")))
	unix.Close(c.fd)
	if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EINVAL) {
		// The interface, or its qdisc, is already gone.
		err = nil
	}
	if err != nil {
		return fmt.Errorf("delete clsact qdisc: %w", err)
	}
	return nil
}

// request sends one rtnetlink request with NLM_F_ACK and waits for the
// acknowledgement.
func (c *clsact) request(typ uint16, flags uint16, hdr []byte, attrs []byte) error {
	c.seq++
	body := append(hdr, attrs...)
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], c.seq)
	msg = append(msg, body...)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != c.seq || m.Header.Type != unix.NLMSG_ERROR {
				continue
			}
			if len(m.Data) < 4 {
				return errors.New("short netlink error message")
			}
			if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
				return unix.Errno(-e)
			}
			return nil
		}
	}
}

// tcmsg encodes struct tcmsg.
func tcmsg(ifindex int, handle, parent, info uint32) []byte {
	b := make([]byte, tcmsgLen)
	b[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:], uint32(int32(ifindex)))
	binary.NativeEndian.PutUint32(b[8:], handle)
	binary.NativeEndian.PutUint32(b[12:], parent)
	binary.NativeEndian.PutUint32(b[16:], info)
	return b
}

// attr encodes one rtattr, padded to 4 bytes.
func attr(typ uint16, data []byte) []byte {
	l := unix.SizeofRtAttr + len(data)
	b := make([]byte, (l+3)&^3)
	binary.NativeEndian.PutUint16(b[0:], uint16(l))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[unix.SizeofRtAttr:], data)
	return b
}

func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func cstring(s string) []byte { return append([]byte(s), 0) }
