package nic

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RSSConfig is what a driver reports of its receive side scaling: the hash
// key, the indirection table from hash to queue (ethtool -x), the hash
// function, and whether the TCP flow hash covers the ports (ethtool -n
// <if> rx-flow-hash tcp4/tcp6).
type RSSConfig struct {
	Key      []byte
	Table    []uint32
	HashFunc uint8 // ETH_RSS_HASH_* bits of the function in use
	// InputXfrm is non-zero when the input is transformed before hashing
	// (symmetric hashing), which a plain Toeplitz model does not follow.
	InputXfrm uint8
	// TCP4Ports and TCP6Ports are set when the NIC hashes TCP over IPv4
	// (IPv6) on addresses and both ports.
	TCP4Ports, TCP6Ports bool
}

// Values of linux/ethtool.h.
const (
	ethRSSHashTop   = 1 << 0 // ETH_RSS_HASH_TOP: Toeplitz
	ethtoolTCPv4    = 0x01   // TCP_V4_FLOW
	ethtoolTCPv6    = 0x05   // TCP_V6_FLOW
	rxhIPSrc        = 1 << 4
	rxhIPDst        = 1 << 5
	rxhL4Bytes01    = 1 << 6
	rxhL4Bytes23    = 1 << 7
	rxhFourTuple    = rxhIPSrc | rxhIPDst | rxhL4Bytes01 | rxhL4Bytes23
	rxfhHeaderBytes = 24 // struct ethtool_rxfh up to rss_config[]
	rxnfcBytes      = 256
)

// Toeplitz reports whether the NIC hashes with the Toeplitz function on
// the TCP 4-tuple of both families, untransformed: what a port choice by
// hash needs.
func (c *RSSConfig) Toeplitz() bool {
	return c.HashFunc&ethRSSHashTop != 0 && c.InputXfrm == 0 &&
		len(c.Key) > 0 && len(c.Table) > 0 && c.TCP4Ports && c.TCP6Ports
}

// ReadRSS reads the RSS set-up of the interface through the ETHTOOL_GRSSH
// and ETHTOOL_GRXFH ioctls. Drivers that do not expose it (veth among
// them) fail with an error that wraps unix.EOPNOTSUPP. Call it on a thread
// in the interface's network namespace.
func ReadRSS(ifname string) (RSSConfig, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return RSSConfig{}, fmt.Errorf("RSS of %s: %w", ifname, err)
	}
	defer unix.Close(fd)

	// The first call asks for the sizes, the second for the contents.
	var head [rxfhHeaderBytes]byte
	binary.NativeEndian.PutUint32(head[0:], unix.ETHTOOL_GRSSH)
	if err := ethtoolIoctl(fd, ifname, unsafe.Pointer(&head[0])); err != nil {
		return RSSConfig{}, fmt.Errorf("RSS of %s (ethtool -x): %w", ifname, err)
	}
	indir := binary.NativeEndian.Uint32(head[8:])
	keyLen := binary.NativeEndian.Uint32(head[12:])
	if indir > 1<<16 || keyLen > 1<<10 {
		return RSSConfig{}, fmt.Errorf("RSS of %s: driver reports a %d-entry table and a %d-byte key", ifname, indir, keyLen)
	}
	// uint32 elements keep the buffer aligned for the table.
	buf := make([]uint32, (rxfhHeaderBytes+4*int(indir)+int(keyLen)+3)/4)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), 4*len(buf))
	copy(b, head[:])
	if err := ethtoolIoctl(fd, ifname, unsafe.Pointer(&buf[0])); err != nil {
		return RSSConfig{}, fmt.Errorf("RSS of %s (ethtool -x): %w", ifname, err)
	}
	c, err := parseRxfh(b)
	if err != nil {
		return RSSConfig{}, fmt.Errorf("RSS of %s: %w", ifname, err)
	}
	for _, flow := range []struct {
		typ uint32
		set *bool
	}{{ethtoolTCPv4, &c.TCP4Ports}, {ethtoolTCPv6, &c.TCP6Ports}} {
		fields, err := rxFlowHash(fd, ifname, flow.typ)
		if err != nil {
			return RSSConfig{}, fmt.Errorf("RSS of %s (ethtool -n rx-flow-hash): %w", ifname, err)
		}
		*flow.set = fields&rxhFourTuple == rxhFourTuple
	}
	return c, nil
}

// parseRxfh decodes a filled struct ethtool_rxfh: the header, then the
// indirection table, then the key.
func parseRxfh(b []byte) (RSSConfig, error) {
	if len(b) < rxfhHeaderBytes {
		return RSSConfig{}, errors.New("short ethtool_rxfh")
	}
	indir := int(binary.NativeEndian.Uint32(b[8:]))
	keyLen := int(binary.NativeEndian.Uint32(b[12:]))
	if rxfhHeaderBytes+4*indir+keyLen > len(b) {
		return RSSConfig{}, fmt.Errorf("ethtool_rxfh of %d bytes holds no %d-entry table and %d-byte key", len(b), indir, keyLen)
	}
	c := RSSConfig{HashFunc: b[16], InputXfrm: b[17], Table: make([]uint32, indir), Key: make([]byte, keyLen)}
	p := b[rxfhHeaderBytes:]
	for i := range c.Table {
		c.Table[i] = binary.NativeEndian.Uint32(p[4*i:])
	}
	copy(c.Key, p[4*indir:])
	return c, nil
}

// rxFlowHash returns the RXH_* fields the NIC hashes flows of flowType on.
func rxFlowHash(fd int, ifname string, flowType uint32) (uint64, error) {
	var buf [rxnfcBytes / 8]uint64 // struct ethtool_rxnfc, 8-byte aligned
	b := unsafe.Slice((*byte)(unsafe.Pointer(&buf[0])), rxnfcBytes)
	binary.NativeEndian.PutUint32(b[0:], unix.ETHTOOL_GRXFH)
	binary.NativeEndian.PutUint32(b[4:], flowType)
	if err := ethtoolIoctl(fd, ifname, unsafe.Pointer(&buf[0])); err != nil {
		return 0, err
	}
	return binary.NativeEndian.Uint64(b[8:]), nil
}

func ethtoolIoctl(fd int, ifname string, data unsafe.Pointer) error {
	var ifr ifreqData
	copy(ifr.name[:unix.IFNAMSIZ-1], ifname)
	ifr.data = data
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return errno
	}
	return nil
}
