package core_test

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
)

// TestTxChecksumRig runs the echo example on a veth rig in copy mode with
// tx_checksum=on and tx_checksum=off, and echoes a TCP stream from the
// kernel in the peer namespace over IPv4 and IPv6. With the offload, the
// frames xstack sends carry only the pseudo-header sum for the kernel to
// complete: the peer's kernel must take every one of them (the stream
// comes back whole) and the counters must show the frames sent with a
// checksum request; without it, none.
func TestTxChecksumRig(t *testing.T) {
	rigtest.RequireRoot(t)
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor)
	if major < 6 || major == 6 && minor < 8 {
		t.Skip("AF_XDP TX metadata needs Linux 6.8")
	}
	bin := rigtest.Build(t, "./examples/echo")
	for _, mode := range []string{"on", "off"} {
		t.Run("tx_checksum="+mode, func(t *testing.T) {
			r := rigtest.New(t, rig.Options{})
			p := rigtest.Start(t, "echoing", bin, "-c", rigtest.Config(t, r, "zerocopy=off", "tx_checksum="+mode))
			for _, addr := range []netip.Addr{r.StackAddr4, r.StackAddr6} {
				var c net.Conn
				if err := netns.Do(r.PeerNS, func() (err error) {
					c, err = net.DialTimeout("tcp", netip.AddrPortFrom(addr, 7).String(), 10*time.Second)
					return err
				}); err != nil {
					t.Fatalf("dial %s: %v", addr, err)
				}
				c.SetDeadline(time.Now().Add(60 * time.Second))
				err := rigtest.EchoBulk(c.(*net.TCPConn), 8<<20, 1, 0, nil)
				c.Close()
				if err != nil {
					t.Fatalf("echo over %s: %v", addr, err)
				}
			}
			cs := p.Counters(t)
			t.Logf("nic.tx_frames %d, nic.tx_csum_offload %d", cs["nic.tx_frames"], cs["nic.tx_csum_offload"])
			if mode == "on" && cs["nic.tx_csum_offload"] == 0 || mode == "off" && cs["nic.tx_csum_offload"] != 0 {
				t.Errorf("nic.tx_csum_offload %d of nic.tx_frames %d with tx_checksum=%s", cs["nic.tx_csum_offload"], cs["nic.tx_frames"], mode)
			}
			if cs["link.rx_bad_checksum"] != 0 {
				t.Errorf("link.rx_bad_checksum %d", cs["link.rx_bad_checksum"])
			}
		})
	}
}
