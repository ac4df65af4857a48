package stack_test

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/xstack/xstack/stack"
	"github.com/xstack/xstack/stack/stacktest"
)

// TestTxChecksumOffload runs TCP and UDP over IPv4 and IPv6 between two
// stacks whose queues offload TX checksums, and between two whose queues
// do not. The receiving endpoints check every checksum (a wrong one is
// dropped and counted in link.rx_bad_checksum), so the data arriving whole
// with no checksum error proves the frames right on the wire; with the
// offload every stack had its queue complete checksums, without it none.
func TestTxChecksumOffload(t *testing.T) {
	for _, offload := range []bool{true, false} {
		t.Run(fmt.Sprintf("offload=%v", offload), func(t *testing.T) {
			sp := stacktest.NewPairWith(t, stacktest.Options{
				A:                   stack.Config{Addr4: netip.MustParsePrefix("198.18.0.1/16"), Addr6: netip.MustParsePrefix("2001:2::1/64")},
				B:                   stack.Config{Addr4: netip.MustParsePrefix("198.18.0.2/16"), Addr6: netip.MustParsePrefix("2001:2::2/64")},
				NoTxChecksumOffload: !offload,
			})
			p := &pair{sp.A, sp.B, sp.QA, sp.QB}
			for _, tc := range []struct {
				name        string
				proto       tcpip.NetworkProtocolNumber
				addr, baddr string
			}{
				{"ipv4", ipv4.ProtocolNumber, "198.18.0.1", "198.18.0.2"},
				{"ipv6", ipv6.ProtocolNumber, "2001:2::1", "2001:2::2"},
			} {
				t.Run(tc.name+"/tcp", func(t *testing.T) {
					c, sc := tcpConns(t, p, tc.proto, tc.addr, 7)
					go func() { io.Copy(sc, sc); sc.Close() }()
					data := bytes.Repeat([]byte("odd-sized"), 30001)
					go func() { c.Write(data); c.CloseWrite() }()
					h := sha256.New()
					if n, err := io.Copy(h, c); err != nil || n != int64(len(data)) {
						t.Fatalf("echo returned %d bytes, err %v; want %d", n, err, len(data))
					}
					if got, want := h.Sum(nil), sha256.Sum256(data); !bytes.Equal(got, want[:]) {
						t.Fatal("echoed data differs")
					}
				})
				t.Run(tc.name+"/udp", func(t *testing.T) {
					la := tcpip.FullAddress{NIC: stack.NICID, Addr: tcpip.AddrFromSlice(netip.MustParseAddr(tc.addr).AsSlice()), Port: 9}
					lb := tcpip.FullAddress{NIC: stack.NICID, Addr: tcpip.AddrFromSlice(netip.MustParseAddr(tc.baddr).AsSlice()), Port: 10}
					srv, err := gonet.DialUDP(p.a.Gvisor(), &la, nil, tc.proto)
					if err != nil {
						t.Fatal(err)
					}
					defer srv.Close()
					cli, err := gonet.DialUDP(p.b.Gvisor(), &lb, &la, tc.proto)
					if err != nil {
						t.Fatal(err)
					}
					defer cli.Close()
					buf := make([]byte, 2000)
					// Up to the MTU, odd and even: gVisor fragments
					// nothing.
					for _, n := range []int{1, 2, 333, 1400} {
						msg := bytes.Repeat([]byte{byte(n)}, n)
						srv.SetReadDeadline(time.Now().Add(5 * time.Second))
						if _, err := cli.Write(msg); err != nil {
							t.Fatal(err)
						}
						got, _, err := srv.ReadFrom(buf)
						if err != nil || !bytes.Equal(buf[:got], msg) {
							t.Fatalf("datagram of %d bytes: read %d bytes, %v", n, got, err)
						}
					}
				})
			}
			for name, st := range map[string]*stack.Stack{"a": p.a, "b": p.b} {
				if ls := st.LinkStats(); ls.RxBadChecksum != 0 {
					t.Errorf("stack %s dropped %d frames with a bad checksum", name, ls.RxBadChecksum)
				}
			}
			if sa, sb := p.qa.Stats(), p.qb.Stats(); offload && (sa.TxCsumOffload == 0 || sb.TxCsumOffload == 0) ||
				!offload && (sa.TxCsumOffload != 0 || sb.TxCsumOffload != 0) {
				t.Errorf("checksums offloaded: a %d of %d frames, b %d of %d, with the offload %v",
					sa.TxCsumOffload, sa.TxFrames, sb.TxCsumOffload, sb.TxFrames, offload)
			}
		})
	}
}
