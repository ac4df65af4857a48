package stack_test

import (
	"bytes"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/xstack/xstack/nic/nictest"
	"github.com/xstack/xstack/stack"
	"github.com/xstack/xstack/stack/stacktest"
)

// TestRACKSysctl loses the whole tail of a write, three segments, on a
// connection that negotiated SACK, and looks at what brings the first
// retransmission: with net.inet.tcp.rack=1 (the default) RACK's tail-loss
// probe, before the retransmission timer; with rack=0 the timer
// (tcp.timeouts), as SACK's recovery (RFC 6675) has nothing else to go by
// when no acknowledgment comes.
func TestRACKSysctl(t *testing.T) {
	for _, rack := range []string{"1", "0"} {
		t.Run("rack="+rack, func(t *testing.T) {
			p, ep := wireConnOn(t, nictest.New(stacktest.MTU), false, func(st *stack.Stack, _ tcpip.Endpoint) {
				for _, kv := range [][2]string{{"net.inet.tcp.sack", "1"}, {"net.inet.tcp.rack", rack}} {
					if err := st.SetSysctl(kv[0], kv[1]); err != nil {
						t.Fatal(err)
					}
				}
				if err := st.SetSysctl("net.inet.tcp.rexmit_min", "20"); err != nil {
					t.Fatal(err)
				}
			}, func(p *wirePeer) { p.sackOK = true })
			timeouts := p.st.Gvisor().Stats().TCP.Timeouts
			before := timeouts.Value()
			var sent uint32 // the end of the data sent so far, past the ISS
			iss := p.rcvNxt
			var rexmitTimeouts uint64
			rexmitted := false
			p.onFrame = func(f []byte) {
				tcp := checkFrame(t, f, false)
				if tcp == nil || len(tcp.Payload()) == 0 || rexmitted {
					return
				}
				off := tcp.SequenceNumber() - iss
				if end := off + uint32(len(tcp.Payload())); end > sent {
					sent = end
					return
				}
				rexmitted, rexmitTimeouts = true, timeouts.Value()-before
			}
			const n = 3 * 1400
			if _, err := ep.Write(bytes.NewReader(make([]byte, n)), tcpip.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
			p.until("a retransmission", func() bool { return rexmitted })
			want := uint64(0)
			if rack == "0" {
				want = 1
			}
			if rexmitTimeouts != want {
				t.Errorf("%d retransmission timeouts before the first retransmission, want %d", rexmitTimeouts, want)
			}
			p.send(p.sndNxt, header.TCPFlagAck, iss+n, 65535, nil)
			p.until("the data acknowledged", func() bool { return p.ack == p.sndNxt && sent == n })
		})
	}
}
