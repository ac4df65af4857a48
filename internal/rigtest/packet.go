package rigtest

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
)

// PeerPacketSocket opens an AF_PACKET socket on r's peer end, in the peer
// namespace, so that a test sends and sees frames below the peer kernel's
// own IP stack. It is bound to protocol (network byte order; 0 for a
// socket that only sends) once opts have been applied, and returns the
// descriptor, which the caller closes, and the peer interface's index.
func PeerPacketSocket(r *rig.Rig, protocol uint16, opts ...func(fd int) error) (fd, ifindex int, err error) {
	fd = -1
	err = netns.Do(r.PeerNS, func() error {
		ifi, err := net.InterfaceByName(r.PeerIf)
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(protocol)); err != nil {
			return err
		}
		for _, o := range opts {
			if err := o(fd); err != nil {
				return err
			}
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: protocol, Ifindex: ifindex})
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, 0, fmt.Errorf("AF_PACKET socket on %s in %s: %w", r.PeerIf, r.PeerNS, err)
	}
	return fd, ifindex, nil
}
