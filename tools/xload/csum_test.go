package main

import (
	"testing"

	"github.com/xstack/xstack/stack/packet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// rewriteTCPChecksum sets the TCP checksum field of a frame built by
// fakeServer: to the pseudo-header sum as a checksum-offloading sender
// leaves it (partial), or to a wrong value.
func rewriteTCPChecksum(f []byte, partial bool) {
	var p packet.Parsed
	packet.Parse(f, &p)
	t := header.TCP(p.L4(f))
	if !partial {
		t.SetChecksum(t.Checksum() ^ 0x0100)
		return
	}
	src, dst := p.Addrs(f)
	t.SetChecksum(header.PseudoHeaderChecksum(header.TCPProtocolNumber, addrOf(src), addrOf(dst), uint16(len(t))))
}

// TestPartialChecksum: a frame whose TCP checksum field holds the
// pseudo-header sum (a veth peer whose sender offloaded the checksum) is
// taken and counted apart; any other wrong checksum is counted and the
// frame dropped. Over IPv6 as over IPv4: the pseudo-header differs.
func TestPartialChecksum(t *testing.T) {
	for _, fam := range families {
		for _, partial := range []bool{true, false} {
			e, tx := familyEngine(false, fam.v6)
			e.Poll(0)
			if len(tx.out) == 0 {
				t.Fatal("the engine sent no SYN")
			}
			var syn packet.Parsed
			packet.Parse(tx.out[0], &syn)
			s := &fakeServer{iss: 7000, v6: fam.v6}
			f := s.frame(syn.SrcPort, s.iss, syn.Seq+1, header.TCPFlagSyn|header.TCPFlagAck, nil)
			rewriteTCPChecksum(f, partial)
			before := e.Counts
			tx.out = tx.out[:0]
			e.Input(f, 1000)
			e.Poll(2000)
			c := e.Counts
			if answered := len(tx.out) > 0; answered != partial {
				t.Errorf("%s partial=%v: the engine answered the SYN-ACK: %v (sent %d frames)", fam.name, partial, answered, len(tx.out))
			}
			if partial {
				if c.RxPartialChecksum != before.RxPartialChecksum+1 || c.RxBadChecksum != before.RxBadChecksum {
					t.Errorf("%s partial: want it taken and counted as partial, got %+v", fam.name, c)
				}
			} else if c.RxBadChecksum != before.RxBadChecksum+1 || c.RxPartialChecksum != before.RxPartialChecksum {
				t.Errorf("%s corrupt: want it counted as a bad checksum, got %+v", fam.name, c)
			}
		}
	}
}
