package main

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// rewriteTCPChecksum sets the TCP checksum field of an IPv4 frame built by
// fakeServer: to the pseudo-header sum as a checksum-offloading sender
// leaves it (partial), or to a wrong value.
func rewriteTCPChecksum(f []byte, partial bool) {
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	t := header.TCP(ip[ip.HeaderLength():ip.TotalLength()])
	if !partial {
		t.SetChecksum(t.Checksum() ^ 0x0100)
		return
	}
	t.SetChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber,
		tcpip.AddrFrom4(testSrv), tcpip.AddrFrom4(testSrc), uint16(len(t))))
}

// TestPartialChecksum: a frame whose TCP checksum field holds the
// pseudo-header sum (a veth peer whose sender offloaded the checksum) is
// taken and counted apart; any other wrong checksum is counted and the
// frame dropped.
func TestPartialChecksum(t *testing.T) {
	for _, partial := range []bool{true, false} {
		e, tx := testEngine(false)
		e.Poll(0)
		if len(tx.out) == 0 {
			t.Fatal("the engine sent no SYN")
		}
		syn := tx.out[0]
		s := &fakeServer{iss: 7000}
		dport := header.TCP(syn[header.EthernetMinimumSize+header.IPv4MinimumSize:]).SourcePort()
		seq := header.TCP(syn[header.EthernetMinimumSize+header.IPv4MinimumSize:]).SequenceNumber()
		f := s.frame(dport, s.iss, seq+1, header.TCPFlagSyn|header.TCPFlagAck, nil)
		rewriteTCPChecksum(f, partial)
		before := e.Counts
		tx.out = tx.out[:0]
		e.Input(f, 1000)
		e.Poll(2000)
		c := e.Counts
		if answered := len(tx.out) > 0; answered != partial {
			t.Errorf("partial=%v: the engine answered the SYN-ACK: %v (sent %d frames)", partial, answered, len(tx.out))
		}
		if partial {
			if c.RxPartialChecksum != before.RxPartialChecksum+1 || c.RxBadChecksum != before.RxBadChecksum {
				t.Errorf("partial: want it taken and counted as partial, got %+v", c)
			}
		} else if c.RxBadChecksum != before.RxBadChecksum+1 || c.RxPartialChecksum != before.RxPartialChecksum {
			t.Errorf("corrupt: want it counted as a bad checksum, got %+v", c)
		}
	}
}
