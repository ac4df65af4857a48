package stack_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/xstack/xstack/internal/xstest"
	"github.com/xstack/xstack/nic/nictest"
	"github.com/xstack/xstack/stack"
	"github.com/xstack/xstack/stack/stacktest"
)

type pair struct {
	a, b   *stack.Stack
	qa, qb *nictest.Queue
}

func newPair(t *testing.T) *pair {
	t.Helper()
	return newPairConfig(t, stack.Config{})
}

// newPairConfig is newPair with b's stack made from cb, whose name and
// addresses it sets.
func newPairConfig(t *testing.T, cb stack.Config) *pair {
	t.Helper()
	cb.Name, cb.Addr4, cb.Addr6 = "b", netip.MustParsePrefix("198.18.0.2/16"), netip.MustParsePrefix("2001:2::2/64")
	p := stacktest.NewPairWith(t, stacktest.Options{
		A: stack.Config{Name: "a", Addr4: netip.MustParsePrefix("198.18.0.1/16"), Addr6: netip.MustParsePrefix("2001:2::1/64")},
		B: cb,
	})
	return &pair{p.A, p.B, p.QA, p.QB}
}

// listenTCP listens on a at full until the test ends.
func listenTCP(t *testing.T, p *pair, full tcpip.FullAddress, proto tcpip.NetworkProtocolNumber) *gonet.TCPListener {
	t.Helper()
	ln, err := gonet.ListenTCP(p.a.Gvisor(), full, proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// tcpConns connects b to a listener of a on addr:port and returns the
// connection's two ends, b's and a's. The listener and both ends are
// closed when the test ends.
func tcpConns(t *testing.T, p *pair, proto tcpip.NetworkProtocolNumber, addr string, port uint16) (*gonet.TCPConn, net.Conn) {
	t.Helper()
	full := tcpip.FullAddress{NIC: stack.NICID, Addr: tcpip.AddrFromSlice(netip.MustParseAddr(addr).AsSlice()), Port: port}
	ln := listenTCP(t, p, full, proto)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, p.b.Gvisor(), full, proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	sc, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { sc.Close() })
	return c, sc
}

func TestTCPOverInMemoryNIC(t *testing.T) {
	p := newPair(t)
	for _, tc := range []struct {
		name  string
		proto tcpip.NetworkProtocolNumber
		addr  string
	}{
		{"ipv4", ipv4.ProtocolNumber, "198.18.0.1"},
		{"ipv6", ipv6.ProtocolNumber, "2001:2::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, sc := tcpConns(t, p, tc.proto, tc.addr, 7)
			go func() { io.Copy(sc, sc); sc.Close() }()
			data := bytes.Repeat([]byte("xstack!"), 150000) // ~1 MiB
			go func() { c.Write(data); c.CloseWrite() }()
			h := sha256.New()
			n, err := io.Copy(h, c)
			if err != nil || n != int64(len(data)) {
				t.Fatalf("echo returned %d bytes, err %v; want %d", n, err, len(data))
			}
			if got, want := h.Sum(nil), sha256.Sum256(data); !bytes.Equal(got, want[:]) {
				t.Fatal("echoed data differs")
			}
		})
	}
	if ls := p.a.LinkStats(); ls.RxFrames == 0 || ls.TxFrames == 0 {
		t.Errorf("link stats not counting: %+v", ls)
	}
}

func TestMalformedFramesCounted(t *testing.T) {
	p := newPair(t)
	before := p.a.LinkStats()
	p.qb.Tx([][]byte{make([]byte, 5)}) // shorter than an Ethernet header
	other := make([]byte, 60)          // unicast to another MAC
	copy(other, []byte{0x02, 0, 0, 0, 0, 9})
	p.qb.Tx([][]byte{other})
	xstest.WaitFor(t, 5*time.Second, "malformed frames counted", func() error {
		if s := p.a.LinkStats(); s.RxMalformed <= before.RxMalformed || s.RxNotForUs <= before.RxNotForUs {
			return fmt.Errorf("link stats %+v", s)
		}
		return nil
	})
}

func TestSysctls(t *testing.T) {
	p := newPair(t)
	good := [][2]string{
		{"net.inet.tcp.sack", "0"}, {"net.inet.tcp.cc", "reno"}, {"net.inet.tcp.sendspace", "65536"},
		{"net.inet.tcp.recvspace", "131072"}, {"net.inet.tcp.delayed_ack", "0"}, {"net.inet.tcp.nodelay", "1"},
		{"net.inet.tcp.msl", "1000"}, {"net.inet.tcp.keepidle", "10"}, {"net.inet.tcp.syncookies", "2"},
		{"net.inet.tcp.moderate_rcvbuf", "1"}, {"net.inet.tcp.tw_reuse", "1"}, {"net.inet.ip.ttl", "32"},
		{"net.inet6.ip6.hlim", "33"}, {"net.inet.ip.forwarding", "0"}, {"net.inet.tcp.timestamps", "1"},
	}
	for _, kv := range good {
		if err := p.a.SetSysctl(kv[0], kv[1]); err != nil {
			t.Errorf("SetSysctl(%s, %s): %v", kv[0], kv[1], err)
		}
	}
	bad := [][2]string{{"net.inet.tcp.syncookies", "0"}, {"net.inet.tcp.timestamps", "0"}, {"net.inet.tcp.cc", "bbr9"}, {"no.such", "1"}}
	for _, kv := range bad {
		if err := p.a.SetSysctl(kv[0], kv[1]); err == nil {
			t.Errorf("SetSysctl(%s, %s) succeeded, want an error", kv[0], kv[1])
		}
	}
	if d := p.a.SocketDefaults(); !d.NoDelay || d.KeepIdle != 10 {
		t.Errorf("socket defaults %+v", d)
	}
}

func TestCounters(t *testing.T) {
	p := newPair(t)
	cs := p.a.Counters()
	seen := map[string]bool{}
	for _, c := range cs {
		if seen[c.Name] {
			t.Errorf("counter %s twice", c.Name)
		}
		seen[c.Name] = true
	}
	for _, want := range []string{"link.rx_malformed", "tcp.checksum_errors", "ip.malformed_packets_received", "tcp.invalid_segments_received"} {
		if !seen[want] {
			t.Errorf("no counter %s among %d", want, len(cs))
		}
	}
}
