package nic

import (
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/netns"
)

func TestParseRxfh(t *testing.T) {
	key := []byte{0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2}
	table := []uint32{0, 1, 1, 0, 3}
	b := make([]byte, rxfhHeaderBytes+4*len(table)+len(key))
	binary.NativeEndian.PutUint32(b[8:], uint32(len(table)))
	binary.NativeEndian.PutUint32(b[12:], uint32(len(key)))
	b[16] = ethRSSHashTop
	for i, q := range table {
		binary.NativeEndian.PutUint32(b[rxfhHeaderBytes+4*i:], q)
	}
	copy(b[rxfhHeaderBytes+4*len(table):], key)

	c, err := parseRxfh(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(c.Key) != string(key) || len(c.Table) != len(table) || c.HashFunc != ethRSSHashTop {
		t.Fatalf("parsed %+v", c)
	}
	for i := range table {
		if c.Table[i] != table[i] {
			t.Fatalf("table[%d] = %d, want %d", i, c.Table[i], table[i])
		}
	}
	if c.Toeplitz() {
		t.Error("Toeplitz() without the TCP 4-tuple hash")
	}
	c.TCP4Ports, c.TCP6Ports = true, true
	if !c.Toeplitz() {
		t.Error("Toeplitz() = false for a Toeplitz 4-tuple set-up")
	}
	c.InputXfrm = 1
	if c.Toeplitz() {
		t.Error("Toeplitz() with symmetric input")
	}

	// A driver that reports more than the buffer holds.
	if _, err := parseRxfh(b[:len(b)-1]); err == nil {
		t.Error("parseRxfh accepted a truncated key")
	}
	if _, err := parseRxfh(b[:rxfhHeaderBytes-1]); err == nil {
		t.Error("parseRxfh accepted a truncated header")
	}
}

// veth has no RSS: ReadRSS says so with EOPNOTSUPP, which start-up takes as
// "steer by port".
func TestReadRSSVeth(t *testing.T) {
	r := newRig(t)
	err := netns.Do(r.StackNS, func() error {
		_, err := ReadRSS(r.StackIf)
		return err
	})
	if !errors.Is(err, unix.EOPNOTSUPP) {
		t.Fatalf("ReadRSS(veth) = %v, want EOPNOTSUPP", err)
	}
	err = netns.Do(r.StackNS, func() error {
		_, err := ReadRSS("xsnosuchif0")
		return err
	})
	if !errors.Is(err, unix.ENODEV) {
		t.Fatalf("ReadRSS(missing interface) = %v, want ENODEV", err)
	}
}
