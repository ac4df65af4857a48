// Command xload is an HTTP/1.1 load generator on an AF_XDP socket of its
// own, for benchmark rigs where the client must cost less than the server.
//
//	xload -netns xsdemo-p -if xp0 -src 198.18.1.1-198.18.1.4 \
//	    -server 198.18.0.1:80 -c 64 -d 5s [-short] [-rate R] [-json]
//	xload -netns xsdemo-p -if xp0 -src 2001:2::100-2001:2::10f \
//	    -server '[2001:2::1]:80' ...
//
// A run is IPv4 or IPv6: -src and -server are of one family. It attaches
// its own XDP program (nic.OpenPort) to the interface, which redirects to
// its socket only the frames addressed to its -src addresses (IPv4 and
// IPv6 packets to them, ARP and Neighbor Discovery for them) and passes
// everything else to the kernel, so the namespace's own traffic keeps
// working on the same interface.
//
// Why a TCP of its own, and not xstack's stack: a load generator only opens
// connections, sends one small request at a time and reads responses it
// throws away. A full stack (gVisor's, or the kernel's under wrk) pays per
// connection for endpoint objects, goroutines, timers, socket buffers and
// queues, and per request for copies into and out of them. Here a
// connection is an 88-byte slot of a preallocated table indexed by source
// address and port; a request is one segment built in the UMEM frame it
// is sent from, and a response is parsed as it arrives and dropped. One
// goroutine polls the queue, with no allocation per connection or request.
// Frames are parsed by stack/packet and built with gVisor's header package,
// as in the rest of the tree.
//
// What the client TCP does: a SYN with MSS and window scale; the request
// in one segment (it must fit in 536 bytes, the least MSS, RFC 9293
// 3.7.1); in-order data only (the server retransmits what was dropped, as
// only in-order data is acknowledged); FIN from either side; RST, believed
// at RCV.NXT only; retransmission of SYN, request and FIN with exponential
// backoff; ARP for the server (which must be on-link) and answers for its
// own addresses. Ports are used in FIFO order across every source address,
// from a port picked per run, with initial sequence numbers from the
// system's monotonic clock (RFC 6528), so a 4-tuple still in the server's
// TIME-WAIT is reused as late as possible, by a SYN above its old sequence
// space, which the server accepts. Should one still fall below (a long
// keep-alive connection outruns the clock), the server's TIME-WAIT answers
// with an ACK, which gets a reset (RFC 9293 3.10.7.3) that ends it, and the
// SYN's retransmission opens the connection.
//
// Over IPv6 it does the same, with the IPv6 pseudo-header in the
// checksums and an MSS of the MTU less 60, and Neighbor Discovery (RFC
// 4861) in place of ARP. It answers Neighbor Solicitations for its
// addresses, sent to them or to their solicited-node groups, with a
// solicited advertisement carrying its link-layer address (and a probe of
// duplicate address detection with one to all nodes), and resolves the
// server with a solicitation to the server's solicited-node group
// (33:33:ff:xx:xx:xx), retried as the ARP request is, taking the server's
// MAC address from its advertisement or from a solicitation it sends. ND
// that fails RFC 4861's checks (hop limit 255, checksum, code 0, length,
// options, a target that is no multicast address) is counted as
// rx_bad_nd and dropped. It keeps no neighbor cache but the server's
// entry, and takes and sends no extension headers: a segment behind one
// is stray.
//
// Closed loop (the default), each connection sends its next request as soon
// as the last is answered, and latency runs from the request's send time; in
// -short mode from the SYN, so it includes the handshake. Open loop (-rate
// R), requests (with -short, connections) start on a fixed schedule of R
// per second, on whichever connection is idle, and latency runs from each
// one's scheduled time, as wrk2 measures it: a server that stalls delays
// the requests scheduled behind the stall, and their latency says so
// (coordinated omission is not hidden). Requests that found no idle
// connection when due are counted late, and those never sent unsent; the
// timeout runs from the actual send. The generator's own lateness is part
// of what it measures; -busy keeps it to a pass.
//
// The run exits 1 when any response was bad, short, reset or timed out, or
// none arrived.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/nic"
	"github.com/xstack/xstack/tools/xload/report"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

type options struct {
	ns, ifname, srcs, server, path, host, xdpMode string
	conns, perConn, portLo, portHi                int
	dur, timeout, rto                             time.Duration
	rate                                          float64
	short, jsonOut, busy                          bool
}

func main() {
	var o options
	flag.StringVar(&o.ns, "netns", "", "network namespace of the interface")
	flag.StringVar(&o.ifname, "if", "", "interface to attach to (required)")
	flag.StringVar(&o.srcs, "src", "", "source addresses, IPv4 or IPv6: a, a-b or a comma list (required; not the kernel's)")
	flag.StringVar(&o.server, "server", "", "server address:port, a.b.c.d:port or [IPv6]:port (on-link, the family of -src; required)")
	flag.StringVar(&o.path, "path", "/", "request path")
	flag.StringVar(&o.host, "host", "", "Host header (default: the server address)")
	flag.StringVar(&o.xdpMode, "xdp-mode", "auto", "auto|native|generic")
	flag.IntVar(&o.conns, "c", 16, "connections open at once")
	flag.IntVar(&o.perConn, "n", 0, "keep-alive: requests per connection before it is closed, 0 = no limit")
	flag.IntVar(&o.portLo, "port-lo", 10000, "lowest source port")
	flag.IntVar(&o.portHi, "port-hi", 60999, "highest source port")
	flag.DurationVar(&o.dur, "d", 5*time.Second, "duration")
	flag.DurationVar(&o.timeout, "timeout", 2*time.Second, "longest wait for a response")
	flag.DurationVar(&o.rto, "rto", 200*time.Millisecond, "initial retransmission timeout")
	flag.BoolVar(&o.short, "short", false, "one request per connection (Connection: close)")
	flag.Float64Var(&o.rate, "rate", 0, "open loop: start this many requests (with -short, connections) per second on a fixed schedule; 0 = closed loop")
	flag.BoolVar(&o.jsonOut, "json", false, "print the result as JSON")
	flag.BoolVar(&o.busy, "busy", false, "poll without sleeping when idle")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("xload: ")
	res, err := run(o)
	if err != nil {
		log.Fatal(err)
	}
	if o.jsonOut {
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
	} else {
		fmt.Print(res.Text())
	}
	if res.Counts.Errors() > 0 || res.Counts.OK == 0 {
		os.Exit(1)
	}
}

// parseSrcs reads -src: addresses and ranges of one family, IPv4 or IPv6,
// at most 64 addresses (a connection's slot holds its source as a byte
// index).
func parseSrcs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, part := range strings.Split(s, ",") {
		lo, hi, rng := strings.Cut(part, "-")
		a, err := parseHost(lo)
		if err != nil {
			return nil, fmt.Errorf("-src: %w", err)
		}
		if len(out) > 0 && a.Is4() != out[0].Is4() {
			return nil, fmt.Errorf("-src: %s and %s are of different families: one run is IPv4 or IPv6", out[0], a)
		}
		b := a
		if rng {
			if b, err = parseHost(hi); err != nil || b.Is4() != a.Is4() || b.Less(a) {
				return nil, fmt.Errorf("-src: %q is not an %s address at or above %s", hi, family(a), a)
			}
		}
		for x := a; !b.Less(x); x = x.Next() {
			out = append(out, x)
			if len(out) > 64 {
				return nil, fmt.Errorf("-src: more than 64 addresses")
			}
		}
	}
	return out, nil
}

// parseHost reads one unicast IPv4 or IPv6 address: no zone, no IPv4
// address in IPv6 clothing (::ffff:a.b.c.d), nothing a host cannot own.
func parseHost(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.Is4In6() {
		return netip.Addr{}, fmt.Errorf("%q is not an IPv4 or IPv6 address", s)
	}
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, fmt.Errorf("%s is not a unicast address", a)
	}
	return a, nil
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// result is what a run reports.
type result = report.Result

// txBatch lends the engine UMEM buffers and submits what it built, once per
// pass.
type txBatch struct {
	q    nic.Queue
	bufs [][]byte
	lent int
	used int
	out  [][]byte
}

func (t *txBatch) Buf() []byte {
	if t.used == t.lent {
		t.flush()
		t.lent = t.q.TxReserve(t.bufs[:cap(t.bufs)])
		if t.lent == 0 {
			return nil
		}
	}
	b := t.bufs[t.used]
	t.used++
	return b[:cap(b)]
}

func (t *txBatch) Send(frame []byte) { t.out = append(t.out, frame) }

func (t *txBatch) flush() {
	if len(t.out) > 0 {
		t.q.TxSubmit(t.out)
		t.out = t.out[:0]
	}
	if t.used < t.lent {
		t.q.TxRelease(t.bufs[t.used:t.lent])
	}
	t.used, t.lent = 0, 0
}

func run(o options) (*result, error) {
	if o.ifname == "" || o.srcs == "" || o.server == "" {
		return nil, fmt.Errorf("-if, -src and -server are required")
	}
	srcs, err := parseSrcs(o.srcs)
	if err != nil {
		return nil, err
	}
	srv, err := netip.ParseAddrPort(o.server)
	if err == nil {
		_, err = parseHost(srv.Addr().String())
	}
	if err != nil || srv.Port() == 0 {
		return nil, fmt.Errorf("-server: want an address:port (a.b.c.d:port or [IPv6]:port), got %q", o.server)
	}
	if srv.Addr().Is4() != srcs[0].Is4() {
		return nil, fmt.Errorf("-src is %s and -server %s: one run is one family", family(srcs[0]), family(srv.Addr()))
	}
	if o.portLo < 1 || o.portHi > 65535 || o.portLo > o.portHi {
		return nil, fmt.Errorf("-port-lo/-port-hi: want 1 <= lo <= hi <= 65535, got %d..%d", o.portLo, o.portHi)
	}
	if o.rate < 0 || math.IsNaN(o.rate) || math.IsInf(o.rate, 0) {
		return nil, fmt.Errorf("-rate: want a rate per second >= 0, got %v", o.rate)
	}
	slots := (o.portHi - o.portLo + 1) * len(srcs)
	if o.conns < 1 || o.conns > slots {
		return nil, fmt.Errorf("-c: want 1..%d (source ports × addresses), got %d", slots, o.conns)
	}
	host := o.host
	if host == "" {
		host = srv.String()
	}
	req := "GET " + o.path + " HTTP/1.1\r\nHost: " + host + "\r\n"
	if o.short {
		req += "Connection: close\r\n"
	}
	req += "\r\n"
	if len(req) > 536 {
		return nil, fmt.Errorf("request of %d bytes: it must fit in one segment of 536 bytes", len(req))
	}
	var port *nic.Port
	var q *nic.XSKQueue
	err = netns.Do(o.ns, func() error {
		var err error
		port, err = nic.OpenPort(nic.PortConfig{Ifname: o.ifname, XDPMode: nic.XDPMode(o.xdpMode),
			PassToKernel: true, Addrs: srcs, MaxQueues: 1})
		if err != nil {
			return err
		}
		// One goroutine drives the queue and has nothing else to run:
		// its waits and kicks need not give up its thread's turn.
		q, err = port.OpenQueue(nic.QueueConfig{Queue: 0, NoHandoff: true})
		if err != nil {
			port.Close()
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", o.ifname, err)
	}
	defer port.Close()
	defer q.Close()

	var mac [6]byte
	copy(mac[:], net.HardwareAddr(q.HardwareAddr()))
	mss := q.MTU() - header.IPv4MinimumSize - header.TCPMinimumSize
	if srv.Addr().Is6() {
		mss = q.MTU() - header.IPv6MinimumSize - header.TCPMinimumSize
	}
	cfg := Config{
		MAC: mac, Srcs: srcs, PortLo: uint16(o.portLo), PortHi: uint16(o.portHi),
		Server: srv.Addr(), SrvPort: srv.Port(), Conns: o.conns, Short: o.short,
		PerConn: o.perConn, Request: []byte(req), RTO: int64(o.rto), Retries: 6,
		Timeout: int64(o.timeout), RcvWindow: 0xffff, MSS: uint16(mss), Rate: o.rate,
	}
	cfg.PortStart = uint16(o.portLo + rand.IntN(o.portHi-o.portLo+1))
	tx := &txBatch{q: q, bufs: make([][]byte, 64), out: make([][]byte, 0, 64)}
	var mono unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono); err != nil {
		return nil, fmt.Errorf("read the monotonic clock: %w", err)
	}
	e := NewEngine(cfg, tx, uint32(mono.Nano()>>12))

	// The loop keeps to one OS thread, so that its CPU time
	// (RUSAGE_THREAD) is the generator's own, whatever else the process
	// runs. The thread is unlocked on return: a goroutine that ends locked
	// takes its thread down with it, and a child started from that thread
	// with Pdeathsig (as the rig's servers are) is then killed.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if o.rate > 0 {
		// An open loop wakes for its schedule: the default timer slack
		// (50 µs) would make every request that much late.
		unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
		defer unix.Prctl(unix.PR_SET_TIMERSLACK, 0, 0, 0, 0)
	}
	frames := make([][]byte, 64)
	start := time.Now()
	var ru0, ru1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &ru0)
	stopAt := int64(o.dur)
	drainEnd := int64(-1)
	for {
		now := int64(time.Since(start))
		n, err := q.Rx(frames)
		if err != nil {
			return nil, fmt.Errorf("receive on %s: %w", o.ifname, err)
		}
		for i := 0; i < n; i++ {
			e.Input(frames[i], now)
		}
		e.Poll(now)
		tx.flush()
		if now >= stopAt && drainEnd < 0 {
			e.Stop()
			drainEnd = now + int64(o.timeout)
		}
		if drainEnd >= 0 && (e.Active() == 0 || now >= drainEnd) {
			e.Drain()
			tx.flush()
			// The last ACKs and resets must leave before the socket
			// closes, or the server keeps those connections half open.
			for t0 := time.Now(); q.Stats().UMEMTxKernel > 0 && time.Since(t0) < 100*time.Millisecond; {
				q.Wait(time.Millisecond)
			}
			break
		}
		if n == 0 && !o.busy {
			wait := 500 * time.Microsecond
			if due := e.NextDue(); due >= 0 {
				wait = min(wait, time.Duration(due-int64(time.Since(start))))
			}
			if wait > 0 {
				q.Wait(wait)
			}
		}
	}
	wall := time.Since(start)
	unix.Getrusage(unix.RUSAGE_THREAD, &ru1)
	cpu := time.Duration(ru1.Utime.Nano() - ru0.Utime.Nano() + ru1.Stime.Nano() - ru0.Stime.Nano())
	if !e.haveMAC {
		what := "ARP reply"
		if srv.Addr().Is6() {
			what = "neighbor advertisement"
		}
		return nil, fmt.Errorf("no %s from %s on %s", what, srv.Addr(), o.ifname)
	}
	secs := float64(e.lastOK) / 1e9
	if secs <= 0 {
		secs = float64(o.dur) / 1e9
	}
	r := &result{Mode: "keep-alive", Conns: o.conns, Seconds: secs, RateUnit: "requests/s",
		XDPMode: string(port.Mode()), Counts: e.Counts, OfferedRate: o.rate}
	units := float64(r.Done())
	if o.short {
		r.Mode, r.RateUnit = "short", "connections/s"
	}
	r.Rate = units / secs
	us := func(q float64) float64 { return float64(e.Hist.Quantile(q)) / 1e3 }
	r.P50us, r.P90us, r.P99us, r.P999us = us(0.5), us(0.9), us(0.99), us(0.999)
	r.CPUBusyPct = 100 * float64(cpu) / float64(wall)
	if units > 0 {
		r.CPUusPer = float64(cpu) / 1e3 / units
	}
	return r, nil
}
