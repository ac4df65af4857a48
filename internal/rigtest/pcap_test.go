package rigtest

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// ReadPcap takes a file cut at a record boundary and refuses one cut
// anywhere else, or one whose header says another snaplen.
func TestReadPcapTruncated(t *testing.T) {
	const snaplen = 96
	var b bytes.Buffer
	w := pcapgo.NewWriter(&b)
	if err := w.WriteFileHeader(snaplen, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	frames := [][]byte{bytes.Repeat([]byte{1}, 60), bytes.Repeat([]byte{2}, snaplen)}
	ends := map[int]int{b.Len(): 0} // file length → whole records in it
	for i, f := range frames {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: len(f), Length: len(f) + i*100}
		if err := w.WritePacket(ci, f); err != nil {
			t.Fatal(err)
		}
		ends[b.Len()] = i + 1
	}
	dir := t.TempDir()
	for n := 24; n <= b.Len(); n++ {
		name := filepath.Join(dir, "cut.pcap")
		if err := os.WriteFile(name, b.Bytes()[:n], 0o644); err != nil {
			t.Fatal(err)
		}
		recs, err := ReadPcap(name, snaplen)
		want, whole := ends[n]
		switch {
		case whole && (err != nil || len(recs) != want):
			t.Errorf("cut at %d: %d records, %v; want %d records", n, len(recs), err, want)
		case !whole && err == nil:
			t.Errorf("cut at %d, inside a record: no error, %d records", n, len(recs))
		}
		if whole && want == 2 && (recs[1].Orig != snaplen+100 || !bytes.Equal(recs[1].Data, frames[1]) || recs[1].FileSize != int64(n)) {
			t.Errorf("record 1: %+v", recs[1])
		}
		if _, err := ReadPcap(name, snaplen-1); err == nil {
			t.Errorf("cut at %d: read with snaplen %d, the header says %d", n, snaplen-1, snaplen)
		}
	}
}
