package rigtest

import (
	"encoding/binary"
	"fmt"
)

// CheckPcap checks a classic pcap file as xstack writes it (microsecond
// timestamps, LINKTYPE_ETHERNET, the given snaplen), calls frame (when not
// nil) with each record's data, and returns the number of records.
func CheckPcap(b []byte, snaplen int, frame func([]byte)) (int, error) {
	le := binary.LittleEndian
	if len(b) < 24 || le.Uint32(b) != 0xa1b2c3d4 || le.Uint16(b[4:]) != 2 || le.Uint16(b[6:]) != 4 ||
		le.Uint32(b[16:]) != uint32(snaplen) || le.Uint32(b[20:]) != 1 {
		return 0, fmt.Errorf("not a pcap file with snaplen %d and LINKTYPE_ETHERNET: % x", snaplen, b[:min(24, len(b))])
	}
	n := 0
	for off := 24; off < len(b); n++ {
		if len(b)-off < 16 {
			return n, fmt.Errorf("truncated record header at offset %d of %d", off, len(b))
		}
		incl, orig := int(le.Uint32(b[off+8:])), int(le.Uint32(b[off+12:]))
		if incl > snaplen || incl > orig || off+16+incl > len(b) {
			return n, fmt.Errorf("bad or truncated record at offset %d of %d: incl %d orig %d", off, len(b), incl, orig)
		}
		if frame != nil {
			frame(b[off+16 : off+16+incl])
		}
		off += 16 + incl
	}
	return n, nil
}
