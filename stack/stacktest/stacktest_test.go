package stacktest_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/xstack/xstack/internal/xstest"
	"github.com/xstack/xstack/stack"
	"github.com/xstack/xstack/stack/stacktest"
)

// udpEndpoint opens a UDP endpoint on st bound to addr:port.
func udpEndpoint(t *testing.T, st *stack.Stack, addr tcpip.Address, port uint16) tcpip.Endpoint {
	t.Helper()
	ep, err := st.NewEndpoint(udp.ProtocolNumber, header.IPv4ProtocolNumber, new(waiter.Queue))
	if err != nil {
		t.Fatalf("endpoint: %s", err)
	}
	t.Cleanup(ep.Close)
	if err := ep.Bind(tcpip.FullAddress{Addr: addr, Port: port}); err != nil {
		t.Fatalf("bind: %s", err)
	}
	return ep
}

// TestManualPass sends a datagram from A to B on a Manual pair: it arrives
// only as the test runs passes (ARP first, then the datagram), and Pass
// reports work while frames move and none once they have.
func TestManualPass(t *testing.T) {
	p := stacktest.NewPairWith(t, stacktest.Options{Manual: true})
	a4, b4 := tcpip.AddrFrom4(stacktest.AddrA4), tcpip.AddrFrom4(stacktest.AddrB4)
	src := udpEndpoint(t, p.A, a4, 1000)
	dst := udpEndpoint(t, p.B, b4, 2000)

	msg := []byte("over the in-memory link")
	var r bytes.Reader
	r.Reset(msg)
	to := tcpip.FullAddress{Addr: b4, Port: 2000}
	if _, err := src.Write(&r, tcpip.WriteOptions{To: &to}); err != nil {
		t.Fatalf("write: %s", err)
	}
	// gVisor sends what waited for ARP from a timer of its own, so the
	// passes go on for a while, not a fixed number of times.
	var got bytes.Buffer
	passes := 0
	for deadline := time.Now().Add(5 * time.Second); got.Len() == 0 && time.Now().Before(deadline); passes++ {
		p.Pass()
		if _, err := dst.Read(&got, tcpip.ReadOptions{}); err != nil {
			if _, again := err.(*tcpip.ErrWouldBlock); !again {
				t.Fatalf("read: %s", err)
			}
		}
	}
	if !bytes.Equal(got.Bytes(), msg) {
		t.Fatalf("after %d passes B read %q, want %q", passes, got.Bytes(), msg)
	}
	if passes < 2 {
		t.Errorf("datagram arrived after %d pass; the first must carry ARP", passes)
	}
	// The exchange is over: passes run dry.
	idle := false
	for range 10 {
		if idle = !p.Pass(); idle {
			break
		}
	}
	if !idle {
		t.Error("passes still report work after the exchange")
	}
	if s := p.A.LinkStats(); s.TxFrames == 0 {
		t.Errorf("A's link endpoint sent no frames: %+v", s)
	}
}

// TestNewStack checks the single stack: a frame it sends is captured on
// its queue, one injected into the queue reaches it.
func TestNewStack(t *testing.T) {
	st, q := stacktest.NewStack(t, stack.Config{})
	// A datagram to a neighbour the stack does not know: the stack asks
	// for it with an ARP request, which the queue keeps.
	ep := udpEndpoint(t, st, tcpip.AddrFrom4(stacktest.AddrA4), 1000)
	var r bytes.Reader
	r.Reset([]byte("x"))
	to := tcpip.FullAddress{Addr: tcpip.AddrFrom4(stacktest.AddrB4), Port: 9}
	if _, err := ep.Write(&r, tcpip.WriteOptions{To: &to}); err != nil {
		t.Fatalf("write: %s", err)
	}
	// gVisor sends the request from a timer of its own.
	var sent [][]byte
	xstest.Until(5*time.Second, func() error {
		st.Flush()
		if sent = q.Sent(); len(sent) == 0 {
			return errors.New("nothing sent")
		}
		return nil
	})
	if len(sent) == 0 || header.Ethernet(sent[0]).Type() != header.ARPProtocolNumber {
		t.Fatalf("sent %d frames, want an ARP request first", len(sent))
	}
	// Frames injected on the queue are what the stack receives: this one,
	// for another MAC address, it counts and drops.
	if !q.Inject(make([]byte, 60)) {
		t.Fatal("inject refused")
	}
	frames := make([][]byte, 4)
	n, err := q.Rx(frames)
	if err != nil || n != 1 {
		t.Fatalf("Rx = %d, %v", n, err)
	}
	st.Deliver(frames[:n])
	if s := st.LinkStats(); s.RxNotForUs != 1 {
		t.Fatalf("the injected frame was not counted as for another MAC: %+v", s)
	}
}
