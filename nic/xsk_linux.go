package nic

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// QueueConfig configures one AF_XDP queue. Zero values take the defaults.
type QueueConfig struct {
	Queue     int          // NIC receive/transmit queue index
	Frames    int          // UMEM frames, half for RX and half for TX (default 4096)
	FrameSize int          // bytes per UMEM frame: a power of two from 2048 to the page size (default 2048)
	RxRing    int          // RX ring slots, power of two (default 2048)
	TxRing    int          // TX ring slots, power of two (default 2048)
	FillRing  int          // fill ring slots, power of two (default RxRing)
	CompRing  int          // completion ring slots, power of two (default TxRing)
	ZeroCopy  ZeroCopyMode // "" means ZeroCopyAuto
	// TxChecksum selects TX checksum offload through AF_XDP TX metadata;
	// "" means TxChecksumAuto. XSKQueue.TxChecksumOffload says whether
	// it is on.
	TxChecksum TxChecksumMode
	// MultiBuffer binds the socket with XDP_USE_SG (AF_XDP multi-buffer,
	// Linux 6.6): a frame larger than one UMEM frame arrives as a chain of
	// descriptors (RxPackets) and may be sent as one (Tx, TxSubmitPackets),
	// so that the interface's MTU may exceed what one frame holds (jumbo
	// frames). Without it the kernel drops such frames. A multi-buffer
	// queue is read with RxPackets; Rx refuses it.
	MultiBuffer bool
	// NoHandoff makes the queue's waits (Wait) and kernel kicks raw
	// system calls, during which the calling goroutine keeps its share of
	// GOMAXPROCS. With ordinary ones, a call that lasts longer than a
	// scheduler tick (a wait, or a kick that runs a veth peer's receive
	// path) has that share handed to another thread, and the Go runtime's
	// monitor, finding it so each time, keeps waking every 20 µs: a
	// thread wake-up or two per call. It is for a program whose one
	// goroutine drives the queue and has nothing else to run meanwhile
	// (tools/xload); with other goroutines to run it must stay off, or
	// they wait as long as the call does.
	NoHandoff bool
}

func (c *QueueConfig) setDefaults() {
	if c.Frames == 0 {
		c.Frames = 4096
	}
	if c.FrameSize == 0 {
		c.FrameSize = 2048
	}
	if c.RxRing == 0 {
		c.RxRing = 2048
	}
	if c.TxRing == 0 {
		c.TxRing = 2048
	}
	if c.FillRing == 0 {
		c.FillRing = c.RxRing
	}
	if c.CompRing == 0 {
		c.CompRing = c.TxRing
	}
	if c.ZeroCopy == "" {
		c.ZeroCopy = ZeroCopyAuto
	}
	if c.TxChecksum == "" {
		c.TxChecksum = TxChecksumAuto
	}
}

func (c *QueueConfig) validate() error {
	for _, r := range []struct {
		name string
		n    int
	}{{"rx_ring", c.RxRing}, {"tx_ring", c.TxRing}, {"fill ring", c.FillRing}, {"completion ring", c.CompRing}} {
		if err := checkRingSize(r.name, r.n); err != nil {
			return err
		}
	}
	if page := os.Getpagesize(); c.FrameSize < 2048 || c.FrameSize > page || c.FrameSize&(c.FrameSize-1) != 0 {
		return fmt.Errorf("frame_size %d: must be a power of two from 2048 to %d (the page size)", c.FrameSize, page)
	}
	if c.Frames < 2 || c.Frames > 1<<24 {
		return fmt.Errorf("frames %d: must be between 2 and 2^24", c.Frames)
	}
	if c.Queue < 0 {
		return fmt.Errorf("queue %d: must not be negative", c.Queue)
	}
	if !c.ZeroCopy.Valid() {
		return fmt.Errorf("zerocopy %q: must be auto, on or off", c.ZeroCopy)
	}
	if !c.TxChecksum.Valid() {
		return fmt.Errorf("tx_checksum %q: must be auto, on, off or software", c.TxChecksum)
	}
	if c.TxChecksum == TxChecksumSoftware && c.ZeroCopy == ZeroCopyOn {
		return fmt.Errorf("tx_checksum software: the kernel computes checksums in software only in copy mode, and zerocopy is on")
	}
	return nil
}

// XSKQueue is a Queue over one AF_XDP socket bound to one NIC queue, with a
// UMEM of its own.
//
// The UMEM's first half of frames circulates on the receive side: fill ring →
// kernel → RX ring → the caller of Rx → back to the fill ring on the next Rx.
// The second half circulates on the transmit side: free stack → the caller
// of TxReserve, who builds a frame in it → TX ring (TxSubmit) → kernel →
// completion ring → free stack; a buffer the caller does not send goes
// straight back (TxRelease). The two sides never trade frames, so Rx and
// the TX calls need no common lock.
//
// One goroutine (the lcore loop) calls Rx and Wait; Tx, TxReserve,
// TxSubmit and TxRelease are safe for concurrent use. Close may be called
// from any goroutine; the buffers TxReserve lent must have come back
// before it (the UMEM is unmapped).
type XSKQueue struct {
	ifname    string
	ifindex   int
	queue     int
	mac       net.HardwareAddr
	mtu       int
	zeroCopy  bool
	frameSize uint64
	// txMeta is the TX metadata length registered with the UMEM
	// (xskTxMetadataLen with TX checksum offload, else 0). Every TX
	// frame then starts txMeta bytes into its UMEM frame, with its
	// struct xsk_tx_metadata in front of it. Set at Open.
	txMeta uint64
	// txSWCsum: the kernel computes requested checksums in software
	// (TxChecksumSoftware). Set at Open.
	txSWCsum bool
	// multiBuffer: bound with XDP_USE_SG. maxTxSegs is the most
	// descriptors one transmitted frame may span (1 without it). Set at
	// Open.
	multiBuffer bool
	maxTxSegs   int
	// noHandoff: QueueConfig.NoHandoff. Set at Open.
	noHandoff bool

	fd      int
	eventfd int      // written by Close to end a Wait
	umem    []byte   // Frames*FrameSize bytes, shared with the kernel
	ringMem [][]byte // the four ring mappings

	rxMu   sync.Mutex // taken by Rx; uncontended except against Close
	fill   producerRing[uint64]
	rx     consumerRing[xdpDesc]
	rxFree frameStack // +checklocks:rxMu; RX-side frames in user space
	held   []uint64   // +checklocks:rxMu; frames lent to the caller by the last Rx

	txMu   sync.Mutex // taken by Tx, TxReserve, TxSubmit and TxRelease
	tx     producerRing[xdpDesc]
	comp   consumerRing[uint64]
	txFree frameStack // +checklocks:txMu
	// txLent[i] says that TX-side frame i (the i-th after the RX side) is
	// lent by TxReserve; txLentN counts them. +checklocks:txMu
	txLent  []bool
	txLentN int
	// txBudget is how many frames one copy-mode sendto sends (see
	// setTxBudget). Set at Open.
	txBudget int

	// UMEM accounting (Stats). Each side's frames are either in user
	// space (rxFree and held; txFree) or with the kernel, and the indexes
	// this side owns count the latter exactly: a frame goes to the kernel
	// when it is submitted on the fill (TX) ring and comes back when it is
	// consumed from the RX (completion) ring, so fill.cachedProd -
	// rx.cachedCons (tx.cachedProd - comp.cachedCons) is the number the
	// kernel holds, wherever it keeps them. rxBase and txBase are those
	// differences at Open (0 for a new socket).
	rxSideFrames, txSideFrames int
	rxBase, txBase             uint32

	// fdMu is held for reading by Wait and Stats while they use fd, and
	// for writing by Close while it closes it.
	fdMu        sync.RWMutex
	pollFds     [2]unix.PollFd // used by Wait only (one goroutine)
	pollTimeout unix.Timespec  // Wait's ppoll timeout, kept to avoid an allocation

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
	onClose   func() // set by Port.OpenQueue: removes the socket from the XSKMAP

	c          counters
	statsMu    sync.Mutex
	kernelLast unix.XDPStatistics // +checklocks:statsMu; last kernel counters, kept after Close
}

// counters are updated once per batch; Stats reads them from any goroutine.
type counters struct {
	QueueCounters
	fillRingEmpty, txWakeups, rxWakeups, wakeupBusy atomic.Uint64
}

var (
	_ Queue               = (*XSKQueue)(nil)
	_ TxChecksumOffloader = (*XSKQueue)(nil)
	_ MultiBufferQueue    = (*XSKQueue)(nil)
)

// Open creates an AF_XDP socket and its UMEM and binds it to queue
// cfg.Queue of the interface ifname, with XDP_USE_NEED_WAKEUP. It does not
// insert the socket into any XSKMAP: frames reach it only once an XDP program
// redirects them there (Port.OpenQueue does both).
//
// Call it on a thread in the interface's network namespace.
func Open(ifname string, cfg QueueConfig) (*XSKQueue, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("xsk on %s queue %d: %w", ifname, cfg.Queue, err)
	}
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("xsk on %s queue %d: %w", ifname, cfg.Queue, err)
	}
	// A socket closed a moment ago (an earlier process on this queue,
	// just exited) keeps the queue busy until the kernel's deferred
	// release of its buffer pool has run: wait for that rather than fail.
	deadline := time.Now().Add(bindBusyWait)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		q, err := openMode(ifi, ifname, cfg)
		var be *bindError
		if err == nil || !errors.As(err, &be) || !errors.Is(err, unix.EBUSY) {
			return q, err
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w (queue %d of %s is held by another AF_XDP socket: another xstack process, or one that has not finished exiting)", err, cfg.Queue, ifname)
		}
		time.Sleep(delay)
	}
}

// bindBusyWait is how long Open retries a bind that finds the queue busy.
const bindBusyWait = 2 * time.Second

// openMode opens the socket in the mode cfg.ZeroCopy asks for.
func openMode(ifi *net.Interface, ifname string, cfg QueueConfig) (*XSKQueue, error) {
	if cfg.TxChecksum == TxChecksumSoftware {
		// The kernel computes checksums in software only on its copy-mode
		// path (validate rejects zerocopy=on with it).
		return openXSK(ifi, cfg, unix.XDP_COPY)
	}
	switch cfg.ZeroCopy {
	case ZeroCopyOff:
		return openXSK(ifi, cfg, unix.XDP_COPY)
	case ZeroCopyOn:
		q, err := openXSK(ifi, cfg, unix.XDP_ZEROCOPY)
		var be *bindError
		if errors.As(err, &be) && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)) {
			return nil, fmt.Errorf("xsk on %s queue %d: bind: %w", ifname, cfg.Queue, &NotSupportedError{
				Feature: fmt.Sprintf("AF_XDP zero-copy (XDP_SETUP_XSK_POOL) in driver %s", driverName(ifname)),
				Hint:    "set zerocopy=auto or zerocopy=off to use copy mode",
				Err:     be.err,
			})
		}
		return q, err
	default:
		// Where the kernel says the driver has no zero-copy (veth, for
		// one), bind in copy mode at once instead of building a socket
		// and a UMEM for a zero-copy bind that must fail first.
		if f, err := xdpFeatures(ifi.Index); err == nil && f&netdevXDPActXSKZeroCopy == 0 {
			return openXSK(ifi, cfg, unix.XDP_COPY)
		}
		q, zcErr := openXSK(ifi, cfg, unix.XDP_ZEROCOPY)
		if zcErr == nil {
			return q, nil
		}
		var be *bindError
		if !errors.As(zcErr, &be) {
			return nil, zcErr
		}
		q, err := openXSK(ifi, cfg, unix.XDP_COPY)
		if err != nil {
			return nil, fmt.Errorf("%w (zero-copy: %v)", err, be.err)
		}
		return q, nil
	}
}

// bindError marks a failed bind(2), after which Open may retry in copy mode.
type bindError struct{ err error }

func (e *bindError) Error() string { return e.err.Error() }
func (e *bindError) Unwrap() error { return e.err }

// driverName asks ethtool for the driver of ifname, for error messages.
func driverName(ifname string) string {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "(unknown)"
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, ifname)
	if err != nil {
		return "(unknown)"
	}
	return unix.ByteSliceToString(info.Driver[:])
}

// openXSK builds the socket, UMEM and rings and binds with the given mode
// flag (XDP_ZEROCOPY or XDP_COPY). A failed bind cannot be retried on the
// same socket (the kernel has taken the fill and completion rings into the
// buffer pool it tore down), so each attempt starts from scratch.
func openXSK(ifi *net.Interface, cfg QueueConfig, modeFlag uint16) (_ *XSKQueue, err error) {
	mode := "copy"
	if modeFlag == unix.XDP_ZEROCOPY {
		mode = "zero-copy"
	}
	wrap := func(what string, err error) error {
		return fmt.Errorf("xsk on %s queue %d (%s mode): %s: %w", ifi.Name, cfg.Queue, mode, what, err)
	}

	q := &XSKQueue{
		ifname:    ifi.Name,
		ifindex:   ifi.Index,
		queue:     cfg.Queue,
		mac:       ifi.HardwareAddr,
		mtu:       ifi.MTU,
		zeroCopy:  modeFlag == unix.XDP_ZEROCOPY,
		frameSize: uint64(cfg.FrameSize),
		fd:        -1,
		eventfd:   -1,
	}
	defer func() {
		if err != nil {
			q.release()
		}
	}()

	if q.fd, err = unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
		if errors.Is(err, unix.EAFNOSUPPORT) {
			err = &NotSupportedError{Feature: "AF_XDP sockets (CONFIG_XDP_SOCKETS)", Hint: "use a kernel built with AF_XDP", Err: err}
		}
		return nil, wrap("socket", err)
	}
	if q.eventfd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, wrap("eventfd", err)
	}
	if q.umem, err = unix.Mmap(-1, 0, cfg.Frames*cfg.FrameSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		return nil, wrap(fmt.Sprintf("map UMEM of %d frames of %d bytes", cfg.Frames, cfg.FrameSize), err)
	}
	if err = q.registerUMEM(cfg, modeFlag); err != nil {
		return nil, wrap("register UMEM", err)
	}
	for _, o := range []struct {
		name string
		opt  int
		size int
	}{
		{"fill ring", unix.XDP_UMEM_FILL_RING, cfg.FillRing},
		{"completion ring", unix.XDP_UMEM_COMPLETION_RING, cfg.CompRing},
		{"RX ring", unix.XDP_RX_RING, cfg.RxRing},
		{"TX ring", unix.XDP_TX_RING, cfg.TxRing},
	} {
		if err = unix.SetsockoptInt(q.fd, unix.SOL_XDP, o.opt, o.size); err != nil {
			return nil, wrap(fmt.Sprintf("set %s size %d", o.name, o.size), err)
		}
	}
	off, err := mmapOffsets(q.fd)
	if err != nil {
		return nil, wrap("read ring offsets", err)
	}
	if err = q.mapRings(off, cfg); err != nil {
		return nil, wrap("map rings", err)
	}

	// Split the UMEM: RX side first, TX side after.
	rxFrames := cfg.Frames / 2
	q.rxSideFrames, q.txSideFrames = rxFrames, cfg.Frames-rxFrames
	q.rxFree = newFrameStack(rxFrames)
	for i := rxFrames - 1; i >= 0; i-- {
		q.rxFree.push(uint64(i) * q.frameSize)
	}
	q.held = make([]uint64, 0, cfg.RxRing)
	q.txFree = newFrameStack(cfg.Frames - rxFrames)
	for i := cfg.Frames - 1; i >= rxFrames; i-- {
		q.txFree.push(uint64(i) * q.frameSize)
	}
	q.txLent = make([]bool, cfg.Frames-rxFrames)
	q.refillLocked()
	q.txBudget = setTxBudget(q.fd, cfg.TxRing)
	q.noHandoff = cfg.NoHandoff

	bindFlags := unix.XDP_USE_NEED_WAKEUP | modeFlag
	q.maxTxSegs = 1
	if cfg.MultiBuffer {
		bindFlags |= unix.XDP_USE_SG
		q.multiBuffer = true
		if q.maxTxSegs, err = maxTxSegments(ifi.Index, modeFlag); err != nil {
			return nil, wrap("multi-buffer", err)
		}
	}
	sa := &unix.SockaddrXDP{
		Flags:   bindFlags,
		Ifindex: uint32(ifi.Index),
		QueueID: uint32(cfg.Queue),
	}
	if err = unix.Bind(q.fd, sa); err != nil {
		if cfg.MultiBuffer && modeFlag == unix.XDP_COPY && errors.Is(err, unix.EINVAL) {
			// xsk_bind answers EINVAL to a flag it does not know:
			// a kernel before 6.6 has no XDP_USE_SG.
			return nil, wrap("bind", &NotSupportedError{
				Feature: "AF_XDP multi-buffer (XDP_USE_SG, Linux 6.6)",
				Hint:    "turn multi-buffer off and keep the MTU within one frame",
				Err:     err,
			})
		}
		return nil, wrap("bind", &bindError{err})
	}
	return q, nil
}

// copyModeMaxSegs is the most descriptors one frame may span on the
// copy-mode TX path: xsk_build_skb (net/xdp/xsk.c) puts the first in the
// skb's linear part and each further one in a page fragment, and drops the
// frame (EOVERFLOW, counted as an invalid descriptor) once it would need
// more than MAX_SKB_FRAGS of them (17 unless the kernel was configured
// otherwise; Documentation/networking/af_xdp.rst gives the same limit).
const copyModeMaxSegs = 17 + 1

// maxTxSegments returns how many descriptors one transmitted frame may
// span: copyModeMaxSegs in copy mode, and in zero-copy mode what the
// driver reports (the netdev family's xdp-zc-max-segs, Linux 6.6), which
// is 1 for a driver without multi-buffer zero-copy.
func maxTxSegments(ifindex int, modeFlag uint16) (int, error) {
	if modeFlag != unix.XDP_ZEROCOPY {
		return copyModeMaxSegs, nil
	}
	f, err := devFeatures(ifindex)
	if err != nil {
		return 0, err
	}
	if f.zcMaxSegs <= 1 {
		return 0, &NotSupportedError{
			Feature: "AF_XDP multi-buffer in zero-copy mode (xdp-zc-max-segs > 1)",
			Hint:    "set zerocopy=off or zerocopy=auto",
		}
	}
	return min(int(f.zcMaxSegs), maxChain), nil
}

// maxChain bounds the descriptors of one frame this package sends, so that
// TxSubmitPackets keeps a chain's frames on its stack; drivers report far
// fewer (xdp-zc-max-segs is a handful), and copy mode takes 18.
const maxChain = 64

// xskTxMetadataLen is the TX metadata length the queue registers: the size
// of struct xsk_tx_metadata (include/uapi/linux/if_xdp.h, Linux 6.14 and
// later: u64 flags, then the request u16 csum_start, u16 csum_offset and
// u64 launch_time), a multiple of 8 as the kernel requires. Older kernels'
// struct is shorter; they read only its first 12 bytes here.
const xskTxMetadataLen = 24

// Offsets in struct xsk_tx_metadata, which the kernel reads in host byte
// order.
const (
	txMetaFlags      = 0
	txMetaCsumStart  = 8
	txMetaCsumOffset = 10
)

// registerUMEM registers q.umem with the socket, with TX metadata when
// cfg.TxChecksum asks for it and the socket can use it (see
// TxChecksumMode), and sets q.txMeta and q.txSWCsum accordingly.
func (q *XSKQueue) registerUMEM(cfg QueueConfig, modeFlag uint16) error {
	return q.registerUMEMMeta(cfg, modeFlag, xskTxMetadataLen)
}

// registerUMEMMeta is registerUMEM with the metadata length to try (a
// length the kernel refuses stands in for an old kernel in tests).
func (q *XSKQueue) registerUMEMMeta(cfg QueueConfig, modeFlag uint16, metaLen uint32) error {
	want := cfg.TxChecksum != TxChecksumOff
	if want && modeFlag == unix.XDP_ZEROCOPY {
		// In zero-copy mode the driver reads the metadata itself, and
		// one without the hook ignores it: the frame would leave with
		// the pseudo-header sum in its checksum field.
		xsk, err := xskFeatures(q.ifindex)
		if err != nil || xsk&netdevXSKFlagsTxCsum == 0 {
			if cfg.TxChecksum == TxChecksumOn {
				return &NotSupportedError{
					Feature: fmt.Sprintf("AF_XDP TX checksum offload in zero-copy mode (xsk-features tx-checksum) in driver %s", driverName(q.ifname)),
					Hint:    "set tx_checksum=auto or tx_checksum=off, or zerocopy=off",
				}
			}
			want = false
		}
	}
	if want {
		var flags uint32
		if cfg.TxChecksum == TxChecksumSoftware {
			flags = unix.XDP_UMEM_TX_SW_CSUM
		}
		err := registerUMEM(q.fd, q.umem, cfg.FrameSize, metaLen, flags)
		switch {
		case err == nil:
			q.txMeta = uint64(metaLen)
			q.txSWCsum = flags != 0
			return nil
		case !errors.Is(err, unix.EINVAL):
			return err
		case cfg.TxChecksum != TxChecksumAuto:
			return &NotSupportedError{
				Feature: "AF_XDP TX metadata (XDP_UMEM_TX_METADATA_LEN, Linux 6.8)",
				Hint:    "set tx_checksum=off, or tx_checksum=auto to compute checksums in software where it is missing",
				Err:     err,
			}
		}
		// A kernel before 6.8: the registration failed as a whole,
		// and the socket takes a plain one.
	}
	return registerUMEM(q.fd, q.umem, cfg.FrameSize, 0, 0)
}

// kernelTxBatch is the kernel's TX_BATCH_SIZE (net/xdp/xsk.c): how many
// frames one sendto sends in copy mode unless XDP_MAX_TX_SKB_BUDGET raised
// it; a sendto that leaves frames in the TX ring answers EAGAIN.
const kernelTxBatch = 32

// setTxBudget raises the number of frames one copy-mode sendto sends from
// the kernel's 32 to the TX ring size, so that one kick sends a whole
// batch, and returns the budget in force. The option is
// XDP_MAX_TX_SKB_BUDGET (include/uapi/linux/if_xdp.h, Linux 6.17): xsk.c
// takes a value from 32 to the TX ring's entries once the TX ring exists,
// and answers EACCES outside that range; older kernels answer ENOPROTOOPT.
// Either way the queue keeps the kernel's 32 and Tx kicks more often
// (Stats.TxBudget says which).
func setTxBudget(fd, txRing int) int {
	if txRing <= kernelTxBatch {
		return kernelTxBatch
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, txRing); err != nil {
		return kernelTxBatch
	}
	return txRing
}

// mapRings maps the four rings and builds their views.
func (q *XSKQueue) mapRings(off unix.XDPMmapOffsets, cfg QueueConfig) error {
	mapRing := func(pgoff int64, length int) ([]byte, error) {
		m, err := unix.Mmap(q.fd, pgoff, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, err
		}
		q.ringMem = append(q.ringMem, m)
		return m, nil
	}
	var err error
	var m []byte

	if m, err = mapRing(unix.XDP_UMEM_PGOFF_FILL_RING, ringBytes[uint64](off.Fr, uint32(cfg.FillRing))); err != nil {
		return fmt.Errorf("fill ring: %w", err)
	}
	if q.fill.ringIndex, q.fill.descs, err = ringView[uint64](m, off.Fr, uint32(cfg.FillRing)); err != nil {
		return fmt.Errorf("fill ring: %w", err)
	}
	if m, err = mapRing(unix.XDP_UMEM_PGOFF_COMPLETION_RING, ringBytes[uint64](off.Cr, uint32(cfg.CompRing))); err != nil {
		return fmt.Errorf("completion ring: %w", err)
	}
	if q.comp.ringIndex, q.comp.descs, err = ringView[uint64](m, off.Cr, uint32(cfg.CompRing)); err != nil {
		return fmt.Errorf("completion ring: %w", err)
	}
	if m, err = mapRing(unix.XDP_PGOFF_RX_RING, ringBytes[xdpDesc](off.Rx, uint32(cfg.RxRing))); err != nil {
		return fmt.Errorf("RX ring: %w", err)
	}
	if q.rx.ringIndex, q.rx.descs, err = ringView[xdpDesc](m, off.Rx, uint32(cfg.RxRing)); err != nil {
		return fmt.Errorf("RX ring: %w", err)
	}
	if m, err = mapRing(unix.XDP_PGOFF_TX_RING, ringBytes[xdpDesc](off.Tx, uint32(cfg.TxRing))); err != nil {
		return fmt.Errorf("TX ring: %w", err)
	}
	if q.tx.ringIndex, q.tx.descs, err = ringView[xdpDesc](m, off.Tx, uint32(cfg.TxRing)); err != nil {
		return fmt.Errorf("TX ring: %w", err)
	}
	// Our own indexes start where the kernel's do (zero for a new socket).
	q.fill.cachedProd, q.fill.cachedCons = *q.fill.producer, *q.fill.consumer
	q.comp.cachedProd, q.comp.cachedCons = *q.comp.producer, *q.comp.consumer
	q.rx.cachedProd, q.rx.cachedCons = *q.rx.producer, *q.rx.consumer
	q.tx.cachedProd, q.tx.cachedCons = *q.tx.producer, *q.tx.consumer
	q.rxBase = q.fill.cachedProd - q.rx.cachedCons
	q.txBase = q.tx.cachedProd - q.comp.cachedCons
	return nil
}

// release closes the socket and unmaps the rings and the UMEM. The socket
// goes first: the kernel stops writing into the UMEM before it is unmapped.
func (q *XSKQueue) release() error {
	var errs []error
	if q.fd >= 0 {
		errs = append(errs, unix.Close(q.fd))
		q.fd = -1
	}
	if q.eventfd >= 0 {
		errs = append(errs, unix.Close(q.eventfd))
		q.eventfd = -1
	}
	for _, m := range q.ringMem {
		errs = append(errs, unix.Munmap(m))
	}
	q.ringMem = nil
	if q.umem != nil {
		errs = append(errs, unix.Munmap(q.umem))
		q.umem = nil
	}
	return errors.Join(errs...)
}

// ZeroCopy reports whether the socket is bound in zero-copy mode (the driver
// DMAs straight into the UMEM) rather than copy mode.
func (q *XSKQueue) ZeroCopy() bool { return q.zeroCopy }

// Mode returns "zero-copy" or "copy".
func (q *XSKQueue) Mode() string {
	if q.zeroCopy {
		return "zero-copy"
	}
	return "copy"
}

// Ifname returns the interface name; QueueID the queue index.
func (q *XSKQueue) Ifname() string { return q.ifname }

// QueueID returns the index of the NIC queue the socket is bound to.
func (q *XSKQueue) QueueID() int { return q.queue }

// FD returns the AF_XDP socket, e.g. for an XSKMAP of another program.
func (q *XSKQueue) FD() int { return q.fd }

// HardwareAddr is the MAC address of the interface at Open.
func (q *XSKQueue) HardwareAddr() net.HardwareAddr { return q.mac }

// MTU is the interface MTU at Open.
func (q *XSKQueue) MTU() int { return q.mtu }

// Rx implements Queue. It first gives the frames of the previous call back
// to the fill ring, then takes up to len(frames) descriptors from the RX
// ring.
func (q *XSKQueue) Rx(frames [][]byte) (int, error) {
	q.rxMu.Lock()
	defer q.rxMu.Unlock()
	if q.closed.Load() {
		return 0, net.ErrClosed
	}
	if q.multiBuffer {
		return 0, ErrRxMultiBuffer
	}
	q.returnHeldLocked()

	pos, n := q.rx.peek(uint32(min(len(frames), cap(q.held))))
	var bytes uint64
	for i := range n {
		d := q.rx.get(pos + i)
		// In aligned mode the descriptor points past the headroom
		// inside its frame; the frame's base goes back to the fill ring.
		end := d.Addr + uint64(d.Len)
		frames[i] = q.umem[d.Addr:end:end]
		q.held = append(q.held, d.Addr&^(q.frameSize-1))
		bytes += uint64(d.Len)
	}
	q.rx.release(n)

	if n == 0 {
		return 0, q.rxIdleLocked()
	}
	q.c.RxFrames.Add(uint64(n))
	q.c.RxBytes.Add(bytes)
	return int(n), nil
}

// returnHeldLocked gives the frames of the previous Rx or RxPackets back
// to the fill ring.
func (q *XSKQueue) returnHeldLocked() {
	for _, a := range q.held {
		q.rxFree.push(a)
	}
	q.held = q.held[:0]
	q.refillLocked()
}

// rxIdleLocked is what an Rx that found nothing does.
func (q *XSKQueue) rxIdleLocked() error {
	// An idle pass also settles the TX side, which only Tx looks at
	// otherwise: without it a queue that stops sending would leave its
	// last frames in the completion ring, and frames whose kick found the
	// kernel busy in the TX ring, until the next Tx.
	if q.txMu.TryLock() {
		q.settleTxLocked()
		q.txMu.Unlock()
	}
	// Documentation/networking/af_xdp.rst: when the fill ring has the
	// need_wakeup flag, the driver waits for a syscall before it takes
	// new buffers (and so before it receives).
	if q.fill.needWakeup() {
		q.c.rxWakeups.Add(1)
		if err := q.wakeupLocked(unix.SYS_RECVFROM); err != nil {
			return fmt.Errorf("wake up RX of %s queue %d: %w", q.ifname, q.queue, err)
		}
	}
	return nil
}

// RxPackets implements MultiBufferQueue. It receives whole frames, each
// in one or more buffers: what Rx does, for a queue bound with
// QueueConfig.MultiBuffer (on another queue every frame is one buffer). It first gives the buffers of the previous
// call back to the fill ring, then fills bufs with the buffers of up to
// len(segs) frames and segs with how many buffers each frame has: frame i
// is bufs[k:k+segs[i]], k the sum of segs[:i], its bytes in that order. It
// returns the number of frames; the buffers alias the UMEM and stay valid
// until the next call, so a caller can make one packet of several views
// without a copy. The kernel chains the descriptors of a frame larger than
// a UMEM frame (XDP_PKT_CONTD on all but the last); RxPackets hands out
// only whole chains and leaves a chain it has not seen the end of in the
// ring for the next call. ErrRxBufsShort reports a frame with more buffers
// than bufs holds (with frames before it, the call returns them first).
// One goroutine calls it, as Rx.
func (q *XSKQueue) RxPackets(bufs [][]byte, segs []int) (int, error) {
	q.rxMu.Lock()
	defer q.rxMu.Unlock()
	if q.closed.Load() {
		return 0, net.ErrClosed
	}
	q.returnHeldLocked()

	pos, n := q.rx.peek(uint32(min(len(bufs), cap(q.held))))
	used, pkts := wholeChains(&q.rx, pos, n, segs)
	if used == 0 {
		if n == uint32(len(bufs)) && n > 0 && len(segs) > 0 {
			return 0, ErrRxBufsShort
		}
		if n == 0 {
			return 0, q.rxIdleLocked()
		}
		// The end of a chain is not in the ring yet.
		return 0, nil
	}
	var bytes uint64
	for i := range used {
		d := q.rx.get(pos + i)
		end := d.Addr + uint64(d.Len)
		bufs[i] = q.umem[d.Addr:end:end]
		q.held = append(q.held, d.Addr&^(q.frameSize-1))
		bytes += uint64(d.Len)
	}
	q.rx.release(used)
	q.c.RxFrames.Add(uint64(pkts))
	q.c.RxBytes.Add(bytes)
	return pkts, nil
}

// wholeChains looks at the n descriptors from position pos of the RX ring
// and returns how many of them make whole frames, and how many frames,
// storing each frame's descriptor count in segs (at most len(segs)
// frames). A descriptor with XDP_PKT_CONTD continues into the next one.
func wholeChains(r *consumerRing[xdpDesc], pos, n uint32, segs []int) (used uint32, pkts int) {
	start := uint32(0)
	for i := uint32(0); i < n && pkts < len(segs); i++ {
		if r.get(pos+i).Options&unix.XDP_PKT_CONTD != 0 {
			continue
		}
		segs[pkts] = int(i + 1 - start)
		pkts++
		start = i + 1
	}
	return start, pkts
}

// refillLocked puts every free RX-side frame on the fill ring that fits.
// The caller holds rxMu (or owns q exclusively).
func (q *XSKQueue) refillLocked() {
	if q.rxFree.len() > 0 {
		pos, n := q.fill.reserve(uint32(q.rxFree.len()))
		for i := range n {
			q.fill.set(pos+i, q.rxFree.pop())
		}
		q.fill.submit(n)
	}
	if q.rxFree.len() == 0 && q.fill.pending() == 0 {
		// Every RX frame is in the RX ring or with the caller: the
		// kernel has nowhere to put the next frame.
		q.c.fillRingEmpty.Add(1)
	}
}

// wakeupLocked makes the syscall that wakes the kernel side of a ring. The
// transient errors the kernel returns when it is busy or the link is down
// are counted and dropped: the next call tries again.
func (q *XSKQueue) wakeupLocked(trap uintptr) error {
	// Raw syscall numbers rather than unix.Sendto/Recvfrom: those build a
	// sockaddr on the heap, and this runs once per batch.
	var errno unix.Errno
	if q.noHandoff {
		_, _, errno = unix.RawSyscall6(trap, uintptr(q.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	} else {
		_, _, errno = unix.Syscall6(trap, uintptr(q.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	}
	switch errno {
	case 0:
		return nil
	case unix.EAGAIN, unix.EBUSY, unix.ENOBUFS, unix.ENETDOWN, unix.EINTR:
		q.c.wakeupBusy.Add(1)
		return nil
	default:
		return errno
	}
}

// Tx copies frames from the caller's own memory into UMEM and queues them
// for transmission, in order, returning how many it accepted: what
// TxReserve, a copy and TxSubmit do, for frames that were not built in the
// queue's buffers (a test's, a tool's). Frames it did not accept (TX ring
// or UMEM full, empty or too large) are counted as TxDropped. Tx never
// blocks; it is safe for concurrent use.
func (q *XSKQueue) Tx(frames [][]byte) (int, error) {
	q.txMu.Lock()
	defer q.txMu.Unlock()
	if q.closed.Load() {
		return 0, net.ErrClosed
	}
	q.reapLocked()
	if q.multiBuffer {
		return q.txChainsLocked(frames)
	}

	want := uint32(min(len(frames), q.txFree.len()))
	pos, got := q.tx.reserve(want)
	if got < want {
		q.c.TxRingFull.Add(1)
	}
	var n uint32
	var bytes uint64
	for ; n < got; n++ {
		f := frames[n]
		if len(f) == 0 || uint64(len(f)) > q.frameSize-q.txMeta {
			break
		}
		// The frame starts after the metadata, if any, which its
		// descriptor does not announce (no XDP_TX_METADATA).
		addr := q.txFree.pop() + q.txMeta
		copy(q.umem[addr:addr+q.frameSize-q.txMeta], f)
		q.tx.set(pos+n, xdpDesc{Addr: addr, Len: uint32(len(f))})
		bytes += uint64(len(f))
	}
	q.tx.submit(n)
	q.countTxLocked(n, bytes, len(frames)-int(n))
	return int(n), q.kickTxLocked()
}

// txChainsLocked is Tx on a multi-buffer queue: a frame larger than one
// UMEM frame is copied into as many as it needs, sent as a chain of
// descriptors (XDP_PKT_CONTD on all but the last). A frame goes whole or
// not at all; the first that does not fit (TX ring or UMEM short) ends the
// batch, and one that needs more than maxTxSegs descriptors is refused
// with ErrTxTooManySegs.
func (q *XSKQueue) txChainsLocked(frames [][]byte) (int, error) {
	room := q.frameSize - q.txMeta
	pos, free := q.tx.reserve(q.tx.size())
	var used, n uint32
	var bytes uint64
	var err error
	for _, f := range frames {
		k := (uint64(len(f)) + room - 1) / room
		if k == 0 {
			break
		}
		if k > uint64(q.maxTxSegs) {
			err = ErrTxTooManySegs
			break
		}
		if uint64(free-used) < k || uint64(q.txFree.len()) < k {
			q.c.TxRingFull.Add(1)
			break
		}
		used = putChain(&q.tx, pos+used, f, room, func() uint64 { return q.txFree.pop() + q.txMeta }, q.umem) - pos
		bytes += uint64(len(f))
		n++
	}
	q.tx.submit(used)
	q.countTxLocked(n, bytes, len(frames)-int(n))
	if kerr := q.kickTxLocked(); err == nil {
		err = kerr
	}
	return int(n), err
}

// putChain copies f into UMEM frames of room bytes each, taken from next,
// and writes their descriptors from position pos of the TX ring, each but
// the last marked XDP_PKT_CONTD. It returns the position after the last.
func putChain(r *producerRing[xdpDesc], pos uint32, f []byte, room uint64, next func() uint64, umem []byte) uint32 {
	for len(f) > 0 {
		seg := f[:min(uint64(len(f)), room)]
		f = f[len(seg):]
		addr := next()
		copy(umem[addr:addr+room], seg)
		d := xdpDesc{Addr: addr, Len: uint32(len(seg))}
		if len(f) > 0 {
			d.Options = unix.XDP_PKT_CONTD
		}
		r.set(pos, d)
		pos++
	}
	return pos
}

// MultiBuffer reports whether the socket is bound with XDP_USE_SG
// (QueueConfig.MultiBuffer).
func (q *XSKQueue) MultiBuffer() bool { return q.multiBuffer }

// MaxTxSegments is how many descriptors, and so UMEM frames, one
// transmitted frame may span: 1 on a single-buffer queue; on a multi-buffer
// queue 18 in copy mode (the skb's linear part and MAX_SKB_FRAGS page
// fragments) or the driver's xdp-zc-max-segs in zero-copy mode. The kernel
// drops a longer chain as invalid; Tx and TxSubmitPackets refuse it first.
func (q *XSKQueue) MaxTxSegments() int { return q.maxTxSegs }

// TxSubmitPackets implements MultiBufferQueue: TxSubmit for frames built in several buffers lent by
// TxReserve: frame i is bufs[k:k+segs[i]], k the sum of segs[:i], and goes
// out as one chain of descriptors on a multi-buffer queue. It takes every
// buffer back, sent or not, and returns how many frames were sent, a
// prefix; the rest are counted as TxDropped. A checksum request
// (SetTxChecksum, on the first buffer of a frame, for the whole frame) is
// honoured as TxSubmit honours it. A frame of more than MaxTxSegments
// buffers, or an empty buffer in a chain, is not sent (ErrTxTooManySegs;
// an empty buffer ends the batch).
func (q *XSKQueue) TxSubmitPackets(bufs [][]byte, segs []int) (int, error) {
	q.txMu.Lock()
	defer q.txMu.Unlock()
	if q.closed.Load() {
		return 0, net.ErrClosed
	}
	total := 0
	for _, k := range segs {
		if k <= 0 {
			total = -1
			break
		}
		total += k
	}
	if total != len(bufs) {
		// Take every lent buffer back, as promised, and send none.
		foreign := q.releaseLocked(bufs)
		q.countTxLocked(0, 0, len(segs))
		if foreign > 0 {
			return 0, fmt.Errorf("submit TX packets on %s queue %d: %w; and %d buffers not lent by TxReserve", q.ifname, q.queue, ErrTxSegsMismatch, foreign)
		}
		return 0, ErrTxSegsMismatch
	}
	q.reapLocked()
	pos, free := q.tx.reserve(q.tx.size())
	var used, n, csums uint32
	var bytes uint64
	foreign := 0
	var err error
	sending := true
	k := 0
	for _, nseg := range segs {
		chain := bufs[k : k+nseg]
		k += nseg
		if nseg > q.maxTxSegs {
			foreign += q.releaseLocked(chain)
			sending = false
			if err == nil {
				err = ErrTxTooManySegs
			}
			continue
		}
		var addrs [maxChain]uint64 // maxTxSegs <= maxChain
		ok := true
		cnt := 0
		for _, b := range chain {
			addr, lent := q.takeBackLocked(b)
			if !lent {
				foreign++
				ok = false
				continue
			}
			addrs[cnt] = addr
			cnt++
			if len(b) == 0 {
				ok = false
			}
		}
		if sending && ok && uint32(nseg) <= free-used {
			for i, b := range chain {
				d := xdpDesc{Addr: addrs[i] + q.txMeta, Len: uint32(len(b))}
				if i == 0 && q.txMeta > 0 && binary.NativeEndian.Uint64(q.umem[addrs[0]+txMetaFlags:]) != 0 {
					d.Options = unix.XDP_TX_METADATA
					csums++
				}
				if i < nseg-1 {
					d.Options |= unix.XDP_PKT_CONTD
				}
				q.tx.set(pos+used, d)
				used++
				bytes += uint64(len(b))
			}
			n++
			continue
		}
		if sending && ok {
			q.c.TxRingFull.Add(1)
		}
		sending = false
		for _, a := range addrs[:cnt] {
			q.txFree.push(a)
		}
	}
	q.tx.submit(used)
	q.countTxLocked(n, bytes, len(segs)-int(n))
	if csums > 0 {
		q.c.TxCsumOffload.Add(uint64(csums))
	}
	kerr := q.kickTxLocked()
	if foreign > 0 {
		return int(n), fmt.Errorf("submit TX packets on %s queue %d: %d buffers not lent by TxReserve, or given back twice", q.ifname, q.queue, foreign)
	}
	if err == nil {
		err = kerr
	}
	return int(n), err
}

// TxReserve implements Queue: it lends free TX-side UMEM frames, each a
// slice of the UMEM of length 0 and capacity FrameSize (less the TX
// metadata in front of it when TX checksum offload is on), reaping the
// completion ring first when the free stack is short.
func (q *XSKQueue) TxReserve(bufs [][]byte) int {
	q.txMu.Lock()
	defer q.txMu.Unlock()
	if q.closed.Load() {
		return 0
	}
	if q.txFree.len() < len(bufs) {
		q.reapLocked()
	}
	n := min(len(bufs), q.txFree.len())
	for i := range n {
		addr := q.txFree.pop()
		q.txLent[addr/q.frameSize-uint64(q.rxSideFrames)] = true
		if q.txMeta > 0 {
			// Forget the checksum request of the frame's last use.
			binary.NativeEndian.PutUint64(q.umem[addr+txMetaFlags:], 0)
		}
		bufs[i] = q.umem[addr+q.txMeta : addr+q.txMeta : addr+q.frameSize]
	}
	q.txLentN += n
	return n
}

// TxSubmit implements Queue: the frames go on the TX ring where they are,
// without a copy.
func (q *XSKQueue) TxSubmit(frames [][]byte) (int, error) {
	q.txMu.Lock()
	defer q.txMu.Unlock()
	if q.closed.Load() {
		return 0, net.ErrClosed
	}
	// Reap as Tx does: the kernel completes a frame only where the
	// completion ring has room, so a sender that never reaped (its free
	// stack still long) would stall the transmit.
	q.reapLocked()
	pos, got := q.tx.reserve(uint32(len(frames)))
	if got < uint32(len(frames)) {
		q.c.TxRingFull.Add(1)
	}
	var n, csums uint32
	var bytes uint64
	foreign := 0
	// Once one frame is not sent, none after it is: the sent ones stay a
	// prefix, in order.
	sending := true
	for _, f := range frames {
		addr, ok := q.takeBackLocked(f)
		if !ok {
			foreign++
			sending = false
			continue
		}
		if sending && n < got && len(f) > 0 {
			d := xdpDesc{Addr: addr + q.txMeta, Len: uint32(len(f))}
			// SetTxChecksum set the flag; TxReserve cleared it.
			if q.txMeta > 0 && binary.NativeEndian.Uint64(q.umem[addr+txMetaFlags:]) != 0 {
				d.Options = unix.XDP_TX_METADATA
				csums++
			}
			q.tx.set(pos+n, d)
			bytes += uint64(len(f))
			n++
			continue
		}
		sending = false
		q.txFree.push(addr)
	}
	q.tx.submit(n)
	q.countTxLocked(n, bytes, len(frames)-int(n))
	if csums > 0 {
		q.c.TxCsumOffload.Add(uint64(csums))
	}
	err := q.kickTxLocked()
	if foreign > 0 {
		return int(n), fmt.Errorf("submit TX frames on %s queue %d: %d buffers not lent by TxReserve, or given back twice", q.ifname, q.queue, foreign)
	}
	return int(n), err
}

// TxRelease implements Queue.
func (q *XSKQueue) TxRelease(bufs [][]byte) error {
	q.txMu.Lock()
	defer q.txMu.Unlock()
	if q.closed.Load() {
		return net.ErrClosed
	}
	if foreign := q.releaseLocked(bufs); foreign > 0 {
		return fmt.Errorf("release TX buffers on %s queue %d: %d buffers not lent by TxReserve, or given back twice", q.ifname, q.queue, foreign)
	}
	return nil
}

// releaseLocked takes back lent buffers without sending them and returns
// how many were not lent.
func (q *XSKQueue) releaseLocked(bufs [][]byte) (foreign int) {
	for _, b := range bufs {
		addr, ok := q.takeBackLocked(b)
		if !ok {
			foreign++
			continue
		}
		q.txFree.push(addr)
	}
	return foreign
}

// takeBackLocked returns the UMEM address of the frame of b, a buffer lent
// by TxReserve, and marks it no longer lent; false if b is not such a
// buffer. The caller holds txMu.
func (q *XSKQueue) takeBackLocked(b []byte) (uint64, bool) {
	addr, ok := q.txFrameOf(b)
	if !ok {
		return 0, false
	}
	i := addr/q.frameSize - uint64(q.rxSideFrames)
	if !q.txLent[i] {
		return 0, false
	}
	q.txLent[i] = false
	q.txLentN--
	return addr, true
}

// txFrameOf returns the UMEM address of the TX-side frame b was lent from,
// if b starts where TxReserve's buffers start.
func (q *XSKQueue) txFrameOf(b []byte) (uint64, bool) {
	addr, ok := umemOffset(q.umem, b)
	if !ok || addr&(q.frameSize-1) != q.txMeta || addr/q.frameSize < uint64(q.rxSideFrames) {
		return 0, false
	}
	return addr - q.txMeta, true
}

// TxChecksumOffload implements TxChecksumOffloader: whether the UMEM was
// registered with TX metadata (QueueConfig.TxChecksum), so that the kernel
// or driver completes the checksums SetTxChecksum asks for. In copy mode
// the kernel marks the frame's skb CHECKSUM_PARTIAL and the checksum is
// the device's to fill in, or the kernel's own (skb_checksum_help) when
// the device cannot or TxChecksumSoftware asked for it.
func (q *XSKQueue) TxChecksumOffload() bool { return q.txMeta > 0 }

// TxChecksumSoftware reports whether the kernel computes requested
// checksums in software (TxChecksumSoftware).
func (q *XSKQueue) TxChecksumSoftware() bool { return q.txSWCsum }

// SetTxChecksum implements TxChecksumOffloader: it writes a checksum
// request into the struct xsk_tx_metadata in front of frame, and TxSubmit
// marks the frame's descriptor XDP_TX_METADATA. The kernel drops a frame
// whose request is out of bounds (counted as TxInvalidDescs); the check
// here catches that first.
func (q *XSKQueue) SetTxChecksum(frame []byte, start, offset int) error {
	if q.txMeta == 0 {
		return ErrTxChecksumOff
	}
	if start < 0 || offset < 0 || start > 0xffff || offset > 0xffff || start+offset+2 > len(frame) {
		return errTxChecksumRange
	}
	addr, ok := q.txFrameOf(frame)
	if !ok {
		return errTxChecksumBuf
	}
	m := q.umem[addr : addr+xskTxMetadataLen]
	binary.NativeEndian.PutUint16(m[txMetaCsumStart:], uint16(start))
	binary.NativeEndian.PutUint16(m[txMetaCsumOffset:], uint16(offset))
	binary.NativeEndian.PutUint64(m[txMetaFlags:], unix.XDP_TXMD_FLAGS_CHECKSUM)
	return nil
}

// countTxLocked counts n frames of bytes bytes sent and dropped frames not.
func (q *XSKQueue) countTxLocked(n uint32, bytes uint64, dropped int) {
	if dropped > 0 {
		q.c.TxDropped.Add(uint64(dropped))
	}
	if n > 0 {
		q.c.TxFrames.Add(uint64(n))
		q.c.TxBytes.Add(bytes)
	}
}

// kickTxLocked makes the kernel send what waits in the TX ring. The caller
// holds txMu.
//
// The kernel sets need_wakeup on the TX ring when it will not look at the
// ring again without a sendto (always in copy mode, where sendto runs the
// transmit). A kick that found the kernel busy left frames behind; they go
// with this one.
//
// In copy mode one sendto sends at most txBudget frames and answers EAGAIN
// when more are waiting: kick until the ring is drained or a kick makes no
// progress, so that no frame waits in the ring for the next batch (a
// stalled ACK costs a spurious retransmission timeout).
func (q *XSKQueue) kickTxLocked() error {
	for pending := q.tx.pending(); pending > 0 && q.tx.needWakeup(); {
		q.c.txWakeups.Add(1)
		if err := q.wakeupLocked(unix.SYS_SENDTO); err != nil {
			return fmt.Errorf("wake up TX of %s queue %d: %w", q.ifname, q.queue, err)
		}
		left := q.tx.pending()
		if left >= pending {
			break
		}
		pending = left
	}
	return nil
}

// settleTxLocked reaps completions and kicks frames left in the TX ring,
// when any frame is out with the kernel. The caller holds txMu.
func (q *XSKQueue) settleTxLocked() {
	if q.tx.cachedProd-q.comp.cachedCons == q.txBase {
		return // every TX frame is back
	}
	q.reapLocked()
	if q.tx.pending() > 0 && q.tx.needWakeup() {
		q.c.txWakeups.Add(1)
		// An error here is the next Tx's to report.
		_ = q.wakeupLocked(unix.SYS_SENDTO)
	}
}

// reapLocked moves completed TX frames back to the free stack.
func (q *XSKQueue) reapLocked() {
	pos, n := q.comp.peek(q.comp.size())
	for i := range n {
		q.txFree.push(q.comp.get(pos+i) &^ (q.frameSize - 1))
	}
	q.comp.release(n)
}

// Wait implements Queue: ppoll(2) for POLLIN on the socket. Close ends it.
func (q *XSKQueue) Wait(timeout time.Duration) error {
	q.fdMu.RLock()
	defer q.fdMu.RUnlock()
	if q.closed.Load() {
		return net.ErrClosed
	}
	q.pollFds[0] = unix.PollFd{Fd: int32(q.fd), Events: unix.POLLIN}
	q.pollFds[1] = unix.PollFd{Fd: int32(q.eventfd), Events: unix.POLLIN}
	var ts *unix.Timespec
	if timeout >= 0 {
		q.pollTimeout = unix.NsecToTimespec(int64(timeout))
		ts = &q.pollTimeout
	}
	var err error
	if q.noHandoff {
		// A signal (the runtime's preemption among them) ends the wait
		// with EINTR, as it does an ordinary one.
		_, _, errno := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&q.pollFds[0])),
			uintptr(len(q.pollFds)), uintptr(unsafe.Pointer(ts)), 0, 0, 0)
		if errno != 0 {
			err = errno
		}
	} else {
		_, err = unix.Ppoll(q.pollFds[:], ts, nil)
	}
	if q.closed.Load() {
		return net.ErrClosed
	}
	if err != nil && err != unix.EINTR {
		return fmt.Errorf("poll %s queue %d: %w", q.ifname, q.queue, err)
	}
	return nil
}

// Stats implements Queue. The kernel counters come from XDP_STATISTICS; after
// Close they keep their last values.
func (q *XSKQueue) Stats() Stats {
	q.fdMu.RLock()
	q.statsMu.Lock()
	if !q.closed.Load() {
		// An error leaves the previous values; the socket is bound.
		_ = xdpStatistics(q.fd, &q.kernelLast)
	}
	k := q.kernelLast
	q.statsMu.Unlock()
	q.fdMu.RUnlock()

	// Only user-owned state is read (no shared ring memory), so this is
	// also right after Close, when the rings are unmapped.
	q.rxMu.Lock()
	rxUser := q.rxFree.len() + len(q.held)
	rxKernel := q.fill.cachedProd - q.rx.cachedCons - q.rxBase
	q.rxMu.Unlock()
	q.txMu.Lock()
	txFree := q.txFree.len() + q.txLentN
	txLent := q.txLentN
	txKernel := q.tx.cachedProd - q.comp.cachedCons - q.txBase
	q.txMu.Unlock()
	s := Stats{
		UMEMFrames:       uint64(q.rxSideFrames + q.txSideFrames),
		UMEMRxUser:       uint64(rxUser),
		UMEMRxKernel:     uint64(rxKernel),
		UMEMTxFree:       uint64(txFree),
		UMEMTxKernel:     uint64(txKernel),
		UMEMTxLent:       uint64(txLent),
		TxBudget:         uint64(q.txBudget),
		FillRingEmpty:    q.c.fillRingEmpty.Load(),
		TxWakeups:        q.c.txWakeups.Load(),
		RxWakeups:        q.c.rxWakeups.Load(),
		WakeupBusy:       q.c.wakeupBusy.Load(),
		RxDropped:        k.Rx_dropped,
		RxInvalidDescs:   k.Rx_invalid_descs,
		TxInvalidDescs:   k.Tx_invalid_descs,
		RxRingFull:       k.Rx_ring_full,
		RxFillRingEmpty:  k.Rx_fill_ring_empty_descs,
		TxRingEmptyDescs: k.Tx_ring_empty_descs,
	}
	q.c.Read(&s)
	return s
}

// Close implements Queue. It removes the socket from its port's XSKMAP,
// closes it and unmaps the UMEM and rings. Frames returned by Rx must not be
// used after Close.
func (q *XSKQueue) Close() error {
	q.closeOnce.Do(func() {
		q.closed.Store(true)
		// Signal a blocked Wait, then take every lock so no Rx, Tx,
		// Wait or Stats is still using the socket or the mappings.
		var one = [8]byte{1}
		_, _ = unix.Write(q.eventfd, one[:])
		q.rxMu.Lock()
		defer q.rxMu.Unlock()
		q.txMu.Lock()
		defer q.txMu.Unlock()
		q.fdMu.Lock()
		defer q.fdMu.Unlock()
		q.statsMu.Lock()
		_ = xdpStatistics(q.fd, &q.kernelLast)
		q.statsMu.Unlock()
		if q.onClose != nil {
			q.onClose()
		}
		if err := q.release(); err != nil {
			q.closeErr = fmt.Errorf("close xsk on %s queue %d: %w", q.ifname, q.queue, err)
		}
	})
	return q.closeErr
}

func (q *XSKQueue) String() string {
	mb := ""
	if q.multiBuffer {
		mb = ", multi-buffer"
	}
	csum := ""
	switch {
	case q.txSWCsum:
		csum = ", tx checksum in kernel software"
	case q.txMeta > 0:
		csum = ", tx checksum offload"
	}
	return fmt.Sprintf("xsk(%s queue %d, %s%s%s)", q.ifname, q.queue, strings.ToLower(q.Mode()), csum, mb)
}
