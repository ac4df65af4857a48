package nic

// XDPMode is how the XDP program is attached to an interface (config.ini's
// xdp_mode).
type XDPMode string

const (
	XDPAuto    XDPMode = "auto"    // native if the driver supports it, else generic
	XDPNative  XDPMode = "native"  // in the driver (XDP_FLAGS_DRV_MODE)
	XDPGeneric XDPMode = "generic" // after skb allocation (XDP_FLAGS_SKB_MODE)
)

// Valid reports whether m is one of the modes.
func (m XDPMode) Valid() bool { return m == XDPAuto || m == XDPNative || m == XDPGeneric }

// ZeroCopyMode selects AF_XDP zero-copy (config.ini's zerocopy).
type ZeroCopyMode string

const (
	ZeroCopyAuto ZeroCopyMode = "auto" // zero-copy if the driver supports it, else copy
	ZeroCopyOn   ZeroCopyMode = "on"   // XDP_ZEROCOPY; fail if unsupported
	ZeroCopyOff  ZeroCopyMode = "off"  // XDP_COPY
)

// Valid reports whether m is one of the modes.
func (m ZeroCopyMode) Valid() bool { return m == ZeroCopyAuto || m == ZeroCopyOn || m == ZeroCopyOff }

// TxChecksumMode selects AF_XDP TX checksum offload (config.ini's
// tx_checksum): whether a queue registers its UMEM with TX metadata, so that
// a frame may ask the device to fill in its L4 checksum (TxChecksumOffloader).
type TxChecksumMode string

const (
	// TxChecksumAuto uses the offload where the kernel has TX metadata
	// (Linux 6.8) and the socket can honour it: always in copy mode, where
	// the kernel sends an skb with CHECKSUM_PARTIAL; in zero-copy mode only
	// where the driver reports the xsk tx-checksum feature.
	TxChecksumAuto TxChecksumMode = "auto"
	// TxChecksumOn is TxChecksumAuto that fails where the offload is
	// unavailable.
	TxChecksumOn TxChecksumMode = "on"
	// TxChecksumOff never registers TX metadata: the caller computes
	// every checksum.
	TxChecksumOff TxChecksumMode = "off"
	// TxChecksumSoftware registers TX metadata with XDP_UMEM_TX_SW_CSUM:
	// the kernel computes a requested checksum itself (skb_checksum_help)
	// before the frame reaches the driver, so the wire carries a complete
	// checksum whatever the device does with CHECKSUM_PARTIAL. The kernel
	// honours it in copy mode only; for testing and for devices whose
	// checksum offload is not to be trusted.
	TxChecksumSoftware TxChecksumMode = "software"
)

// Valid reports whether m is one of the modes.
func (m TxChecksumMode) Valid() bool {
	return m == TxChecksumAuto || m == TxChecksumOn || m == TxChecksumOff || m == TxChecksumSoftware
}
