package rigtest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// PcapRecord is one frame of a capture file.
type PcapRecord struct {
	File     string    // the file it was read from
	Seq      int       // the sequence number of that file in ReadPcapSeq, else 0
	FileSize int64     // the size of that file in bytes
	Time     time.Time // its timestamp
	Orig     int       // the frame's length on the wire
	Data     []byte    // the bytes captured: at most the snaplen
}

// ReadPcap reads a capture file with gopacket's pcapgo reader, so that the
// check of stack's pcap writer is not a reader of the same hand, and checks
// that it is what xstack writes: classic pcap, microsecond timestamps,
// LINKTYPE_ETHERNET, the given snaplen, every record cut to it and whole
// records up to the end of the file (a writer that stopped mid-record
// leaves a file tcpdump complains about).
func ReadPcap(name string, snaplen int) ([]PcapRecord, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	r, err := pcapgo.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: pcap header: %w", name, err)
	}
	if r.Snaplen() != uint32(snaplen) || r.LinkType() != layers.LinkTypeEthernet || r.Resolution() != gopacket.TimestampResolutionMicrosecond {
		return nil, fmt.Errorf("%s: %v, %v timestamps; want snaplen %d, LINKTYPE_ETHERNET, microseconds", name, r, r.Resolution(), snaplen)
	}
	var recs []PcapRecord
	end := int64(24) // where the records read so far end
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			// pcapgo takes a record header followed by no data for the end
			// of the file: only the sizes tell that record is cut short.
			if end != fi.Size() {
				return recs, fmt.Errorf("%s: %d bytes, but its %d whole records end at %d", name, fi.Size(), len(recs), end)
			}
			return recs, nil
		}
		if err != nil {
			return recs, fmt.Errorf("%s: record %d: %w", name, len(recs), err)
		}
		if ci.CaptureLength > snaplen {
			return recs, fmt.Errorf("%s: record %d: %d bytes captured, more than snaplen %d", name, len(recs), ci.CaptureLength, snaplen)
		}
		end += 16 + int64(len(data))
		recs = append(recs, PcapRecord{File: name, FileSize: fi.Size(), Time: ci.Timestamp, Orig: ci.Length, Data: data})
	}
}

// ReadPcapSeq reads <dir>/<prefix>_0.pcap, <prefix>_1.pcap, ... until one is
// missing, with ReadPcap, and returns the records in order and the files.
func ReadPcapSeq(dir, prefix string, snaplen int) ([]PcapRecord, []string, error) {
	var (
		recs  []PcapRecord
		files []string
	)
	for seq := 0; ; seq++ {
		name := filepath.Join(dir, fmt.Sprintf("%s_%d.pcap", prefix, seq))
		if _, err := os.Stat(name); errors.Is(err, os.ErrNotExist) {
			return recs, files, nil
		}
		rs, err := ReadPcap(name, snaplen)
		if err != nil {
			return recs, files, err
		}
		for i := range rs {
			rs[i].Seq = seq
		}
		recs = append(recs, rs...)
		files = append(files, name)
	}
}
