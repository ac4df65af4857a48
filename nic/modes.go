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
