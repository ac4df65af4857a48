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
	netdevADevXDPZCMaxSegs  = 4 // NETDEV_A_DEV_XDP_ZC_MAX_SEGS (Linux 6.6), a u32: descriptors per frame in zero-copy TX
	netdevADevXSKFeatures   = 6 // NETDEV_A_DEV_XSK_FEATURES (Linux 6.8), a u64 of netdev_xsk_flags
	netdevXSKFlagsTxCsum    = 2 // NETDEV_XSK_FLAGS_TX_CHECKSUM: the driver honours checksum requests in zero-copy mode
)

// xdpFeatures returns the netdev_xdp_act bits of the driver of interface
// ifindex, or an error when this kernel cannot tell (before 6.3). Call it on
// a thread in the interface's network namespace.
func xdpFeatures(ifindex int) (uint64, error) {
	f, err := devFeatures(ifindex)
	return f.xdp, err
}

// xskFeatures returns the netdev_xsk_flags of the driver of interface
// ifindex: the TX metadata requests it honours in zero-copy mode. Kernels
// before 6.8 have no such attribute, and xskFeatures returns 0. Call it on
// a thread in the interface's network namespace.
func xskFeatures(ifindex int) (uint64, error) {
	f, err := devFeatures(ifindex)
	return f.xsk, err
}

// devFeat are the features the netdev family reports for one interface.
type devFeat struct {
	xdp, xsk  uint64
	zcMaxSegs uint32 // 0 where the kernel does not report it
}

// devFeatures asks the netdev family for the XDP and xsk features of the
// driver of interface ifindex.
func devFeatures(ifindex int) (devFeat, error) {
	var f devFeat
	fd, err := genl.Open()
	if err != nil {
		return f, err
	}
	defer unix.Close(fd)
	fam, err := genl.Family(fd, "netdev")
	if err != nil {
		return f, err
	}
	req := genl.Request(fam, netdevCmdDevGet, unix.NLM_F_REQUEST, 1,
		genl.Attr(netdevADevIfindex, binary.NativeEndian.AppendUint32(nil, uint32(ifindex))))
	var feat, xskFeat, zcSegs []byte
	err = genl.Dump(fd, req, func(attrs map[uint16][]byte) {
		if idx := attrs[netdevADevIfindex]; len(idx) >= 4 && int(binary.NativeEndian.Uint32(idx)) == ifindex {
			feat = attrs[netdevADevXDPFeatures]
			xskFeat = attrs[netdevADevXSKFeatures]
			zcSegs = attrs[netdevADevXDPZCMaxSegs]
		}
	})
	if err != nil {
		return f, fmt.Errorf("netdev dev-get of interface %d: %w", ifindex, err)
	}
	if len(feat) < 8 {
		return f, fmt.Errorf("netdev dev-get of interface %d: no xdp-features in the reply", ifindex)
	}
	f.xdp = binary.NativeEndian.Uint64(feat)
	if len(xskFeat) >= 8 {
		f.xsk = binary.NativeEndian.Uint64(xskFeat)
	}
	if len(zcSegs) >= 4 {
		f.zcMaxSegs = binary.NativeEndian.Uint32(zcSegs)
	}
	return f, nil
}
