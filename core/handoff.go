package core

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xstack/xstack/stack/packet"
)

// Handoff moves frames between one lcore and the others. A frame the NIC
// put on this lcore's queue whose flow another lcore owns (Steer) is copied
// onto that lcore's inbound ring and processed once, there; frames every
// lcore needs (ARP replies, neighbour advertisements) are processed here and
// copied to all others. Each ordered pair of lcores has its own
// single-producer single-consumer ring, so no two lcores ever write the same
// memory.
//
// Only the lcore's loop uses a Handoff.
type Handoff struct {
	self  int
	steer *Steer
	in    []*HandoffRing // in[i] carries frames from lcore i; nil for self
	out   []*HandoffRing // out[i] carries frames to lcore i; nil for self or not yet open

	// outPath names the ring file to lcore i in process mode, where each
	// consumer creates its inbound rings and producers open them when they
	// first need them; nil in thread mode, where all rings exist up front.
	outPath func(i int) string
	outIno  []uint64    // inode of each opened ring file, to notice a restarted consumer
	nextTry []time.Time // when to try opening (or re-checking) out[i] again
	pending [][][]byte  // frames for each owner, gathered over a burst
	// isCopy[i][j] says whether pending[i][j] is a copy of a broadcast frame;
	// copies[i] is how many of pending[i] are.
	isCopy [][]bool
	copies []int
	// local are the frames of a burst to process here, and localParsed
	// their headers, parsed once for steering and handed to the stack.
	local       [][]byte
	localParsed []packet.Parsed
	inFrames    [][]byte

	handedOut, handedIn, local_, broadcasts, dropped, copiesDropped atomic.Uint64
}

// HandoffStats are a Handoff's counters.
type HandoffStats struct {
	Local      uint64 // frames received here and processed here
	HandedOut  uint64 // frames received here and passed to their owner
	HandedIn   uint64 // frames other lcores passed here
	Broadcasts uint64 // frames processed here and copied to every lcore
	Dropped    uint64 // frames for an owner whose ring was full or absent
	// CopiesDropped are copies of broadcast frames (Broadcasts) that an
	// lcore's ring did not take, full or not yet made by a process still
	// starting: that lcore misses one neighbour update, no connection a
	// frame.
	CopiesDropped uint64
}

func newHandoff(self, n int, steer *Steer, burst int) *Handoff {
	h := &Handoff{
		self:     self,
		steer:    steer,
		in:       make([]*HandoffRing, n),
		out:      make([]*HandoffRing, n),
		outIno:   make([]uint64, n),
		nextTry:  make([]time.Time, n),
		pending:  make([][][]byte, n),
		isCopy:   make([][]bool, n),
		copies:   make([]int, n),
		local:    make([][]byte, 0, burst),
		inFrames: make([][]byte, burst),

		localParsed: make([]packet.Parsed, 0, burst),
	}
	for i := range h.pending {
		h.pending[i] = make([][]byte, 0, burst)
		h.isCopy[i] = make([]bool, 0, burst)
	}
	return h
}

// steerBurst classifies a burst: it returns the frames to process here,
// with their parsed headers, and hands the others to their owners. Each
// frame is parsed once; the results are valid until the next call.
func (h *Handoff) steerBurst(frames [][]byte) ([][]byte, []packet.Parsed) {
	local, parsed := h.local[:0], h.localParsed[:0]
	any := false
	for _, f := range frames {
		// Parse into the next slot of parsed; it stays there when the
		// frame is processed here.
		parsed = append(parsed, packet.Parsed{})
		p := &parsed[len(parsed)-1]
		packet.Parse(f, p)
		v, owner := h.steer.ClassifyParsed(p)
		switch v {
		case HandOff:
			parsed = parsed[:len(parsed)-1]
			h.pending[owner] = append(h.pending[owner], f)
			h.isCopy[owner] = append(h.isCopy[owner], false)
			any = true
		case Broadcast:
			local = append(local, f)
			h.broadcasts.Add(1)
			for i := range h.pending {
				if i != h.self {
					h.pending[i] = append(h.pending[i], f)
					h.isCopy[i] = append(h.isCopy[i], true)
					h.copies[i]++
					any = true
				}
			}
		default:
			local = append(local, f)
		}
	}
	h.local_.Add(uint64(len(local)))
	if any {
		for i, p := range h.pending {
			if len(p) == 0 {
				continue
			}
			r := h.ring(i)
			sent := 0
			if r != nil {
				sent = r.Enqueue(p)
			}
			h.handedOut.Add(uint64(sent))
			if sent < len(p) {
				copies := 0
				if h.copies[i] > 0 {
					for _, c := range h.isCopy[i][sent:] {
						if c {
							copies++
						}
					}
				}
				h.copiesDropped.Add(uint64(copies))
				h.dropped.Add(uint64(len(p) - sent - copies))
			}
			h.pending[i] = p[:0]
			h.isCopy[i] = h.isCopy[i][:0]
			h.copies[i] = 0
		}
	}
	return local, parsed
}

// ring returns the ring to lcore i, opening it when needed. In process
// mode it checks once a second that the ring file is still the one it
// mapped: a consumer that restarted made a new one. A ring not made yet
// (its process is still starting) is looked for again a millisecond
// later, so that few frames wait for it in vain.
func (h *Handoff) ring(i int) *HandoffRing {
	if h.outPath == nil {
		return h.out[i]
	}
	now := time.Now()
	if now.Before(h.nextTry[i]) {
		return h.out[i]
	}
	h.nextTry[i] = now.Add(time.Second)
	path := h.outPath(i)
	ino, err := fileIno(path)
	if err != nil && h.out[i] == nil {
		h.nextTry[i] = now.Add(time.Millisecond)
	}
	if h.out[i] != nil {
		if err == nil && ino == h.outIno[i] {
			return h.out[i]
		}
		h.out[i].Close()
		h.out[i] = nil
	}
	if err != nil {
		return nil
	}
	r, err := OpenHandoffRing(path)
	if err != nil {
		return nil
	}
	h.out[i], h.outIno[i] = r, ino
	return r
}

// drainIn delivers what the other lcores handed over and returns how many
// frames that was.
func (h *Handoff) drainIn(deliver func([][]byte)) int {
	total := 0
	for i, r := range h.in {
		if r == nil || i == h.self {
			continue
		}
		n := r.Dequeue(h.inFrames)
		if n == 0 {
			continue
		}
		h.handedIn.Add(uint64(n))
		total += n
		deliver(h.inFrames[:n])
		r.Release()
	}
	return total
}

// Stats returns the counters.
func (h *Handoff) Stats() HandoffStats {
	return HandoffStats{
		Local:      h.local_.Load(),
		HandedOut:  h.handedOut.Load(),
		HandedIn:   h.handedIn.Load(),
		Broadcasts: h.broadcasts.Load(),
		Dropped:    h.dropped.Load(),

		CopiesDropped: h.copiesDropped.Load(),
	}
}

// Close unmaps every ring; in process mode it also removes this lcore's
// inbound ring files.
func (h *Handoff) Close() {
	for _, r := range h.out {
		if r != nil {
			r.Close()
		}
	}
	for _, r := range h.in {
		if r == nil {
			continue
		}
		if h.outPath != nil {
			r.Remove()
		}
		r.Close()
	}
}

// ringPath names the ring that carries frames from lcore from to lcore to
// of the instance whose run directory is runDir. The run directory is on a
// tmpfs by default (/run), and a test's run directory is removed with it.
func ringPath(runDir string, from, to int) string {
	return filepath.Join(runDir, fmt.Sprintf("ring-%d-%d", from, to))
}

// fileIno returns the inode of the file at path.
func fileIno(path string) (uint64, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Sys().(*syscall.Stat_t).Ino, nil
}
