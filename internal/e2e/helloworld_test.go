package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
)

// dial opens a TCP connection from namespace ns (the kernel's stack there).
func dial(ns string, addr netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := netns.Do(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr.String(), 5*time.Second)
		return err
	})
	return c, err
}

// startHelloworld runs examples/helloworld on r and returns it.
func startHelloworld(t *testing.T, r *rig.Rig, extra ...string) *rigtest.Proc {
	t.Helper()
	bin := rigtest.Build(t, "./examples/helloworld")
	conf := rigtest.Config(t, r, extra...)
	return rigtest.Start(t, "serving on port", bin, "-c", conf)
}

// fetch sends one request on c and reads one response, returning it whole.
func fetch(c net.Conn, br *bufio.Reader, close bool) ([]byte, error) {
	return rigtest.HTTPGet(c, br, "/", close, 10*time.Second)
}

// reference returns the response the kernel build of the same server gives,
// for byte-for-byte comparison.
func reference(t *testing.T, r *rig.Rig, close bool) []byte {
	t.Helper()
	bin := rigtest.Build(t, "./examples/helloworld")
	p := rigtest.Start(t, "serving on port", "ip", "netns", "exec", r.StackNS, bin, "-kernel", "-port", "8080")
	defer p.Stop(5 * time.Second)
	c, err := dial(r.PeerNS, netip.AddrPortFrom(r.KernelAddr4, 8080))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp, err := fetch(c, bufio.NewReader(c), close)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestHelloworldShortConnections(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	want := reference(t, r, true)
	if !bytes.Contains(want, []byte("Hello from xstack")) {
		t.Fatalf("reference response lacks the page: %q", want)
	}
	p := startHelloworld(t, r)
	for _, addr := range []netip.Addr{r.StackAddr4, r.StackAddr6} {
		t.Run(addr.String(), func(t *testing.T) {
			for i := 0; i < 1000; i++ {
				c, err := dial(r.PeerNS, netip.AddrPortFrom(addr, 80))
				if err != nil {
					t.Fatalf("connection %d: %v", i, err)
				}
				br := bufio.NewReader(c)
				got, err := fetch(c, br, true)
				if err != nil {
					c.Close()
					t.Fatalf("connection %d: %v", i, err)
				}
				if !bytes.Equal(got, want) {
					c.Close()
					t.Fatalf("connection %d: response differs from the kernel build's\n got: %q\nwant: %q", i, got, want)
				}
				// Connection: close: the server closes after the response.
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if n, err := br.Read(make([]byte, 1)); err != io.EOF {
					c.Close()
					t.Fatalf("connection %d: after the response read %d bytes, %v; want EOF", i, n, err)
				}
				c.Close()
			}
		})
	}
	cs := p.Counters(t)
	if cs["tcp.established_resets"] != 0 {
		t.Errorf("%d connections were reset", cs["tcp.established_resets"])
	}
}

func TestHelloworldKeepAlive(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	want := reference(t, r, false)
	startHelloworld(t, r)
	for _, addr := range []netip.Addr{r.StackAddr4, r.StackAddr6} {
		t.Run(addr.String(), func(t *testing.T) {
			const conns, requests = 64, 100
			var wg sync.WaitGroup
			errc := make(chan error, conns)
			for i := 0; i < conns; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					c, err := dial(r.PeerNS, netip.AddrPortFrom(addr, 80))
					if err != nil {
						errc <- fmt.Errorf("connection %d: %w", i, err)
						return
					}
					defer c.Close()
					br := bufio.NewReader(c)
					for j := 0; j < requests; j++ {
						got, err := fetch(c, br, false)
						if err != nil {
							errc <- fmt.Errorf("connection %d request %d: %w", i, j, err)
							return
						}
						if !bytes.Equal(got, want) {
							errc <- fmt.Errorf("connection %d request %d: response differs\n got: %q\nwant: %q", i, j, got, want)
							return
						}
					}
				}(i)
			}
			wg.Wait()
			close(errc)
			for err := range errc {
				t.Error(err)
			}
		})
	}
}

func TestHelloworldPipelinedAndPartial(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	want := reference(t, r, false)
	startHelloworld(t, r)
	c, err := dial(r.PeerNS, netip.AddrPortFrom(r.StackAddr4, 80))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Three requests in one segment, then one split across writes.
	req := "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	io.WriteString(c, req+req+req)
	br := bufio.NewReader(c)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < 3; i++ {
		got := make([]byte, len(want))
		if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("pipelined response %d: %v %q", i, err, got)
		}
	}
	for _, part := range []string{"GET / HT", "TP/1.1\r\nHo", "st: x\r\n", "\r\n"} {
		io.WriteString(c, part)
		time.Sleep(20 * time.Millisecond)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(br, got); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("split request: %v %q", err, got)
	}
}

func TestEchoStream(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	bin := rigtest.Build(t, "./examples/echo")
	rigtest.Start(t, "echoing", bin, "-c", rigtest.Config(t, r))
	for _, addr := range []netip.Addr{r.StackAddr4, r.StackAddr6} {
		t.Run(addr.String(), func(t *testing.T) {
			if err := echoBulk(r.PeerNS, netip.AddrPortFrom(addr, 7), 10<<20, 1); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestActiveConnect has xstack open connections to a kernel server in the
// peer namespace: the stack resolves the peer's address itself (ARP, ND).
func TestActiveConnect(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	var lns []net.Listener
	for _, a := range []netip.Addr{r.PeerAddr4, r.PeerAddr6} {
		err := netns.Do(r.PeerNS, func() error {
			ln, err := net.Listen("tcp", netip.AddrPortFrom(a, 7).String())
			lns = append(lns, ln)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, ln := range lns {
		defer ln.Close()
		go func(ln net.Listener) {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(c, c); c.Close() }()
			}
		}(ln)
	}
	bin := rigtest.Build(t, "./examples/client")
	for _, a := range []netip.Addr{r.PeerAddr4, r.PeerAddr6} {
		t.Run(a.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_ = ctx
			p, err := rigtest.StartProc("ok:", 60*time.Second, bin, "-c", rigtest.Config(t, r),
				"-addr", netip.AddrPortFrom(a, 7).String(), "-bytes", "1048576", "-conns", "4")
			if err != nil {
				if p != nil {
					p.Stop(5 * time.Second)
				}
				t.Fatal(err)
			}
			if err := p.Wait(20 * time.Second); err != nil {
				t.Fatalf("client: %v\n%s", err, p.Output())
			}
		})
	}
	// The peer learnt the stack's MAC from the stack's own resolution.
	out, err := r.Run(r.PeerNS, "ip", "neigh", "show", "dev", r.PeerIf)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, r.StackMAC.String()) {
		t.Errorf("peer neighbour table has no entry with the stack's MAC %s:\n%s", r.StackMAC, out)
	}
}
