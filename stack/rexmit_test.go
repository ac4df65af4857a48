package stack_test

import (
	"bytes"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/xstack/xstack/stack"
)

// rto is the connection's retransmission timeout, as TCP_INFO reports it.
func rto(t *testing.T, ep tcpip.Endpoint) time.Duration {
	t.Helper()
	var info tcpip.TCPInfoOption
	if err := ep.GetSockOpt(&info); err != nil {
		t.Fatalf("TCP_INFO: %v", err)
	}
	return info.RTO
}

// TestRexmitBounds: net.inet.tcp.rexmit_min and rexmit_max bound the
// retransmission timeout of the connections made after them. On the
// in-memory link the round trip is about a millisecond, so once the peer
// has acknowledged data the timeout is the least one; with the peer
// acknowledging nothing more, the timeout doubles up to the greatest one
// and stays there.
func TestRexmitBounds(t *testing.T) {
	p, ep := wireConn(t, false, nil)
	if got := sampledRTO(t, p, ep); got < 200*time.Millisecond {
		t.Errorf("RTO with the default rexmit_min: %v, want at least 200ms", got)
	}

	p, ep = wireConn(t, false, func(st *stack.Stack, _ tcpip.Endpoint) {
		for _, kv := range [][2]string{{"net.inet.tcp.rexmit_min", "20"}, {"net.inet.tcp.rexmit_max", "100"}} {
			if err := st.SetSysctl(kv[0], kv[1]); err != nil {
				t.Fatal(err)
			}
		}
	})
	if got := sampledRTO(t, p, ep); got < 20*time.Millisecond || got >= 100*time.Millisecond {
		t.Errorf("RTO with rexmit_min=20: %v, want from 20ms to under 100ms", got)
	}
	write(t, ep)
	p.until("the RTO to reach rexmit_max", func() bool {
		r := rto(t, ep)
		if r > 100*time.Millisecond {
			t.Fatalf("RTO %v past rexmit_max=100", r)
		}
		return r == 100*time.Millisecond
	})
}

// sampledRTO has the application write and the peer acknowledge it, which
// gives the connection its first round-trip sample, and returns the RTO.
func sampledRTO(t *testing.T, p *wirePeer, ep tcpip.Endpoint) time.Duration {
	t.Helper()
	before := p.rcvNxt
	write(t, ep)
	p.until("the data", func() bool { return p.rcvNxt != before })
	p.seen = false
	p.send(p.sndNxt, header.TCPFlagAck, p.rcvNxt, 65535, nil)
	p.until("the acknowledgment to be taken", func() bool {
		return ep.Readiness(waiter.WritableEvents) != 0 && rto(t, ep) != tcp.InitialRTO
	})
	return rto(t, ep)
}

func write(t *testing.T, ep tcpip.Endpoint) {
	t.Helper()
	if _, err := ep.Write(bytes.NewReader(make([]byte, 100)), tcpip.WriteOptions{}); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// TestRexmitBoundsCross: a bound that would cross the other is refused
// with an error that names the other, and changes nothing.
func TestRexmitBoundsCross(t *testing.T) {
	p := newPair(t)
	if err := p.a.SetSysctl("net.inet.tcp.rexmit_max", "1000"); err != nil {
		t.Fatal(err)
	}
	err := p.a.SetSysctl("net.inet.tcp.rexmit_min", "2000")
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("rexmit_max (1000 ms)")) {
		t.Errorf("rexmit_min above rexmit_max: %v", err)
	}
	if err := p.a.SetSysctl("net.inet.tcp.rexmit_min", "500"); err != nil {
		t.Fatal(err)
	}
	err = p.a.SetSysctl("net.inet.tcp.rexmit_max", "100")
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("rexmit_min (500 ms)")) {
		t.Errorf("rexmit_max below rexmit_min: %v", err)
	}
	for name, want := range map[string]string{"net.inet.tcp.rexmit_min": "500", "net.inet.tcp.rexmit_max": "1000"} {
		if got, err := p.a.Sysctl(name); err != nil || got != want {
			t.Errorf("%s = %q, %v; want %s", name, got, err, want)
		}
	}
}
