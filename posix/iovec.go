package posix

import (
	"io"
)

// iovLen is the total length of an iovec list.
func iovLen(iovs [][]byte) int {
	n := 0
	for _, b := range iovs {
		n += len(b)
	}
	return n
}

// iovWriter is the io.Writer a receive copies into: one buffer (read,
// recvfrom) or a list of them (readv, recvmsg). It reports
// io.ErrShortWrite when the buffers are full, as tcpip.SliceWriter does, so
// gVisor stops copying there. It lives in the socket (guarded by readMu) so
// that a receive does not allocate.
type iovWriter struct {
	one  [1][]byte
	bufs [][]byte // not modified: the caller's iovec list
	off  int      // bytes of bufs[0] already filled
}

// reset points w at p, or at iovs when iovs is not nil; reset(nil, nil)
// drops the caller's buffers.
func (w *iovWriter) reset(p []byte, iovs [][]byte) {
	w.off = 0
	if iovs != nil {
		w.one[0] = nil
		w.bufs = iovs
		return
	}
	w.one[0] = p
	w.bufs = w.one[:]
	if p == nil {
		w.bufs = nil
	}
}

// skip moves w past the first n bytes of its buffers, leaving them as they
// are: a receive that goes on (MSG_WAITALL) fills what follows them.
func (w *iovWriter) skip(n int) {
	for n > 0 && len(w.bufs) > 0 {
		k := min(n, len(w.bufs[0])-w.off)
		n -= k
		w.off += k
		if w.off == len(w.bufs[0]) {
			w.bufs, w.off = w.bufs[1:], 0
		}
	}
}

// Write implements io.Writer.
func (w *iovWriter) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 && len(w.bufs) > 0 {
		n := copy(w.bufs[0][w.off:], p)
		total += n
		p = p[n:]
		w.off += n
		if w.off == len(w.bufs[0]) {
			w.bufs, w.off = w.bufs[1:], 0
		}
	}
	if len(p) > 0 {
		return total, io.ErrShortWrite
	}
	return total, nil
}

// iovReader is the tcpip.Payloader a send copies from: one buffer or a list
// of them, after skipping what an earlier partial write took. It lives in
// the socket (guarded by writeMu).
type iovReader struct {
	one  [1][]byte
	bufs [][]byte
	// cur is the unread part of bufs[0].
	cur []byte
	n   int // bytes left
}

// reset points r at p (or iovs when not nil) minus the first skip bytes.
func (r *iovReader) reset(p []byte, iovs [][]byte, skip int) {
	r.one[0] = nil
	r.bufs, r.cur, r.n = nil, nil, 0
	if iovs == nil {
		if p == nil {
			return
		}
		r.one[0] = p
		iovs = r.one[:]
	}
	r.bufs = iovs
	r.n = iovLen(iovs) - skip
	for len(r.bufs) > 0 && skip >= len(r.bufs[0]) {
		skip -= len(r.bufs[0])
		r.bufs = r.bufs[1:]
	}
	if len(r.bufs) > 0 {
		r.cur = r.bufs[0][skip:]
		r.bufs = r.bufs[1:]
	}
}

// Len implements tcpip.Payloader.
func (r *iovReader) Len() int { return r.n }

// Read implements io.Reader.
func (r *iovReader) Read(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		for len(r.cur) == 0 {
			if len(r.bufs) == 0 {
				if total == 0 {
					return 0, io.EOF
				}
				return total, nil
			}
			r.cur, r.bufs = r.bufs[0], r.bufs[1:]
		}
		n := copy(p, r.cur)
		r.cur = r.cur[n:]
		p = p[n:]
		r.n -= n
		total += n
	}
	return total, nil
}
