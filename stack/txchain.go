package stack

import (
	"fmt"

	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Frames of several buffers on send. On a multi-buffer queue
// (nic.MultiBufferQueue, the jumbo frames of AF_XDP multi-buffer) the MTU
// may exceed what one lent buffer holds: such a frame is copied from
// gVisor's packet across as many lent buffers as it needs, each full but
// the last, and leaves with TxSubmitPackets as one chain of descriptors.
// GSO (gso.go) writes its frames of MSS bytes the same way.
//
// The batch keeps such a frame's first buffer in txBatch, where ACK
// elision, FIN joining (ackelide.go) and the zero-window rescue's record
// of sent windows (zerowindow.go) read it as they read any frame: its
// headers are there, and txSize gives them its length (packet.ParseHead).
// FIN joining edits only the TCP header, in that first buffer. The
// frame's further buffers wait in txExtra until flush, and the capture
// (pcap.go) records it whole.

// checkChains makes sure that, on a multi-buffer queue, a frame of the
// MTU fits in as many lent buffers as the queue sends as one frame
// (zero-copy drivers take few), so that a stack that cannot send its
// largest frames does not start. It borrows one buffer to learn their
// size.
func (e *endpoint) checkChains() error {
	if e.mq == nil {
		return nil
	}
	var b [1][]byte
	if e.q.TxReserve(b[:]) != 1 {
		return nil // nothing to learn from; the queue is closed or busy
	}
	c := cap(b[0])
	_ = e.q.TxRelease(b[:])
	if need := (e.maxFrame + c - 1) / c; need > e.maxSegs {
		return fmt.Errorf("a frame of MTU %d needs %d transmit buffers of %d bytes, and the queue sends at most %d per frame: lower the MTU or raise frame_size",
			e.maxFrame-header.EthernetMinimumSize, need, c, e.maxSegs)
	}
	return nil
}

// writeChainLocked is writePacketLocked for a packet of size bytes larger
// than first, the buffer lent for it: it takes the further buffers the
// packet needs, copies it across them and queues the frame. more is as
// writePacketLocked's. +checklocks:txMu
func (e *endpoint) writeChainLocked(pkt *gvstack.PacketBuffer, first []byte, size, more int) bool {
	chain := e.takeChainLocked(first, size, more)
	if chain == nil {
		e.txDropped.Add(1)
		return false
	}
	copyChainFrom(chain, 0, pkt, 0)
	if e.csum != nil {
		e.requestTxChecksumChain(chain, size)
	}
	e.queueChainLocked(chain)
	return true
}

// chainLen is the size of the frame in the buffers of chain.
func chainLen(chain [][]byte) int {
	n := 0
	for _, b := range chain {
		n += len(b)
	}
	return n
}

// copyChainFrom fills the buffers of chain, from byte skip of the first
// on, with pkt's bytes from offset off on.
func copyChainFrom(chain [][]byte, skip int, pkt *gvstack.PacketBuffer, off int) {
	copyFrom(chain[0][skip:], pkt, off)
	off += len(chain[0]) - skip
	for _, b := range chain[1:] {
		copyFrom(b, pkt, off)
		off += len(b)
	}
}

// takeChainLocked returns, in e.txChain, the buffers of a frame of size
// bytes: first, lent by txBufLocked, and as many more as the frame needs,
// each cut to the bytes of the frame it holds. It returns nil, with every
// buffer it took given back, when the frame needs more buffers than the
// queue sends as one frame or none is free. want is how many packets the
// caller has yet to write, to size a reservation. +checklocks:txMu
func (e *endpoint) takeChainLocked(first []byte, size, want int) [][]byte {
	c := cap(first)
	k := (size + c - 1) / c
	chain := append(e.txChain[:0], first)
	if k > e.maxSegs {
		_ = e.q.TxRelease(chain)
		return nil
	}
	for len(chain) < k {
		// The batch is not full: first was taken after any flush
		// txBufLocked makes for a full one, and this frame is not in
		// it yet. A flush txReserveLocked makes to free buffers leaves
		// the chain's alone.
		b := e.txBufLocked(want)
		if b == nil || cap(b) != c {
			if b != nil {
				chain = append(chain, b)
			}
			_ = e.q.TxRelease(chain)
			return nil
		}
		chain = append(chain, b)
	}
	for i, b := range chain {
		chain[i] = b[:min(c, size-i*c)]
	}
	return chain
}

// queueChainLocked adds the frame in chain to the batch. +checklocks:txMu
func (e *endpoint) queueChainLocked(chain [][]byte) {
	size := chainLen(chain)
	e.txBatch[e.txN] = chain[0]
	e.txMore[e.txN] = len(chain) - 1
	e.txSize[e.txN] = size
	e.txExtra = append(e.txExtra, chain[1:]...)
	e.txChains++
	e.txN++
}

// submitChainsLocked sends out, the frames of the batch frames that flush
// keeps (a subsequence of frames, in order), each with its further
// buffers, through TxSubmitPackets, and appends to back the further
// buffers of the frames left out. It returns the number of frames sent
// and back. +checklocks:txMu
func (e *endpoint) submitChainsLocked(frames, out, back [][]byte) (int, [][]byte) {
	bufs, segs := e.txSubmit[:0], e.txSegs[:0]
	j, x := 0, 0 // the batch frame, and its first buffer in txExtra
	for _, f := range out {
		for ; &frames[j][0] != &f[0]; j++ {
			back = append(back, e.txExtra[x:x+e.txMore[j]]...)
			x += e.txMore[j]
			e.txMore[j], e.txSize[j] = 0, 0
		}
		m := e.txMore[j]
		bufs = append(bufs, f)
		bufs = append(bufs, e.txExtra[x:x+m]...)
		segs = append(segs, 1+m)
		x += m
		e.txMore[j], e.txSize[j] = 0, 0
		j++
	}
	for ; j < len(frames); j++ {
		back = append(back, e.txExtra[x:x+e.txMore[j]]...)
		x += e.txMore[j]
		e.txMore[j], e.txSize[j] = 0, 0
	}
	e.txExtra = e.txExtra[:0]
	e.txChains = 0
	sent, _ := e.mq.TxSubmitPackets(bufs, segs)
	// As in flushLocked: the sent frames are unchanged until the queue
	// lends their buffers again.
	e.pcap.txPackets(bufs, segs[:sent])
	return sent, back
}

// requestTxChecksumChain is requestTxChecksum for a frame of size bytes
// in chain: the request is made on the first buffer and covers the whole
// frame (nic.MultiBufferQueue.TxSubmitPackets). Where the queue refuses
// it, the checksum is completed here.
func (e *endpoint) requestTxChecksumChain(chain [][]byte, size int) {
	start, off, end := putPseudoHeaderSum(chain[0], size)
	if end == 0 {
		return
	}
	if end != size || e.csum.SetTxChecksum(chain[0], start, off) != nil {
		completeChainChecksum(chain, start, off, end)
	}
}

// completeChainChecksum does what a device does for a checksum request on
// a frame of several buffers (nic.CompleteChecksum): it sums the frame's
// bytes from start to end, the pseudo-header sum in the field at
// start+off included, and stores the complement there. The field lies in
// the first buffer.
func completeChainChecksum(chain [][]byte, start, off, end int) {
	var c checksum.Checksumer
	pos := 0
	for _, b := range chain {
		lo, hi := max(start-pos, 0), min(end-pos, len(b))
		if lo < hi {
			c.Add(b[lo:hi])
		}
		pos += len(b)
	}
	sum := ^c.Checksum()
	if sum == 0 {
		sum = 0xffff
	}
	f := chain[0]
	f[start+off], f[start+off+1] = byte(sum>>8), byte(sum)
}
