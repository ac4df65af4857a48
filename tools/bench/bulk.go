package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"maps"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
)

// The bulk scenario: TCP throughput in both directions, against
// examples/echo's discard (upload: the peer writes) and chargen (download:
// the peer reads) services, on xstack and on the kernel's sockets
// (echo -kernel, the same server logic).

// Services of examples/echo that the bulk and conns scenarios use.
const (
	discardPort = 9
	chargenPort = 19
)

// Bulk directions, seen from the peer (the client).
const (
	upload   = "upload"   // peer → stack, to discard
	download = "download" // stack → peer, from chargen
)

// offloadFeatures are the ethtool -K features the bulk scenario turns off
// (long name as ethtool -k prints it, short name for ethtool -K).
var offloadFeatures = []struct{ long, short string }{
	{"tcp-segmentation-offload", "tso"},
	{"generic-segmentation-offload", "gso"},
	{"generic-receive-offload", "gro"},
}

// reportedOffloads are the ethtool -k lines the notes and samples report,
// with their short names. TSO is reported by its TCP feature,
// tx-tcp-segmentation: the tcp-segmentation-offload line is "on" if any
// TSO feature is, and on recent kernels veth keeps
// tx-tcp-accecn-segmentation on when TCP's TSO is off for want of TX
// checksum offload.
var reportedOffloads = []struct{ long, short string }{
	{"tx-checksumming", "tx-csum"},
	{"tx-tcp-segmentation", "tso"},
	{"generic-segmentation-offload", "gso"},
	{"generic-receive-offload", "gro"},
}

// readOffloads returns the state of ifname's offloads in namespace ns as
// ethtool -k reports it: feature name → "on" or "off" (what is in effect,
// not what was requested).
func (b *bench) readOffloads(ns, ifname string) (map[string]string, error) {
	out, err := b.r.Run(ns, "ethtool", "-k", ifname)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for l := range strings.SplitSeq(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if f := strings.Fields(v); ok && len(f) > 0 {
			m[k] = f[0]
		}
	}
	for _, f := range append(reportedOffloads, offloadFeatures...) {
		if m[f.long] == "" {
			return nil, fmt.Errorf("ethtool -k %s in %s: no %s in\n%s", ifname, ns, f.long, out)
		}
	}
	return m, nil
}

// setOffloads runs ethtool -K ifname in ns with feature/value pairs.
func (b *bench) setOffloads(ns, ifname string, set map[string]string) error {
	args := []string{"-K", ifname}
	for _, f := range offloadFeatures {
		if v, ok := set[f.long]; ok {
			args = append(args, f.short, v)
		}
	}
	_, err := b.r.Run(ns, "ethtool", args...)
	return err
}

// offloadSummary is the offloads of one veth end, for the notes.
func offloadSummary(ifname string, m map[string]string) string {
	var parts []string
	for _, f := range reportedOffloads {
		parts = append(parts, f.short+" "+m[f.long])
	}
	return ifname + " " + strings.Join(parts, ", ")
}

func onOff(v string) float64 {
	if v == "on" {
		return 1
	}
	return 0
}

// bulk measures TCP throughput with 1 and 4 flows (-bulk-flows), both
// directions, once with the veth offloads as the rig has them and once
// with TSO, GSO and GRO off on both ends (MTU-sized frames on the wire in
// both directions, as between two hosts).
func (b *bench) bulk() error {
	if err := b.bulkRounds("as-is"); err != nil {
		return err
	}
	if err := b.withOffloadsOff(func() error { return b.bulkRounds(b.offloadsOffName()) }); err != nil {
		return err
	}
	b.res.note("bulk: payload Gbit/s over the measurement window after a warm-up; upload = peer writes to discard (bytes the server's TCP acknowledged, from TCP_INFO), download = peer reads from chargen (bytes read); kernel target = examples/echo -kernel, the same server code on the kernel's sockets")
	return nil
}

// offloadsOff are the features withOffloadsOff turns off: TSO, GSO and GRO,
// but not GRO in the nic rig mode, whose threaded NAPI exists only while
// GRO is on (MTU-sized frames on the wire need only TSO and GSO off).
func (b *bench) offloadsOff() []string {
	var off []string
	for _, f := range offloadFeatures {
		if f.short != "gro" || b.r.RxCPU != rig.RxReceiver {
			off = append(off, f.long)
		}
	}
	return off
}

// offloadsOffName names the offloads-off setting in labels.
func (b *bench) offloadsOffName() string {
	if b.r.RxCPU == rig.RxReceiver {
		return "tso/gso off"
	}
	return "off"
}

// withOffloadsOff runs f with the offloadsOff features off on both veth
// ends and restores what they were (no server runs between rounds, so no
// XDP program alters what is read and restored).
func (b *bench) withOffloadsOff(f func() error) error {
	r := b.r
	ends := []struct{ ns, ifname string }{{r.PeerNS, r.PeerIf}, {r.StackNS, r.StackIf}}
	var saved []map[string]string
	for _, e := range ends {
		m, err := b.readOffloads(e.ns, e.ifname)
		if err != nil {
			return err
		}
		saved = append(saved, m)
	}
	defer func() {
		for i, e := range ends {
			if err := b.setOffloads(e.ns, e.ifname, saved[i]); err != nil {
				log.Printf("restore offloads: %v", err)
				b.res.Notes = append(b.res.Notes, fmt.Sprintf("bulk: could not restore the offloads of %s: %v", e.ifname, err))
			}
		}
	}()
	off := map[string]string{}
	for _, f := range b.offloadsOff() {
		off[f] = "off"
	}
	for _, e := range ends {
		if err := b.setOffloads(e.ns, e.ifname, off); err != nil {
			return err
		}
	}
	return f()
}

// bulkRounds runs every round of bulk with the offloads as they are now
// (mode names them in the labels).
func (b *bench) bulkRounds(mode string) error {
	r := b.r
	warm := time.Second
	if b.o.quick {
		warm = 300 * time.Millisecond
	}
	seen := map[string]bool{}
	return b.eachRound(streamServer, bothTargets, func(round int, tg string, addr netip.AddrPort) error {
		// What the offloads really are while this target runs: an XDP
		// program on the stack's veth end changes its peer's features.
		var parts []string
		detail := map[string]float64{}
		for _, e := range []struct{ ns, ifname, key string }{{r.PeerNS, r.PeerIf, "peer"}, {r.StackNS, r.StackIf, "stack"}} {
			m, err := b.readOffloads(e.ns, e.ifname)
			if err != nil {
				return err
			}
			parts = append(parts, offloadSummary(e.ifname, m))
			for _, f := range reportedOffloads {
				detail[e.key+"_"+strings.ReplaceAll(f.short, "-", "_")] = onOff(m[f.long])
			}
		}
		note := fmt.Sprintf("bulk, rig %s, offloads %s, %s target: %s (ethtool -k while it ran)", b.mode, mode, tg, strings.Join(parts, "; "))
		if !seen[note] {
			seen[note] = true
			b.res.Notes = append(b.res.Notes, note)
		}
		for _, flows := range b.o.bulkFlows {
			for _, dir := range []string{upload, download} {
				port := uint16(discardPort)
				if dir == download {
					port = chargenPort
				}
				br, err := runBulk(b.ctx, r.PeerNS, netip.AddrPortFrom(addr.Addr(), port), dir, flows, warm, b.o.duration, b.snap)
				if err != nil {
					return fmt.Errorf("bulk %s, %d flows: %w", dir, flows, err)
				}
				gbps := float64(br.bytes) * 8 / br.elapsed.Seconds() / 1e9
				d := maps.Clone(detail)
				d["bytes"], d["seconds"] = float64(br.bytes), br.elapsed.Seconds()
				d["slowest_connect_seconds"] = br.slowestConnect.Seconds()
				if br.slowestConnect >= time.Second {
					b.res.Notes = append(b.res.Notes, fmt.Sprintf("bulk: %s round %d, %d flows %s: a connect took %v (a SYN or SYN-ACK was retransmitted)",
						tg, round, flows, dir, br.slowestConnect.Round(time.Millisecond)))
				}
				label := fmt.Sprintf("%d flow%s, %s, offloads %s", flows, plural(flows), dir, mode)
				w := window(br.cpu[0], br.cpu[1], float64(br.bytes), "bytes")
				pt := b.point("bulk", clientGo, label, flows, "throughput", "Gbit/s", false)
				pt.Samples = append(pt.Samples, &Sample{Target: tg, Round: round, Value: gbps, Errors: br.errors, Detail: d, CPU: &w})
				b.res.addCost(pt, tg, round, w, "byte")
				server, _ := w.costPer()
				log.Printf("  bulk %s %s round %d %s: %.2f Gbit/s (%d errors); server %.2f CPU-s/GB, client CPU %.0f%%", b.mode, tg, round, label, gbps, br.errors, server, 100*w.Client.util())
			}
		}
		return nil
	})
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// bulkResult is one bulk measurement.
type bulkResult struct {
	bytes   uint64 // payload moved in the window, all flows
	elapsed time.Duration
	errors  uint64 // flows that failed during the window
	// slowestConnect is the longest connect of the flows: a second or
	// more means a SYN or SYN-ACK was lost and retransmitted.
	slowestConnect time.Duration
	// cpu are the CPU snapshots at the window's edges (if runBulk was
	// given a snap function).
	cpu [2]cpuSnap
}

// bulkFlow is one connection's state, shared between its worker and the
// measuring goroutine.
type bulkFlow struct {
	fd    atomic.Int64  // the socket once connected, else -1
	read  atomic.Uint64 // download: bytes read so far
	ended atomic.Bool   // the worker has stopped (error or stop)
	// connect is how long connect took; written before the worker
	// reports that it connected.
	connect time.Duration
}

// counted returns the flow's byte count: bytes read (download), or bytes
// the server's TCP has acknowledged (upload: tcpi_bytes_acked), which
// unlike bytes written does not count what still sits in the send buffer.
func (f *bulkFlow) counted(dir string) uint64 {
	if dir == download {
		return f.read.Load()
	}
	fd := f.fd.Load()
	if fd < 0 {
		return 0
	}
	ti, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0
	}
	return ti.Bytes_acked
}

// runBulk runs flows TCP connections from namespace ns to addr, each on a
// thread of its own with blocking syscalls: writers (upload) or readers
// (download) of 64 KiB. After warm, it counts the bytes moved in d, and
// takes the CPU figures at the window's edges with snap unless it is nil.
func runBulk(ctx context.Context, ns string, addr netip.AddrPort, dir string, flows int, warm, d time.Duration, snap func() (cpuSnap, error)) (bulkResult, error) {
	var res bulkResult
	old := runtime.GOMAXPROCS(flows + 2)
	defer runtime.GOMAXPROCS(old)
	fs := make([]*bulkFlow, flows)
	for i := range fs {
		fs[i] = &bulkFlow{}
		fs[i].fd.Store(-1)
	}
	var stop atomic.Bool
	connected := make(chan error, flows)
	errs := make([]error, flows)
	var wg sync.WaitGroup
	for i, f := range fs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer f.ended.Store(true)
			reported := false
			report := func(err error) { reported = true; connected <- err }
			errs[i] = netns.Do(ns, func() error { return bulkWorker(f, addr, dir, &stop, report) })
			if !reported {
				connected <- errs[i] // could not enter the namespace
			}
		}()
	}
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()

	for range flows {
		select {
		case err := <-connected:
			if err != nil {
				return res, err
			}
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	for _, f := range fs {
		res.slowestConnect = max(res.slowestConnect, f.connect)
	}
	sample := func() uint64 {
		var n uint64
		for _, f := range fs {
			n += f.counted(dir)
		}
		return n
	}
	if !sleepCtx(ctx, warm) {
		return res, ctx.Err()
	}
	snapAt := func(i int) error {
		if snap == nil {
			return nil
		}
		var err error
		res.cpu[i], err = snap()
		return err
	}
	if err := snapAt(0); err != nil {
		return res, err
	}
	b0, t0 := sample(), monotonic()
	if !sleepCtx(ctx, d) {
		return res, ctx.Err()
	}
	b1, t1 := sample(), monotonic()
	if err := snapAt(1); err != nil {
		return res, err
	}
	for _, f := range fs {
		if f.ended.Load() {
			res.errors++
		}
	}
	stop.Store(true)
	wg.Wait()
	if res.errors > 0 {
		return res, fmt.Errorf("%d of %d flows ended early: %w", res.errors, flows, errors.Join(errs...))
	}
	res.bytes, res.elapsed = b1-b0, time.Duration(t1-t0)
	if res.bytes == 0 {
		return res, errors.New("no byte moved")
	}
	return res, nil
}

// bulkWorker connects one flow, reports the outcome, and moves data until
// stop. The socket has one-second timeouts so that it sees stop even when
// the server stalls; it is closed with a reset (SO_LINGER 0), so that
// nothing lingers in the send buffer or in TIME_WAIT after the round.
func bulkWorker(f *bulkFlow, addr netip.AddrPort, dir string, stop *atomic.Bool, connected func(error)) error {
	domain, sa := sockaddr(addr)
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		connected(err)
		return err
	}
	defer func() {
		unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		f.fd.Store(-1)
		unix.Close(fd)
	}()
	// Connect with a timeout that leaves room for SYN retransmissions
	// (the first after 1s), then move data with one-second timeouts.
	tv := unix.NsecToTimeval((5 * time.Second).Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	t0 := time.Now()
	if err := unix.Connect(fd, sa); err != nil {
		err = fmt.Errorf("connect %v: no connection within %v: %w", addr, time.Since(t0).Round(time.Millisecond), err)
		connected(err)
		return err
	}
	f.connect = time.Since(t0)
	tv = unix.NsecToTimeval(time.Second.Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	f.fd.Store(int64(fd))
	connected(nil)
	buf := make([]byte, 64<<10)
	if dir == upload {
		for i := range buf {
			buf[i] = byte(i)
		}
	}
	for !stop.Load() {
		var n int
		var err error
		if dir == upload {
			n, err = unix.Write(fd, buf)
		} else {
			n, err = unix.Read(fd, buf)
			if n > 0 {
				f.read.Add(uint64(n))
			}
		}
		switch {
		case err == nil && n == 0 && dir == download:
			if stop.Load() {
				return nil
			}
			return errors.New("chargen closed the connection")
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			// A timeout: look at stop again.
		case err != nil:
			if stop.Load() {
				return nil
			}
			return fmt.Errorf("%s: %w", dir, err)
		}
	}
	return nil
}

// sleepCtx sleeps for d unless ctx ends first; it reports whether it slept
// the whole time.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// probeChargen reads the first line of chargen at addr: the server is up
// and the neighbours are resolved.
func probeChargen(addr netip.AddrPort) error {
	fd, err := dialBlocking(unix.SOCK_STREAM, addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	const want = " !\"#$%&'()*+,-./0123456789"
	buf := make([]byte, 0, len(want))
	for len(buf) < len(want) {
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("chargen closed the connection")
		}
		buf = buf[:len(buf)+n]
	}
	if string(buf) != want {
		return fmt.Errorf("chargen sent %q", buf)
	}
	return nil
}
