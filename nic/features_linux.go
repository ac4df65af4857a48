package nic

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/genl"
)

// The kernel's "netdev" generic netlink family (include/uapi/linux/netdev.h,
// Linux 6.3 and later) reports the XDP features of each interface's driver.
const (
	netdevCmdDevGet         = 1 // NETDEV_CMD_DEV_GET
	netdevADevIfindex       = 1 // NETDEV_A_DEV_IFINDEX
	netdevADevXDPFeatures   = 3 // NETDEV_A_DEV_XDP_FEATURES, a u64 of netdev_xdp_act
	netdevXDPActXSKZeroCopy = 8 // NETDEV_XDP_ACT_XSK_ZEROCOPY
	netdevADevXSKFeatures   = 6 // NETDEV_A_DEV_XSK_FEATURES (Linux 6.8), a u64 of netdev_xsk_flags
	netdevXSKFlagsTxCsum    = 2 // NETDEV_XSK_FLAGS_TX_CHECKSUM: the driver honours checksum requests in zero-copy mode
)

// xdpFeatures returns the netdev_xdp_act bits of the driver of interface
// ifindex, or an error when this kernel cannot tell (before 6.3). Call it on
// a thread in the interface's network namespace.
func xdpFeatures(ifindex int) (uint64, error) {
	xdp, _, err := devFeatures(ifindex)
	return xdp, err
}

// xskFeatures returns the netdev_xsk_flags of the driver of interface
// ifindex: the TX metadata requests it honours in zero-copy mode. Kernels
// before 6.8 have no such attribute, and xskFeatures returns 0. Call it on
// a thread in the interface's network namespace.
func xskFeatures(ifindex int) (uint64, error) {
	_, xsk, err := devFeatures(ifindex)
	return xsk, err
}

// devFeatures asks the netdev family for the XDP and xsk features of the
// driver of interface ifindex.
func devFeatures(ifindex int) (xdp, xsk uint64, _ error) {
	fd, err := genl.Open()
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(fd)
	fam, err := genl.Family(fd, "netdev")
	if err != nil {
		return 0, 0, err
	}
	req := genl.Request(fam, netdevCmdDevGet, unix.NLM_F_REQUEST, 1,
		genl.Attr(netdevADevIfindex, binary.NativeEndian.AppendUint32(nil, uint32(ifindex))))
	var feat, xskFeat []byte
	err = genl.Dump(fd, req, func(attrs map[uint16][]byte) {
		if idx := attrs[netdevADevIfindex]; len(idx) >= 4 && int(binary.NativeEndian.Uint32(idx)) == ifindex {
			feat = attrs[netdevADevXDPFeatures]
			xskFeat = attrs[netdevADevXSKFeatures]
		}
	})
	if err != nil {
		return 0, 0, fmt.Errorf("netdev dev-get of interface %d: %w", ifindex, err)
	}
	if len(feat) < 8 {
		return 0, 0, fmt.Errorf("netdev dev-get of interface %d: no xdp-features in the reply", ifindex)
	}
	if len(xskFeat) >= 8 {
		xsk = binary.NativeEndian.Uint64(xskFeat)
	}
	return binary.NativeEndian.Uint64(feat), xsk, nil
}
