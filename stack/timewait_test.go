package stack_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/nic/nictest"
	"github.com/xstack/xstack/stack"
	"github.com/xstack/xstack/stack/stacktest"
)

// TestTimeWaitTable closes a connection from the stack's side, as a server
// of short connections does, and holds the link endpoint's TIME-WAIT to
// what RFC 9293 asks of the state: the connection enters it with the
// stack's final ACK; a retransmission of the peer's FIN is acknowledged
// with the final ACK's numbers (and a timestamp that carries on from the
// final ACK's), before and after gVisor has let its own endpoint go, and
// nothing is reset; a duplicate ACK is dropped; a new SYN past RCV.NXT
// opens a new connection; and once 2*MSL is over, the peer's FIN meets the
// reset of a stack that has no such connection.
func TestTimeWaitTable(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, ts := range []bool{false, true} {
			t.Run(fmt.Sprintf("v6=%v,ts=%v", v6, ts), func(t *testing.T) { testTimeWaitTable(t, v6, ts) })
		}
	}
}

func testTimeWaitTable(t *testing.T, v6, ts bool) {
	const msl = 300 * time.Millisecond
	p, ep := wireConnOn(t, nictest.New(stacktest.MTU), v6, func(st *stack.Stack, _ tcpip.Endpoint) {
		if err := st.SetSysctl("net.inet.tcp.msl", fmt.Sprint(msl.Milliseconds())); err != nil {
			t.Fatal(err)
		}
	}, func(p *wirePeer) { p.ts = ts })
	st := p.st
	iss := p.rcvNxt
	var frames []header.TCP // what the stack sent since the last look
	fin := false
	p.onFrame = func(f []byte) {
		if tcp := checkFrame(t, f, v6); tcp != nil {
			frames = append(frames, append(header.TCP(nil), tcp...))
			fin = fin || tcp.Flags().Contains(header.TCPFlagFin)
		}
	}
	take := func() []header.TCP { f := frames; frames = nil; return f }

	// The stack answers and closes: the response and its FIN.
	if _, err := ep.Write(bytes.NewReader([]byte("bye")), tcpip.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	ep.Close()
	finEnd := iss + 3 + 1
	p.until("the stack's FIN", func() bool { return fin })
	take()
	// The peer acknowledges it with its own FIN; the stack's final ACK
	// puts the connection in TIME-WAIT.
	p.send(p.sndNxt, header.TCPFlagFin|header.TCPFlagAck, finEnd, 65535, nil)
	p.sndNxt++
	p.until("TIME-WAIT", func() bool { return st.LinkStats().TimeWaitHeld == 1 })
	if ls := st.LinkStats(); ls.TimeWaitEntered != 1 {
		t.Fatalf("%d connections entered TIME-WAIT, want 1", ls.TimeWaitEntered)
	}
	final := take()
	if len(final) != 1 || final[0].Flags() != header.TCPFlagAck || final[0].AckNumber() != p.sndNxt {
		t.Fatalf("the stack sent %v, want one final ACK of %d", flagsOf(final), p.sndNxt)
	}
	finalTS := header.ParseTCPOptions(final[0].Options())

	// A retransmission of the peer's FIN, while gVisor still holds the
	// connection and after it let it go: the same ACK each time.
	checkAck := func(when string) {
		t.Helper()
		before := st.LinkStats().TimeWaitAcks
		p.send(p.sndNxt-1, header.TCPFlagFin|header.TCPFlagAck, finEnd, 65535, nil)
		p.until("an answer "+when, func() bool { return len(frames) > 0 })
		got := take()
		if len(got) != 1 || got[0].Flags() != header.TCPFlagAck || got[0].SequenceNumber() != finEnd || got[0].AckNumber() != p.sndNxt || got[0].WindowSize() != final[0].WindowSize() {
			t.Fatalf("%s: the stack answered the FIN with %v, want an ACK of %d at %d, window %d", when, flagsOf(got), p.sndNxt, finEnd, final[0].WindowSize())
		}
		if st.LinkStats().TimeWaitAcks != before+1 {
			t.Errorf("%s: the ACK was not the table's", when)
		}
		o := header.ParseTCPOptions(got[0].Options())
		switch {
		case o.TS != ts:
			t.Errorf("%s: timestamps %v on the ACK, %v on the connection", when, o.TS, ts)
		case ts && (int32(o.TSVal-finalTS.TSVal) < 0 || o.TSEcr != p.tsVal):
			t.Errorf("%s: TSval %d after the final ACK's %d, TSecr %d for the FIN's TSval %d", when, o.TSVal, finalTS.TSVal, o.TSEcr, p.tsVal)
		}
	}
	checkAck("at once")
	deadline := time.Now().Add(200 * time.Millisecond) // past the handoff
	p.until("the handoff", func() bool { return time.Now().After(deadline) })
	checkAck("after the handoff")
	// The tools still list it.
	var tw []stack.Socket
	for _, so := range st.Sockets() {
		if so.State == "TIME_WAIT" {
			tw = append(tw, so)
		}
	}
	if len(tw) != 1 || tw[0].Local.Port() != 80 || tw[0].Remote.Port() != p.port || tw[0].Local.Addr().String() != p.remote.String() || (tw[0].Proto == "tcp6") != v6 {
		t.Errorf("sockets in TIME_WAIT: %+v, want the one connection", tw)
	}

	// A duplicate of the peer's ACK of our FIN is dropped.
	p.send(p.sndNxt, header.TCPFlagAck, finEnd, 65535, nil)
	p.pump()
	if got := take(); len(got) != 0 {
		t.Errorf("the stack answered a duplicate ACK with %v", flagsOf(got))
	}

	// The same ports again, with a sequence number past the old
	// connection's: the listener takes it.
	newISS := p.sndNxt + 100000
	p.send(newISS, header.TCPFlagSyn, 0, 65535, nil)
	p.until("the new connection's SYN-ACK", func() bool { return len(frames) > 0 })
	if got := take(); len(got) != 1 || got[0].Flags() != header.TCPFlagSyn|header.TCPFlagAck || got[0].AckNumber() != newISS+1 {
		t.Fatalf("the stack answered the new SYN with %v, want a SYN-ACK of %d", flagsOf(got), newISS+1)
	}
	if ls := st.LinkStats(); ls.TimeWaitHeld != 0 {
		t.Errorf("%d connections held in TIME-WAIT after the new SYN, want 0", ls.TimeWaitHeld)
	}
	// Reset the half-open connection, so that it does not linger.
	p.send(newISS+1, header.TCPFlagRst, 0, 0, nil)
	p.pump()
	take()
}

// TestTimeWaitExpires holds a connection in the link endpoint's TIME-WAIT
// for its 2*MSL and no longer: after it, the peer's FIN is reset, as for
// any connection the stack does not have.
func TestTimeWaitExpires(t *testing.T) {
	const msl = 100 * time.Millisecond
	p, ep := wireConnOn(t, nictest.New(stacktest.MTU), false, func(st *stack.Stack, _ tcpip.Endpoint) {
		if err := st.SetSysctl("net.inet.tcp.msl", fmt.Sprint(msl.Milliseconds())); err != nil {
			t.Fatal(err)
		}
	})
	st := p.st
	var last header.TCP
	p.onFrame = func(f []byte) {
		if tcp := checkFrame(t, f, false); tcp != nil {
			last = append(header.TCP(nil), tcp...)
		}
	}
	finEnd := p.rcvNxt + 1
	ep.Close()
	p.until("the stack's FIN", func() bool { return last != nil && last.Flags().Contains(header.TCPFlagFin) })
	p.send(p.sndNxt, header.TCPFlagFin|header.TCPFlagAck, finEnd, 65535, nil)
	p.sndNxt++
	entered := time.Now()
	p.until("TIME-WAIT", func() bool { return st.LinkStats().TimeWaitHeld == 1 })
	p.until("the end of TIME-WAIT", func() bool { return st.LinkStats().TimeWaitHeld == 0 })
	if held := time.Since(entered); held < 2*msl {
		t.Errorf("TIME-WAIT ended after %v, before 2*MSL = %v", held, 2*msl)
	}
	last = nil
	p.send(p.sndNxt-1, header.TCPFlagFin|header.TCPFlagAck, finEnd, 65535, nil)
	p.until("an answer", func() bool { return last != nil })
	if !last.Flags().Contains(header.TCPFlagRst) {
		t.Errorf("after TIME-WAIT the FIN got %v, want a reset", last.Flags())
	}
}

// TestTimeWaitOff: with net.inet.tcp.tw_max=0 gVisor holds TIME-WAIT itself
// and the link endpoint none.
func TestTimeWaitOff(t *testing.T) {
	p, ep := wireConnOn(t, nictest.New(stacktest.MTU), false, func(st *stack.Stack, _ tcpip.Endpoint) {
		if err := st.SetSysctl("net.inet.tcp.tw_max", "0"); err != nil {
			t.Fatal(err)
		}
	})
	var acks int
	fin := false
	p.onFrame = func(f []byte) {
		if tcp := checkFrame(t, f, false); tcp != nil {
			fin = fin || tcp.Flags().Contains(header.TCPFlagFin)
			if tcp.Flags() == header.TCPFlagAck {
				acks++
			}
		}
	}
	finEnd := p.rcvNxt + 1
	ep.Close()
	p.until("the stack's FIN", func() bool { return fin })
	p.send(p.sndNxt, header.TCPFlagFin|header.TCPFlagAck, finEnd, 65535, nil)
	p.sndNxt++
	p.until("the final ACK", func() bool { return acks == 1 })
	p.send(p.sndNxt-1, header.TCPFlagFin|header.TCPFlagAck, finEnd, 65535, nil)
	p.until("gVisor's ACK of the FIN", func() bool { return acks == 2 })
	if ls := p.st.LinkStats(); ls.TimeWaitEntered != 0 || ls.TimeWaitAcks != 0 {
		t.Errorf("the table took %d connections and sent %d ACKs, with tw_max=0", ls.TimeWaitEntered, ls.TimeWaitAcks)
	}
}

func flagsOf(segs []header.TCP) []string {
	var out []string
	for _, s := range segs {
		out = append(out, fmt.Sprintf("%v seq %d ack %d", s.Flags(), s.SequenceNumber(), s.AckNumber()))
	}
	return out
}
