// Package genl speaks just enough generic netlink, over x/sys, to ask the
// kernel's "netdev" family about interfaces: their XDP features (nic) and
// their NAPI instances' kthreads (internal/rig). Callers open the socket
// with Open on a thread in the network namespace they ask about.
package genl

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	ctrlAttrFamilyID   = 1 // CTRL_ATTR_FAMILY_ID
	ctrlAttrFamilyName = 2 // CTRL_ATTR_FAMILY_NAME
	headerLen          = 4 // struct genlmsghdr
)

// Open returns a bound generic netlink socket in the calling thread's
// network namespace. The caller closes it.
func Open() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("bind", err)
	}
	return fd, nil
}

// Family resolves a generic netlink family's id.
func Family(fd int, name string) (uint16, error) {
	req := Request(unix.GENL_ID_CTRL, unix.CTRL_CMD_GETFAMILY, unix.NLM_F_REQUEST, 1,
		Attr(ctrlAttrFamilyName, append([]byte(name), 0)))
	var id uint16
	err := Dump(fd, req, func(attrs map[uint16][]byte) {
		if v := attrs[ctrlAttrFamilyID]; len(v) >= 2 {
			id = binary.NativeEndian.Uint16(v)
		}
	})
	if err != nil {
		return 0, fmt.Errorf("generic netlink family %q: %w", name, err)
	}
	if id == 0 {
		return 0, fmt.Errorf("generic netlink family %q: not in this kernel", name)
	}
	return id, nil
}

// Attr encodes one netlink attribute, padded to its alignment.
func Attr(typ uint16, v []byte) []byte {
	b := binary.NativeEndian.AppendUint16(nil, uint16(unix.SizeofNlAttr+len(v)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%unix.NLA_ALIGNTO != 0 {
		b = append(b, 0)
	}
	return b
}

// Request encodes a generic netlink request: the netlink header, the
// generic header (cmd, version 1) and the attributes.
func Request(family uint16, cmd uint8, flags uint16, seq uint32, attrs ...[]byte) []byte {
	n := unix.NLMSG_HDRLEN + headerLen
	for _, a := range attrs {
		n += len(a)
	}
	b := binary.NativeEndian.AppendUint32(nil, uint32(n))
	b = binary.NativeEndian.AppendUint16(b, family)
	b = binary.NativeEndian.AppendUint16(b, flags)
	b = binary.NativeEndian.AppendUint32(b, seq)
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel's
	b = append(b, cmd, 1, 0, 0)                // genlmsghdr: cmd, version 1
	for _, a := range attrs {
		b = append(b, a...)
	}
	return b
}

// Dump sends req and calls f with the top-level attributes of every
// reply message until the reply ends (NLMSG_DONE, or the single answer of
// a request without NLM_F_DUMP).
func Dump(fd int, req []byte, f func(map[uint16][]byte)) error {
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return os.NewSyscallError("sendto", err)
	}
	dump := binary.NativeEndian.Uint16(req[6:])&unix.NLM_F_DUMP != 0
	seq := binary.NativeEndian.Uint32(req[8:])
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return os.NewSyscallError("recvfrom", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return errors.New("short netlink error")
				}
				if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
					return unix.Errno(-e)
				}
				return nil
			}
			if len(m.Data) >= headerLen {
				f(ParseAttrs(m.Data[headerLen:]))
			}
			if !dump {
				return nil
			}
		}
	}
}

// ParseAttrs splits netlink attributes (not nested ones) by type.
func ParseAttrs(b []byte) map[uint16][]byte {
	m := map[uint16][]byte{}
	for len(b) >= unix.SizeofNlAttr {
		l := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
		if l < unix.SizeofNlAttr || l > len(b) {
			break
		}
		m[typ] = b[unix.SizeofNlAttr:l]
		al := (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if al > len(b) {
			break
		}
		b = b[al:]
	}
	return m
}
