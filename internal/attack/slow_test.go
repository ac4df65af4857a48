package attack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
	"github.com/xstack/xstack/internal/xstest"
)

// slowMinRatio is the share of its request rate that a normal client must
// keep while slow clients hold the server's connections.
const slowMinRatio = 0.80

// TestSlowloris holds 2,000 connections to helloworld that send a request
// head one byte a second and never finish it, reconnecting when the
// server drops them, as the slowloris tool does. helloworld's header
// timeout must close each within the configured time, and a normal
// keep-alive client must keep its request rate.
func TestSlowloris(t *testing.T) {
	const headerTimeout = 4 * time.Second
	_, p, addr, d := startHelloworld(t, nil, "-header-timeout", headerTimeout.String())
	pid := p.Cmd.Process.Pid
	attackers, windows := 2000, 6
	if heavy() {
		attackers, windows = 5000, 20
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var m rateMeter
	waitKA := keepAliveLoad(ctx, t, d, addr, 4, &m)
	time.Sleep(time.Second)
	ticks0, t0 := cpuTicks(t, pid), time.Now()
	base := m.windows(windows, time.Second)
	cpuBase := cpuShare(ticks0, cpuTicks(t, pid), time.Since(t0))
	rssBefore := rssKB(t, pid)

	// The attackers. Each one's connections and their lifetimes (connect
	// to the server's FIN) are recorded.
	actx, acancel := context.WithCancel(ctx)
	defer acancel()
	var (
		mu        sync.Mutex
		lifetimes []time.Duration
		dialErrs  atomic.Int64
		open      atomic.Int64
		wg        sync.WaitGroup
	)
	for i := 0; i < attackers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// Spread the starts over a second, as the byte clock does.
			time.Sleep(time.Duration(i) * time.Second / time.Duration(attackers))
			for actx.Err() == nil {
				c, err := d.dial(addr, 10*time.Second)
				if err != nil {
					dialErrs.Add(1)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				open.Add(1)
				start := time.Now()
				closed := slowloris(actx, c)
				c.Close()
				open.Add(-1)
				if closed {
					mu.Lock()
					lifetimes = append(lifetimes, time.Since(start))
					mu.Unlock()
				}
			}
		}(i)
	}
	time.Sleep(2 * time.Second)
	openMid := open.Load()
	ticks0, t0 = cpuTicks(t, pid), time.Now()
	under := m.windows(windows, time.Second)
	cpuUnder := cpuShare(ticks0, cpuTicks(t, pid), time.Since(t0))
	rssDuring := rssKB(t, pid)
	acancel()
	wg.Wait()
	// The reference is the rate before and after the attack, so that a
	// drift of the shared machine's load does not count against the stack.
	after := m.windows(windows/2, time.Second)
	cancel()
	waitKA()

	ratio := median(under) / median(append(base, after...))
	mu.Lock()
	lt := slices.Clone(lifetimes)
	mu.Unlock()
	slices.Sort(lt)
	t.Logf("slowloris: %d attackers (%d connections open when measured), %d connections closed by the server, %d dial errors",
		attackers, openMid, len(lt), dialErrs.Load())
	if len(lt) > 0 {
		t.Logf("time from connect to the server's close: min %v, median %v, max %v (header timeout %v)",
			lt[0].Round(time.Millisecond), lt[len(lt)/2].Round(time.Millisecond), lt[len(lt)-1].Round(time.Millisecond), headerTimeout)
	}
	t.Logf("keep-alive req/s: before %v, during %v (median %.0f), after %v; ratio to before and after %.2f",
		round(base), round(under), median(under), round(after), ratio)
	t.Logf("RSS before %d KiB, during %d KiB; helloworld's CPU %.0f%% of a core before, %.0f%% during", rssBefore, rssDuring, 100*cpuBase, 100*cpuUnder)

	if len(lt) < attackers {
		t.Errorf("the server closed %d slowloris connections; want at least one per attacker (%d)", len(lt), attackers)
	}
	// The clients' clocks start when their dial returns, which on a busy
	// machine can be late: hence the slack below the timeout.
	if len(lt) > 0 && (lt[len(lt)/2] < headerTimeout-2*time.Second || lt[len(lt)/2] > headerTimeout+2*time.Second || lt[len(lt)-1] > headerTimeout+6*time.Second) {
		t.Errorf("slowloris connections lived %v (median) to %v (max); want about the header timeout %v",
			lt[len(lt)/2], lt[len(lt)-1], headerTimeout)
	}
	checkRatio(t, "keep-alive request rate with slowloris", ratio, slowMinRatio)
	if n := m.errors.Load(); n != 0 {
		t.Errorf("%d keep-alive requests failed", n)
	}
	// helloworld counts what its header timeout closed.
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	match := regexp.MustCompile(`\((\d+) connections timed out\)`).FindStringSubmatch(p.Output())
	if match == nil {
		t.Fatalf("no time-out count in helloworld's output:\n%s", p.Output())
	}
	if n, _ := strconv.Atoi(match[1]); n < len(lt) {
		t.Errorf("helloworld says %d connections timed out; the clients saw %d closes", n, len(lt))
	}
}

// slowloris sends a request head that never ends, one byte a second, until
// ctx ends (false) or the server closes the connection (true).
func slowloris(ctx context.Context, c net.Conn) bool {
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: xstack\r\nX-Slow: "); err != nil {
		return true
	}
	b := make([]byte, 1)
	for ctx.Err() == nil {
		// The read doubles as the one-second clock.
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, err := c.Read(b)
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			return true // EOF, a reset, or a (400) response: the server ended it
		}
		if _, err := c.Write([]byte{'a'}); err != nil {
			return true
		}
	}
	return false
}

// TestStalledReaders opens 2,000 connections to echo's chargen service
// that never read, so that every one of them fills the stack's send
// buffer, while a normal client measures its echo rate. The buffers must
// stay within net.inet.tcp.sendspace, the stack's memory must grow by no
// more than that per connection, and the stalled connections must be
// aborted by net.inet.tcp.user_timeout. Idle connections whose peer has
// vanished must be aborted by the keepalive sysctls.
func TestStalledReaders(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	bin := rigtest.Build(t, "./examples/echo")
	const (
		sendspace   = 32768
		userTimeout = 12 * time.Second
		keepIdle    = 2
		keepIntvl   = 1
		keepCnt     = 2
	)
	conf := rigtest.Config(t, r, "[sysctl]",
		fmt.Sprintf("net.inet.tcp.sendspace=%d", sendspace),
		fmt.Sprintf("net.inet.tcp.user_timeout=%d", userTimeout/time.Millisecond),
		"net.inet.tcp.always_keepalive=1",
		fmt.Sprintf("net.inet.tcp.keepidle=%d", keepIdle),
		fmt.Sprintf("net.inet.tcp.keepintvl=%d", keepIntvl),
		fmt.Sprintf("net.inet.tcp.keepcnt=%d", keepCnt))
	p := rigtest.Start(t, "echoing", bin, "-c", conf)
	pid := p.Cmd.Process.Pid
	d := dialer{ns: r.PeerNS}
	stalled, idle, windows := 2000, 200, 5
	if heavy() {
		stalled, windows = 5000, 10
	}

	// The normal client: echo round trips of 64 bytes on 4 connections.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var m rateMeter
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		c, err := d.dial(netip.AddrPortFrom(r.StackAddr4, 7), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			msg, got := make([]byte, 64), make([]byte, 64)
			for ctx.Err() == nil {
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(msg); err != nil {
					m.errors.Add(1)
					return
				}
				if _, err := io.ReadFull(c, got); err != nil {
					if ctx.Err() == nil {
						m.errors.Add(1)
						t.Logf("echo: %v", err)
					}
					return
				}
				m.done.Add(1)
			}
		}()
	}
	time.Sleep(time.Second)
	base := m.windows(windows, time.Second)
	rssBefore := rssKB(t, pid)
	cBefore := p.Counters(t)

	// The stalled readers: a small receive buffer on the peer, so that
	// the peer's window closes soon and the stack's send buffer fills.
	sd := dialer{ns: r.PeerNS, rcvbuf: 4096}
	sd.dialN(t, netip.AddrPortFrom(r.StackAddr4, 19), stalled, "stalled reader")
	stallStart := time.Now()
	// Wait until the send buffers are full: the stack's memory stops
	// growing. (gVisor does not report a TCP socket's send queue, so
	// netstat's Send-Q cannot tell.)
	// Growth is judged over a second.
	rssStalled, sampled := rssKB(t, pid), time.Now()
	xstest.Until(10*time.Second, func() error {
		if time.Since(sampled) < time.Second {
			return errors.New("a second has not passed")
		}
		r := rssKB(t, pid)
		sampled = time.Now()
		if r < rssStalled+rssStalled/50 {
			rssStalled = max(r, rssStalled)
			return nil
		}
		rssStalled = r
		return errors.New("still growing")
	})
	fillTime := time.Since(stallStart)
	under := m.windows(windows, time.Second)
	cancel()
	wg.Wait()
	// Nothing may have been aborted before the user timeout.
	early := diff(cBefore, p.Counters(t), "tcp.established_timedout")
	earlyAt := time.Since(stallStart)
	ratio := median(under) / median(base)
	perConn := float64(rssStalled-rssBefore) * 1024 / float64(stalled)
	t.Logf("%d stalled readers; the stack's memory stopped growing %v after the last was opened (sendspace %d)",
		stalled, fillTime.Round(time.Millisecond), sendspace)
	t.Logf("RSS before %d KiB, with the stalled readers %d KiB: %.0f bytes per stalled connection", rssBefore, rssStalled, perConn)
	t.Logf("echo round trips/s: before %v (median %.0f), during %v (median %.0f), ratio %.2f",
		round(base), median(base), round(under), median(under), ratio)

	if perConn < sendspace/2 {
		t.Errorf("RSS grew by only %.0f bytes per stalled connection: the send buffers (%d) did not fill, the test measured nothing", perConn, sendspace)
	}
	if early != 0 && earlyAt < userTimeout {
		t.Errorf("%d connections timed out %v after they stalled, before the user timeout %v", early, earlyAt, userTimeout)
	}
	// Payload up to sendspace, gVisor's endpoint and segment overhead,
	// and the garbage collector's slack.
	if limit := float64(2*sendspace + 16<<10); perConn > limit {
		t.Errorf("RSS grew by %.0f bytes per stalled connection; want ≤ %.0f (2 × sendspace + 16 KiB)", perConn, limit)
	}
	checkRatio(t, "echo rate with stalled readers", ratio, slowMinRatio)
	if n := m.errors.Load(); n != 0 {
		t.Errorf("%d echo round trips failed", n)
	}

	// The idle connections: their peers answer keepalive probes, so they
	// stay, until the peer vanishes.
	d.dialN(t, netip.AddrPortFrom(r.StackAddr4, 9), idle, "idle connection")

	// Keepalive with a live peer: the idle connections have been idle
	// longer than keepidle and their peer acknowledged the probes.
	time.Sleep(time.Duration(keepIdle+keepCnt*keepIntvl+1) * time.Second)
	if n := countState(sockets(t, p), "ESTABLISHED", 9); n != idle {
		t.Errorf("%d of %d idle connections with a live peer are established; keepalive must not end them", n, idle)
	}

	// The peer vanishes. The idle connections' keepalive probes go
	// unanswered, and so do the stalled connections' zero-window probes
	// and retransmissions: the keepalive sysctls end the first, the user
	// timeout the second (a peer that kept answering and reopening its
	// window now and then would make progress and restart the clock, as
	// on Linux).
	if _, err := r.Run(r.PeerNS, "ip", "link", "set", r.PeerIf, "down"); err != nil {
		t.Fatal(err)
	}
	gone := time.Now()
	var left, stalledLeft int
	keepEnd := time.Duration(-1)
	xstest.Until(time.Until(gone.Add(userTimeout+10*time.Second)), func() error {
		socks := sockets(t, p)
		left, stalledLeft = countState(socks, "ESTABLISHED", 9), countState(socks, "ESTABLISHED", 19)
		if left == 0 && keepEnd < 0 {
			keepEnd = time.Since(gone)
		}
		if left != 0 || stalledLeft != 0 {
			return errors.New("connections left")
		}
		return nil
	})
	stallEnd := time.Since(stallStart)
	timedOut := diff(cBefore, p.Counters(t), "tcp.established_timedout")
	t.Logf("peer gone: idle connections aborted after %v (%d left); stalled connections gone %v after the last was opened (%d left); tcp.established_timedout +%d",
		keepEnd.Round(100*time.Millisecond), left, stallEnd.Round(100*time.Millisecond), stalledLeft, timedOut)
	if stalledLeft != 0 {
		t.Errorf("%d stalled connections remain %v after their peer vanished, with net.inet.tcp.user_timeout=%v", stalledLeft, time.Since(gone), userTimeout)
	}
	if stallEnd < userTimeout-2*time.Second {
		t.Errorf("stalled connections were gone after %v, before the user timeout %v", stallEnd, userTimeout)
	}
	if timedOut < uint64(stalled+idle)*95/100 {
		t.Errorf("%d connections timed out of %d stalled and %d idle: the rest vanished otherwise", timedOut, stalled, idle)
	}
	if left != 0 {
		t.Errorf("%d idle connections remain after their peer vanished", left)
	}
	// They had been idle for more than keepidle already: the probes that
	// go unanswered end them within keepidle + keepcnt × keepintvl.
	if max := time.Duration(keepIdle+keepCnt*keepIntvl+2) * time.Second; keepEnd < 0 || keepEnd > max {
		t.Errorf("idle connections took %v to abort; want ≤ %v", keepEnd, max)
	}
}
