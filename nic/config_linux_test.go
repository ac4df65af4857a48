package nic

import (
	"encoding/binary"
	"strings"
	"testing"
)

func TestQueueConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*QueueConfig)
		err  string // substring; empty means valid
	}{
		{"defaults", func(*QueueConfig) {}, ""},
		{"rx ring not power of two", func(c *QueueConfig) { c.RxRing = 1000 }, "rx_ring size 1000"},
		{"tx ring zero after default", func(c *QueueConfig) { c.TxRing = -1 }, "tx_ring size -1"},
		{"fill ring", func(c *QueueConfig) { c.FillRing = 3 }, "fill ring size 3"},
		{"frame size small", func(c *QueueConfig) { c.FrameSize = 1024 }, "frame_size 1024"},
		{"frame size odd", func(c *QueueConfig) { c.FrameSize = 3000 }, "frame_size 3000"},
		{"frames", func(c *QueueConfig) { c.Frames = 1 }, "frames 1"},
		{"zerocopy", func(c *QueueConfig) { c.ZeroCopy = "yes" }, `zerocopy "yes"`},
		{"tx checksum", func(c *QueueConfig) { c.TxChecksum = "hw" }, `tx_checksum "hw"`},
		{"tx checksum software", func(c *QueueConfig) { c.TxChecksum = TxChecksumSoftware }, ""},
		{"tx checksum software in zero-copy", func(c *QueueConfig) {
			c.TxChecksum, c.ZeroCopy = TxChecksumSoftware, ZeroCopyOn
		}, "only in copy mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c QueueConfig
			tc.mod(&c)
			c.setDefaults()
			err := c.validate()
			if tc.err == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("validate = %v, want error containing %q", err, tc.err)
			}
		})
	}
}

func TestNetOrder16(t *testing.T) {
	// The program compares a native-endian load of bytes 08 00 with
	// this value.
	b := []byte{0x08, 0x00}
	got := int32(binary.NativeEndian.Uint16(b))
	if netOrder16(0x0800) != got {
		t.Fatalf("netOrder16(0x0800) = %#x, want %#x", netOrder16(0x0800), got)
	}
}
