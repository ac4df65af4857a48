package stack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xstack/xstack/stack/stackinfo"
)

// Packet capture (the [pcap] section and tools/pcap).
//
// The link endpoint taps every frame it receives (in deliver, before any
// check, like tcpdump on the interface) and every frame the queue actually
// took (in flushLocked, after pure-ACK elision and FIN joining, read where
// it was built in the queue's memory, which stays as it is until the
// endpoint reserves that frame again). When capture is
// off a tap is one atomic load. When it is on, a frame is appended to a
// preallocated buffer under an uncontended mutex; a writer goroutine owned
// by the capture writes full buffers to disk and flushes a partial one
// every PcapFlushInterval, so the lcore loop never waits for the disk. If
// the writer falls behind and no buffer is free, frames are dropped and
// counted rather than stalling the loop. A write error (a full disk) stops
// the capture with a logged error; the stack keeps serving.
//
// Files are classic pcap (magic 0xa1b2c3d4, version 2.4, LINKTYPE_ETHERNET,
// microsecond timestamps): <dir>/<prefix>_<seq>.pcap, a new file (seq+1)
// whenever the next record would take the current one past Savelen bytes.

// PcapFlushInterval bounds how long a captured frame waits in memory before
// the writer goroutine writes it to its file.
const PcapFlushInterval = 200 * time.Millisecond

const (
	pcapFileHeaderLen   = 24
	pcapRecordHeaderLen = 16
	pcapLinktypeEther   = 1
	pcapBufSize         = 256 << 10
	pcapBufs            = 8 // buffers per capture: 2 MiB in flight at most
)

// PcapConfig describes a capture.
type PcapConfig struct {
	Dir     string // directory of the files; must exist
	Prefix  string // file name prefix, e.g. "cpu0": files are <Prefix>_<seq>.pcap
	Snaplen int    // bytes kept of each frame, 1..65535
	Savelen int64  // bytes per file before rotation, at least 40+Snaplen
	// Logf reports a capture that stopped on an error; nil discards.
	Logf func(format string, args ...any)
}

// PcapStatus describes the capture of a stack, running or last run.
type PcapStatus = stackinfo.PcapStatus

// ErrPcapRunning is returned by StartPcap when a capture is already running.
var ErrPcapRunning = errors.New("pcap capture already running")

// StartPcap starts capturing the stack's RX and TX frames. The first file
// gets the lowest sequence number not yet used in cfg.Dir for cfg.Prefix, so
// that a restarted capture never overwrites an earlier one. Safe to call
// from any goroutine.
func (st *Stack) StartPcap(cfg PcapConfig) error {
	return st.ep.pcap.start(cfg)
}

// StopPcap stops the capture, writes what is buffered and closes the file.
// It returns the error that stopped the capture early, if any. Stopping a
// stopped capture does nothing. Safe to call from any goroutine.
func (st *Stack) StopPcap() error {
	return st.ep.pcap.stop()
}

// PcapStatus reports the running capture, or the last one.
func (st *Stack) PcapStatus() PcapStatus {
	return st.ep.pcap.status()
}

// pcapTap is the link endpoint's capture point.
type pcapTap struct {
	w atomic.Pointer[pcapWriter] // the running capture; nil = off

	mu   sync.Mutex  // serialises start, stop and status
	last *pcapWriter // the running or last capture. +checklocks:mu
}

// rx captures one received frame. With capture off it is one atomic load
// (it inlines into the endpoint's deliver).
func (t *pcapTap) rx(frame []byte) {
	if w := t.w.Load(); w != nil {
		w.addFrame(frame)
	}
}

// tx captures the frames of one transmitted batch.
func (t *pcapTap) tx(frames [][]byte) {
	if w := t.w.Load(); w != nil {
		w.addBatch(frames)
	}
}

// txPackets captures the frames of one transmitted batch of frames of
// several buffers (nic.MultiBufferQueue.TxSubmitPackets's bufs and segs).
func (t *pcapTap) txPackets(bufs [][]byte, segs []int) {
	if w := t.w.Load(); w != nil {
		w.addPackets(bufs, segs)
	}
}

func (t *pcapTap) start(cfg PcapConfig) error {
	if cfg.Snaplen < 1 || cfg.Snaplen > 65535 {
		return fmt.Errorf("pcap: snaplen %d out of range 1..65535", cfg.Snaplen)
	}
	if min := int64(pcapFileHeaderLen + pcapRecordHeaderLen + cfg.Snaplen); cfg.Savelen < min {
		return fmt.Errorf("pcap: savelen %d too small: a file must hold its header and one record of snaplen %d, at least %d bytes", cfg.Savelen, cfg.Snaplen, min)
	}
	if cfg.Prefix == "" || strings.ContainsAny(cfg.Prefix, "/\x00") {
		return fmt.Errorf("pcap: bad file prefix %q", cfg.Prefix)
	}
	if fi, err := os.Stat(cfg.Dir); err != nil {
		return fmt.Errorf("pcap: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("pcap: %s is not a directory", cfg.Dir)
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.w.Load() != nil {
		return ErrPcapRunning
	}
	seq, err := pcapNextSeq(cfg.Dir, cfg.Prefix)
	if err != nil {
		return fmt.Errorf("pcap: %w", err)
	}
	w := newPcapWriter(t, cfg, seq)
	t.last = w
	go w.routineWrite()
	t.w.Store(w)
	return nil
}

func (t *pcapTap) stop() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.last
	if w == nil {
		return nil
	}
	t.w.CompareAndSwap(w, nil)
	w.stopOnce.Do(func() { close(w.stopc) })
	<-w.done
	return w.failure()
}

func (t *pcapTap) status() PcapStatus {
	t.mu.Lock()
	w := t.last
	t.mu.Unlock()
	if w == nil {
		return PcapStatus{}
	}
	return w.status(t.w.Load() == w)
}

// pcapNextSeq returns one more than the highest <prefix>_<seq>.pcap in dir,
// or 0.
func pcapNextSeq(dir, prefix string) (int, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	next := 0
	for _, e := range ents {
		s, ok := strings.CutPrefix(e.Name(), prefix+"_")
		if !ok {
			continue
		}
		s, ok = strings.CutSuffix(s, ".pcap")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(s); err == nil && n >= next {
			next = n + 1
		}
	}
	return next, nil
}

// pcapBuf is a buffer of records on its way to the files. The records of
// one file may end in it and those of the next begin: starts says where
// each file's part begins (starts[0].off is 0), and a part that begins a
// file starts with the file header.
type pcapBuf struct {
	data   []byte
	starts []pcapStart
}

type pcapStart struct{ off, seq int }

// pcapWriter is one running capture. Taps append records to buf under mu
// (from the lcore loop and from gVisor's goroutines, through the endpoint's
// TX lock, so mu is all but uncontended); routineWrite owns the files.
type pcapWriter struct {
	tap *pcapTap
	cfg PcapConfig

	mu      sync.Mutex
	closed  bool     // +checklocks:mu; no more records
	buf     *pcapBuf // +checklocks:mu; records not yet handed to the writer; nil if none was free
	seq     int      // +checklocks:mu; the file records go to
	fileLen int64    // +checklocks:mu; bytes of file seq so far, including buf
	files   int      // +checklocks:mu; files started

	free chan *pcapBuf // empty buffers; capacity pcapBufs
	full chan *pcapBuf // buffers for routineWrite; capacity pcapBufs, so a send never blocks

	frames, written, dropped atomic.Uint64

	errMu sync.Mutex
	err   error  // +checklocks:errMu; what stopped the capture early
	file  string // +checklocks:errMu; current or last file name

	stopc    chan struct{}
	stopOnce sync.Once
	done     chan struct{} // closed when routineWrite has closed the file
}

func newPcapWriter(t *pcapTap, cfg PcapConfig, seq int) *pcapWriter {
	size := max(pcapBufSize, pcapFileHeaderLen+pcapRecordHeaderLen+cfg.Snaplen)
	w := &pcapWriter{
		tap:   t,
		cfg:   cfg,
		seq:   seq,
		free:  make(chan *pcapBuf, pcapBufs),
		full:  make(chan *pcapBuf, pcapBufs),
		stopc: make(chan struct{}),
		done:  make(chan struct{}),
	}
	backing := make([]byte, size*pcapBufs)
	for i := 0; i < pcapBufs; i++ {
		b := &pcapBuf{data: backing[i*size : i*size : (i+1)*size], starts: make([]pcapStart, 0, 16)}
		if i == 0 {
			w.buf = b
		} else {
			w.free <- b
		}
	}
	return w
}

func (w *pcapWriter) addFrame(frame []byte) { w.add(frame, time.Now()) }

func (w *pcapWriter) addBatch(frames [][]byte) {
	now := time.Now()
	for _, f := range frames {
		w.add(f, now)
	}
}

// addPackets records frames of several buffers each: frame i is
// bufs[k:k+segs[i]], k the sum of segs[:i].
func (w *pcapWriter) addPackets(bufs [][]byte, segs []int) {
	now := time.Now()
	k := 0
	for _, n := range segs {
		chain := bufs[k : k+n]
		k += n
		w.addRecord(chain[0], chain[1:], chainLen(chain), now)
	}
}

// add appends one record. It never blocks on the writer: without a free
// buffer the frame is dropped and counted.
func (w *pcapWriter) add(frame []byte, now time.Time) { w.addRecord(frame, nil, len(frame), now) }

// addRecord appends the record of a frame of size bytes that starts in
// head and goes on in the buffers of rest.
func (w *pcapWriter) addRecord(head []byte, rest [][]byte, size int, now time.Time) {
	caplen := min(size, w.cfg.Snaplen)
	rec := int64(pcapRecordHeaderLen + caplen)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if w.fileLen > 0 && w.fileLen+rec > w.cfg.Savelen {
		// Rotate: file seq is complete.
		w.seq++
		w.fileLen = 0
	}
	need := int(rec)
	if w.fileLen == 0 {
		need += pcapFileHeaderLen
	}
	if w.buf != nil && len(w.buf.data)+need > cap(w.buf.data) {
		w.sealLocked()
	}
	if w.buf == nil {
		select {
		case b := <-w.free:
			w.buf = b
		default:
			w.dropped.Add(1)
			return
		}
	}
	b := w.buf
	if n := len(b.starts); n == 0 || b.starts[n-1].seq != w.seq {
		b.starts = append(b.starts, pcapStart{off: len(b.data), seq: w.seq})
	}
	if w.fileLen == 0 {
		b.data = appendPcapFileHeader(b.data, w.cfg.Snaplen)
		w.fileLen = pcapFileHeaderLen
		w.files++
	}
	b.data = binary.LittleEndian.AppendUint32(b.data, uint32(now.Unix()))
	b.data = binary.LittleEndian.AppendUint32(b.data, uint32(now.Nanosecond()/1000))
	b.data = binary.LittleEndian.AppendUint32(b.data, uint32(caplen))
	b.data = binary.LittleEndian.AppendUint32(b.data, uint32(size))
	n := min(len(head), caplen)
	b.data = append(b.data, head[:n]...)
	for _, r := range rest {
		if n == caplen {
			break
		}
		m := min(len(r), caplen-n)
		b.data = append(b.data, r[:m]...)
		n += m
	}
	w.fileLen += rec
	w.frames.Add(1)
}

// sealLocked hands buf to the writer and takes a free buffer if there is
// one. +checklocks:mu
func (w *pcapWriter) sealLocked() {
	if w.buf == nil || len(w.buf.data) == 0 {
		return
	}
	w.full <- w.buf // never blocks: its capacity is every buffer
	w.buf = nil
	select {
	case b := <-w.free:
		w.buf = b
	default:
	}
}

func appendPcapFileHeader(b []byte, snaplen int) []byte {
	b = binary.LittleEndian.AppendUint32(b, 0xa1b2c3d4) // microsecond timestamps
	b = binary.LittleEndian.AppendUint16(b, 2)
	b = binary.LittleEndian.AppendUint16(b, 4)
	b = binary.LittleEndian.AppendUint32(b, 0) // thiszone: UTC
	b = binary.LittleEndian.AppendUint32(b, 0) // sigfigs
	b = binary.LittleEndian.AppendUint32(b, uint32(snaplen))
	return binary.LittleEndian.AppendUint32(b, pcapLinktypeEther)
}

// routineWrite writes chunks to their files until the capture stops or a
// write fails.
func (w *pcapWriter) routineWrite() {
	defer close(w.done)
	var (
		f   *os.File
		seq = -1
	)
	closeFile := func() error {
		if f == nil {
			return nil
		}
		err := f.Close()
		f = nil
		return err
	}
	write := func(b *pcapBuf) error {
		defer func() {
			b.data, b.starts = b.data[:0], b.starts[:0]
			w.free <- b
		}()
		for i, st := range b.starts {
			end := len(b.data)
			if i+1 < len(b.starts) {
				end = b.starts[i+1].off
			}
			if st.seq != seq || f == nil {
				if err := closeFile(); err != nil {
					return err
				}
				name := filepath.Join(w.cfg.Dir, fmt.Sprintf("%s_%d.pcap", w.cfg.Prefix, st.seq))
				var err error
				f, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
				if err != nil {
					return err
				}
				seq = st.seq
				w.errMu.Lock()
				w.file = name
				w.errMu.Unlock()
			}
			n, err := f.Write(b.data[st.off:end])
			w.written.Add(uint64(n))
			if err != nil {
				return err
			}
		}
		return nil
	}
	fail := func(err error) {
		w.mu.Lock()
		w.closed = true
		w.mu.Unlock()
		closeFile()
		w.errMu.Lock()
		w.err = err
		w.errMu.Unlock()
		w.cfg.Logf("pcap: capture stopped: %v", err)
		w.tap.w.CompareAndSwap(w, nil) // last: who sees it off sees why
	}
	// put writes c out; on an error it stops the capture and says false.
	put := func(c *pcapBuf) bool {
		if err := write(c); err != nil {
			fail(err)
			return false
		}
		return true
	}
	tick := time.NewTicker(PcapFlushInterval)
	defer tick.Stop()
	for {
		select {
		case c := <-w.full:
			if !put(c) {
				return
			}
		case <-tick.C:
			w.mu.Lock()
			w.sealLocked()
			w.mu.Unlock()
		case <-w.stopc:
			w.mu.Lock()
			w.closed = true
			w.sealLocked()
			w.mu.Unlock()
		drain:
			for {
				select {
				case c := <-w.full:
					if !put(c) {
						return
					}
				default:
					break drain
				}
			}
			if err := closeFile(); err != nil {
				fail(err)
			}
			return
		}
	}
}

func (w *pcapWriter) failure() error {
	w.errMu.Lock()
	defer w.errMu.Unlock()
	return w.err
}

func (w *pcapWriter) status(running bool) PcapStatus {
	w.mu.Lock()
	files := w.files
	w.mu.Unlock()
	w.errMu.Lock()
	defer w.errMu.Unlock()
	s := PcapStatus{
		Enabled: running,
		Dir:     w.cfg.Dir,
		Prefix:  w.cfg.Prefix,
		Snaplen: w.cfg.Snaplen,
		Savelen: w.cfg.Savelen,
		File:    w.file,
		Files:   files,
		Frames:  w.frames.Load(),
		Bytes:   w.written.Load(),
		Dropped: w.dropped.Load(),
	}
	if w.err != nil {
		s.Error = w.err.Error()
	}
	return s
}
