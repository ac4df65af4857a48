package stack

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/xstack/xstack/internal/fuzzcorpus"
)

// pcapFuzzFrames decodes the frames of a fuzz input: each a big-endian
// uint16 length and that many bytes (the last takes what is left), at
// most 64 of them.
func pcapFuzzFrames(data []byte) [][]byte {
	var frames [][]byte
	for len(data) >= 2 && len(frames) < 64 {
		n := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
		frames = append(frames, data[2:2+n])
		data = data[2+n:]
	}
	return frames
}

// FuzzPcapCapture writes received and transmitted frames of any length
// and content to a capture with any snaplen and file size limit, stops it,
// and reads the files back as tcpdump would: every frame must be there, in
// order, cut to snaplen with its original length recorded; every file must
// start with the pcap header and hold whole records within savelen bytes
// (savelen always fits the header and one record); and the capture's
// status must count the frames, files and bytes it wrote.
//
// snap and save pick the snaplen (1 to 65535) and how far savelen is above
// its smallest allowed value; odd frames go through the RX tap, runs of
// even ones through the TX tap as one batch.
func FuzzPcapCapture(f *testing.F) {
	f.Fuzz(func(t *testing.T, snap, save uint16, data []byte) {
		snaplen := 1 + int(snap)%65535
		cfg := PcapConfig{
			Dir:     t.TempDir(),
			Prefix:  "cpu0",
			Snaplen: snaplen,
			Savelen: int64(pcapFileHeaderLen+pcapRecordHeaderLen+snaplen) + int64(save),
			Logf:    t.Logf,
		}
		var tap pcapTap
		if err := tap.start(cfg); err != nil {
			t.Fatal(err)
		}
		frames := pcapFuzzFrames(data)
		for i := 0; i < len(frames); {
			if i%2 == 1 {
				tap.rx(frames[i])
				i++
				continue
			}
			j := i + 1
			for j < len(frames) && j%2 == 0 {
				j++
			}
			tap.tx(frames[i:j])
			i = j
		}
		if err := tap.stop(); err != nil {
			t.Fatal(err)
		}
		st := tap.status()
		recs := readPcaps(t, cfg.Dir, cfg.Prefix, snaplen)
		if len(recs) != len(frames) || st.Frames != uint64(len(frames)) || st.Dropped != 0 {
			t.Fatalf("%d frames captured: %d records read back, status %+v", len(frames), len(recs), st)
		}
		var total int64
		files := 0
		for i, r := range recs {
			fr := frames[i]
			if r.Orig != len(fr) || !bytes.Equal(r.Data, fr[:min(len(fr), snaplen)]) {
				t.Fatalf("record %d: %d of %d bytes % x; want frame % x cut to %d", i, len(r.Data), r.Orig, r.Data, fr, snaplen)
			}
			if i == 0 || r.Seq != recs[i-1].Seq {
				if r.Seq != files {
					t.Fatalf("record %d is in file %d, want %d", i, r.Seq, files)
				}
				files++
				total += r.FileSize
				if r.FileSize > cfg.Savelen {
					t.Fatalf("file %d is %d bytes, savelen %d", r.Seq, r.FileSize, cfg.Savelen)
				}
			}
		}
		if len(frames) > 0 && (st.Files != files || int64(st.Bytes) != total) {
			t.Fatalf("status says %d files and %d bytes; read %d files of %d bytes", st.Files, st.Bytes, files, total)
		}
		if ents, _ := os.ReadDir(cfg.Dir); len(ents) != files {
			t.Fatalf("%d files in the capture directory, %d hold records", len(ents), files)
		}
		if len(frames) > 0 {
			if _, err := os.Stat(filepath.Join(cfg.Dir, "cpu0_0.pcap")); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func pcapSeeds() []fuzzcorpus.Seed {
	join := func(frames ...[]byte) []byte {
		var b []byte
		for _, f := range frames {
			b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
			b = append(b, f...)
		}
		return b
	}
	var many [][]byte
	for i := range 40 {
		many = append(many, testFrame(i))
	}
	return []fuzzcorpus.Seed{
		{Name: "none", Args: []any{uint16(95), uint16(0), []byte(nil)}},
		{Name: "small_frames", Args: []any{uint16(95), uint16(1000), join(testFrame(1), testFrame(2), nil, testFrame(3))}},
		{Name: "rotate_every_record", Args: []any{uint16(63), uint16(0), join(many[:10]...)}},
		{Name: "rotate_often", Args: []any{uint16(95), uint16(300), join(many...)}},
		{Name: "jumbo_and_snaplen_1", Args: []any{uint16(0), uint16(20), join(bytes.Repeat([]byte{0xab}, 9014), testFrame(5))}},
		{Name: "full_snaplen", Args: []any{uint16(65534), uint16(9000), join(bytes.Repeat([]byte{1}, 9014), bytes.Repeat([]byte{2}, 1514))}},
	}
}

func TestPcapCaptureSeeds(t *testing.T) {
	fuzzcorpus.Sync(t, "FuzzPcapCapture", pcapSeeds())
}
