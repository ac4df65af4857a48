package rigtest

import (
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/xstack/xstack/internal/netns"
)

// KernelEcho serves TCP echo with the kernel's stack in namespace ns on
// each address, until the test ends.
func KernelEcho(t testing.TB, ns string, addrs ...netip.AddrPort) {
	t.Helper()
	for _, a := range addrs {
		var ln net.Listener
		if err := netns.Do(ns, func() error {
			var err error
			ln, err = net.Listen("tcp", a.String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(c, c); c.Close() }()
			}
		}()
	}
}
