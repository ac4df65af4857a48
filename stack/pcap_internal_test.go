package stack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/rigtest"
	"github.com/xstack/xstack/internal/xstest"
)

// readPcaps reads <dir>/<prefix>_<seq>.pcap for seq = 0, 1, ... until one
// is missing, with gopacket's reader (rigtest.ReadPcapSeq), not ours.
func readPcaps(t *testing.T, dir, prefix string, snaplen int) []rigtest.PcapRecord {
	t.Helper()
	recs, _, err := rigtest.ReadPcapSeq(dir, prefix, snaplen)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func testFrame(i int) []byte {
	f := bytes.Repeat([]byte{byte(i)}, 60+i*7%200)
	binary.BigEndian.PutUint32(f, uint32(i))
	return f
}

func TestPcapRotationSnaplenOrder(t *testing.T) {
	dir := t.TempDir()
	var tap pcapTap
	const snaplen, savelen, n = 96, 1000, 300
	if err := tap.start(PcapConfig{Dir: dir, Prefix: "cpu3", Snaplen: snaplen, Savelen: savelen}); err != nil {
		t.Fatal(err)
	}
	if err := tap.start(PcapConfig{Dir: dir, Prefix: "cpu3", Snaplen: snaplen, Savelen: savelen}); err != ErrPcapRunning {
		t.Fatalf("second start: %v, want ErrPcapRunning", err)
	}
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			tap.rx(testFrame(i))
		} else {
			tap.tx([][]byte{testFrame(i)})
		}
	}
	if err := tap.stop(); err != nil {
		t.Fatal(err)
	}
	tap.rx(testFrame(n)) // after stop: not captured
	recs := readPcaps(t, dir, "cpu3", snaplen)
	if len(recs) != n {
		t.Fatalf("read %d frames back, want %d", len(recs), n)
	}
	files := 0
	for i, r := range recs {
		want := testFrame(i)
		if r.Orig != len(want) || !bytes.Equal(r.Data, want[:min(len(want), snaplen)]) {
			t.Fatalf("frame %d: orig %d, %d bytes captured, want the first %d of %d bytes", i, r.Orig, len(r.Data), min(len(want), snaplen), len(want))
		}
		if r.FileSize > savelen {
			t.Fatalf("file %d is %d bytes, more than savelen %d", r.Seq, r.FileSize, savelen)
		}
		if i > 0 && r.Time.Before(recs[i-1].Time) {
			t.Fatalf("frame %d: timestamp goes back", i)
		}
		if time.Since(r.Time) > time.Minute || time.Since(r.Time) < 0 {
			t.Fatalf("frame %d: timestamp %v is not now", i, r.Time)
		}
		files = r.Seq + 1
	}
	// A full file could not have taken the next record.
	if files < n*(16+60)/savelen {
		t.Fatalf("only %d files for %d frames with savelen %d", files, n, savelen)
	}
	st := tap.status()
	if st.Enabled || st.Frames != n || st.Files != files || st.Dropped != 0 || st.Error != "" {
		t.Fatalf("status %+v, want %d frames in %d files", st, n, files)
	}

	// A new capture continues the sequence instead of overwriting.
	if err := tap.start(PcapConfig{Dir: dir, Prefix: "cpu3", Snaplen: snaplen, Savelen: savelen}); err != nil {
		t.Fatal(err)
	}
	tap.rx(testFrame(1))
	if err := tap.stop(); err != nil {
		t.Fatal(err)
	}
	if st := tap.status(); !strings.HasSuffix(st.File, fmt.Sprintf("cpu3_%d.pcap", files)) {
		t.Fatalf("restarted capture wrote %s, want sequence %d", st.File, files)
	}
}

func TestPcapBadConfig(t *testing.T) {
	var tap pcapTap
	dir := t.TempDir()
	for _, c := range []PcapConfig{
		{Dir: dir, Prefix: "cpu0", Snaplen: 0, Savelen: 1000},
		{Dir: dir, Prefix: "cpu0", Snaplen: 96, Savelen: 100},
		{Dir: filepath.Join(dir, "missing"), Prefix: "cpu0", Snaplen: 96, Savelen: 1000},
		{Dir: dir, Prefix: "a/b", Snaplen: 96, Savelen: 1000},
	} {
		if err := tap.start(c); err == nil {
			tap.stop()
			t.Errorf("start(%+v) succeeded", c)
		}
	}
}

// A capture whose file cannot be written stops with an error; the taps keep
// working (as no-ops).
func TestPcapWriteErrorStopsCapture(t *testing.T) {
	dir := t.TempDir()
	var tap pcapTap
	var logged bytes.Buffer
	if err := tap.start(PcapConfig{Dir: dir, Prefix: "cpu0", Snaplen: 96, Savelen: 1 << 20,
		Logf: func(f string, a ...any) { fmt.Fprintf(&logged, f, a...) }}); err != nil {
		t.Fatal(err)
	}
	// The writer opens the file with the first chunk; make that fail.
	if err := os.Mkdir(filepath.Join(dir, "cpu0_0.pcap"), 0o700); err != nil {
		t.Fatal(err)
	}
	tap.rx(testFrame(1))
	xstest.WaitFor(t, 5*time.Second, "capture stopped after its file could not be opened", func() error {
		if tap.w.Load() != nil {
			return errors.New("capture still on")
		}
		return nil
	})
	for i := 0; i < 100; i++ {
		tap.rx(testFrame(i))
	}
	st := tap.status()
	if st.Enabled || st.Error == "" || !strings.Contains(logged.String(), "capture stopped") {
		t.Fatalf("status %+v, log %q: want a stopped capture with its error", st, logged.String())
	}
	if err := tap.stop(); err == nil {
		t.Fatal("stop returned no error for a failed capture")
	}
}

// A writer that falls behind makes frames drop, never blocks the tap.
func TestPcapDropsWhenWriterBehind(t *testing.T) {
	var tap pcapTap
	w := newPcapWriter(&tap, PcapConfig{Dir: t.TempDir(), Prefix: "cpu0", Snaplen: 65535, Savelen: 1 << 40}, 0)
	// No routineWrite: nothing drains the buffers.
	f := make([]byte, 9000)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 2*pcapBufs*pcapBufSize/len(f); i++ {
			w.add(f, time.Now())
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("tap blocked on a writer that does not write")
	}
	if w.dropped.Load() == 0 {
		t.Fatal("no frame counted as dropped")
	}
}

func TestPcapTapAllocs(t *testing.T) {
	var tap pcapTap
	frame := testFrame(7)
	frames := [][]byte{frame, frame}
	if n := testing.AllocsPerRun(1000, func() { tap.rx(frame); tap.tx(frames) }); n != 0 {
		t.Errorf("tap with capture off: %v allocations per frame, want 0", n)
	}
	if err := tap.start(PcapConfig{Dir: t.TempDir(), Prefix: "cpu0", Snaplen: 96, Savelen: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	defer tap.stop()
	if n := testing.AllocsPerRun(10000, func() { tap.rx(frame); tap.tx(frames) }); n != 0 {
		t.Errorf("tap with capture on: %v allocations per frame, want 0", n)
	}
}

func BenchmarkPcapTap(b *testing.B) {
	frame := testFrame(7)
	b.Run("off", func(b *testing.B) {
		var tap pcapTap
		b.ReportAllocs()
		for b.Loop() {
			tap.rx(frame)
		}
	})
	b.Run("on", func(b *testing.B) {
		var tap pcapTap
		if err := tap.start(PcapConfig{Dir: b.TempDir(), Prefix: "cpu0", Snaplen: 96, Savelen: 1 << 30}); err != nil {
			b.Fatal(err)
		}
		defer tap.stop()
		b.ReportAllocs()
		for b.Loop() {
			tap.rx(frame)
		}
	})
}
