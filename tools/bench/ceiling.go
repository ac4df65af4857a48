package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/internal/affinity"
	"github.com/xstack/xstack/internal/blast"
	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/nic"
)

// ceilingResult is one ceiling run: how fast an xsk that only counts
// receives minimal frames that the peer sends as fast as it can.
type ceilingResult struct {
	received, sent uint64
	elapsed        time.Duration
	stats          nic.Stats
	mode           string
}

// runCeiling measures the rig's raw AF_XDP receive rate: the peer blasts
// UDP frames of frameLen bytes (Ethernet header included, 60 at least) to
// the stack address with AF_PACKET sendmmsg from a thread on clientCPU; an
// xsk on queue 0 of the stack side (the same XDP program and queue code
// xstack uses) receives them on serverCPU and only counts. No stack runs:
// this is the most any stack can get from the rig.
func runCeiling(ctx context.Context, r *rig.Rig, serverCPU, clientCPU, frameLen int, d time.Duration) (ceilingResult, error) {
	var res ceilingResult
	old := runtime.GOMAXPROCS(4)
	defer runtime.GOMAXPROCS(old)

	var (
		port *nic.Port
		q    *nic.XSKQueue
	)
	err := netns.Do(r.StackNS, func() (err error) {
		port, err = nic.OpenPort(nic.PortConfig{Ifname: r.StackIf, XDPMode: "auto", PassToKernel: true, Addrs: []netip.Addr{r.StackAddr4}})
		if err != nil {
			return err
		}
		q, err = port.OpenQueue(nic.QueueConfig{Frames: 8192, RxRing: 2048, FillRing: 4096, TxRing: 64})
		return err
	})
	if err != nil {
		if port != nil {
			port.Close()
		}
		return res, fmt.Errorf("open xsk: %w", err)
	}
	defer port.Close()
	defer q.Close()
	res.mode = string(port.Mode()) + " XDP, " + q.Mode()

	var fd int
	err = netns.Do(r.PeerNS, func() error {
		ifi, err := net.InterfaceByName(r.PeerIf)
		if err != nil {
			return err
		}
		// Protocol 0: a send-only socket that receives nothing.
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			unix.Close(fd)
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index})
	})
	if err != nil {
		return res, fmt.Errorf("blaster socket: %w", err)
	}
	defer unix.Close(fd)

	payload := frameLen - header.EthernetMinimumSize - header.IPv4MinimumSize - header.UDPMinimumSize
	if payload < 0 {
		return res, fmt.Errorf("ceiling: a frame of %d bytes holds no UDP header", frameLen)
	}
	frame := udp4Frame(r.StackMAC, r.PeerMAC, r.PeerAddr4, r.StackAddr4, 40000, 9, make([]byte, payload))
	var stopBlast atomic.Bool
	var sent atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Never unlocked: the thread, pinned below, dies with the
		// goroutine instead of carrying its affinity back to the pool.
		runtime.LockOSThread()
		affinity.PinThread(clientCPU)
		batch := blast.NewBatch(64)
		for !stopBlast.Load() {
			n := 0
			for range 16 {
				n += batch.Send(fd, frame)
			}
			sent.Add(uint64(n))
		}
	}()
	stop := func() {
		stopBlast.Store(true)
		wg.Wait()
	}
	defer stop()

	type rxOut struct {
		n, sent uint64
		elapsed time.Duration
		err     error
	}
	out := make(chan rxOut, 1)
	go func() {
		runtime.LockOSThread()
		affinity.PinThread(serverCPU)
		frames := make([][]byte, 64)
		var o rxOut
		defer func() { out <- o }()
		// Wait for the first frame, then warm up, so that start-up is
		// not measured.
		warm := time.Now().Add(5 * time.Second)
		for n := 0; n == 0; {
			if n, o.err = q.Rx(frames); o.err != nil {
				return
			}
			if time.Now().After(warm) {
				o.err = fmt.Errorf("no frame reached the xsk within 5s")
				return
			}
		}
		for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
			if _, o.err = q.Rx(frames); o.err != nil {
				return
			}
		}
		start, sent0 := time.Now(), sent.Load()
		deadline := start.Add(d)
		for polls := 0; ; polls++ {
			n, err := q.Rx(frames)
			if err != nil {
				o.err = err
				return
			}
			o.n += uint64(n)
			if polls&255 == 0 && (time.Now().After(deadline) || ctx.Err() != nil) {
				break
			}
		}
		o.elapsed, o.sent = time.Since(start), sent.Load()-sent0
	}()
	o := <-out
	stop()
	res.received, res.sent, res.elapsed, res.stats = o.n, o.sent, o.elapsed, q.Stats()
	if o.err == nil {
		o.err = ctx.Err()
	}
	return res, o.err
}

// udp4Frame builds an Ethernet frame with an IPv4 UDP datagram, both
// checksums set, with gVisor's header encoders (the same code that reads
// the frame on xstack's side).
func udp4Frame(dst, src net.HardwareAddr, saddr, daddr netip.Addr, sport, dport uint16, payload []byte) []byte {
	udpLen := header.UDPMinimumSize + len(payload)
	f := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+udpLen)
	header.Ethernet(f).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(src), DstAddr: tcpip.LinkAddress(dst), Type: header.IPv4ProtocolNumber,
	})
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	s, d := tcpip.AddrFrom4(saddr.As4()), tcpip.AddrFrom4(daddr.As4())
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(header.IPv4MinimumSize + udpLen), Flags: header.IPv4FlagDontFragment,
		TTL: 64, Protocol: uint8(header.UDPProtocolNumber), SrcAddr: s, DstAddr: d,
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(ip[header.IPv4MinimumSize:])
	u.Encode(&header.UDPFields{SrcPort: sport, DstPort: dport, Length: uint16(udpLen)})
	copy(u.Payload(), payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, s, d, uint16(udpLen))
	sum := ^u.CalculateChecksum(checksum.Checksum(payload, xsum))
	if sum == 0 {
		sum = 0xffff // zero means "no checksum" in UDP over IPv4
	}
	u.SetChecksum(sum)
	return f
}
