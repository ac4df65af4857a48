package core

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/xstack/xstack/internal/xstest"
	"github.com/xstack/xstack/stack"
	"github.com/xstack/xstack/stack/stackinfo"
	"github.com/xstack/xstack/stack/stacktest"
)

// leakHelperEnv selects the case TestLeakCheckHelper runs in a subprocess
// started with XSTACK_LEAK_CHECK=1 (the checker must be on from the start).
const leakHelperEnv = "XSTACK_LEAK_HELPER"

var leakLine = regexp.MustCompile(`xstack: leak check: (clean|(\d+) objects leaked)`)

// runLeakHelper runs one case of TestLeakCheckHelper and returns its output
// and the number of leaked objects its leak-check line reports.
func runLeakHelper(t *testing.T, name string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLeakCheckHelper$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), LeakCheckEnv+"=1", leakHelperEnv+"="+name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s: %v\n%s", name, err, out)
	}
	m := leakLine.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("helper %s printed no leak-check line:\n%s", name, out)
	}
	if m[1] == "clean" {
		return string(out), 0
	}
	n, _ := strconv.Atoi(m[2])
	return string(out), n
}

func TestLeakCheck(t *testing.T) {
	t.Run("a leaked packet buffer is reported", func(t *testing.T) {
		out, n := runLeakHelper(t, "leak")
		// The packet buffer and the chunk that holds its payload.
		if n < 1 || !strings.Contains(out, "PacketBuffer") {
			t.Fatalf("want the leaked PacketBuffer reported, got %d objects:\n%s", n, out)
		}
	})
	t.Run("closed stacks with a live connection are clean", func(t *testing.T) {
		if out, n := runLeakHelper(t, "conn"); n != 0 {
			t.Fatalf("%d objects leaked:\n%s", n, out)
		}
	})
	t.Run("live stacks hold objects", func(t *testing.T) {
		out, n := runLeakHelper(t, "live")
		if n == 0 {
			t.Fatalf("a check while the stacks are up found nothing; it could not tell a leak:\n%s", out)
		}
		t.Logf("a check before Close reports %d objects (what live stacks hold)", n)
	})
	t.Run("off by default", func(t *testing.T) {
		if os.Getenv(LeakCheckEnv) == "" && LeakCheckEnabled() {
			t.Fatal("leak checker on without " + LeakCheckEnv)
		}
		if n, r := CheckLeaks(); !LeakCheckEnabled() && (n != 0 || r != "") {
			t.Fatalf("CheckLeaks with the checker off = %d, %q", n, r)
		}
	})
}

// TestLeakCheckHelper is the subprocess of TestLeakCheck.
func TestLeakCheckHelper(t *testing.T) {
	name := os.Getenv(leakHelperEnv)
	if name == "" {
		t.Skip("subprocess of TestLeakCheck")
	}
	if !LeakCheckEnabled() {
		t.Fatal(LeakCheckEnv + "=1 did not turn the leak checker on")
	}
	switch name {
	case "leak":
		pkt := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{Payload: buffer.MakeWithData(make([]byte, 100))})
		_ = pkt // never DecRef'd
		printLeakCheck(os.Stdout)
	case "conn", "live":
		a, b, stop := leakPair(t)
		c := leakConn(t, a, b)
		if name == "live" {
			printLeakCheck(os.Stdout)
			return
		}
		_ = c // left open: closing the stacks must release it
		stop()
		leakCheckStackClosed(a)
		leakCheckStackClosed(b)
	}
}

// leakPair makes two stacks joined in memory, each driven by a loop as an
// lcore's is (stacktest), and registers them with the leak check as lcore
// stacks are. stop ends the loops and closes both stacks.
func leakPair(t *testing.T) (a, b *stack.Stack, stop func()) {
	p := stacktest.NewPairWith(t, stacktest.Options{
		A: stack.Config{Addr4: netip.MustParsePrefix("198.18.0.1/16")},
		B: stack.Config{Addr4: netip.MustParsePrefix("198.18.0.2/16")},
	})
	leakCheckStackOpened(p.A)
	leakCheckStackOpened(p.B)
	return p.A, p.B, p.Close
}

// leakConn opens a TCP connection from a to b, moves data both ways and
// leaves unread data queued on both ends.
func leakConn(t *testing.T, a, b *stack.Stack) *gonet.TCPConn {
	ln, err := gonet.ListenTCP(b.Gvisor(), tcpip.FullAddress{NIC: stack.NICID, Port: 80}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan *gonet.TCPConn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c.(*gonet.TCPConn)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, a.Gvisor(),
		tcpip.FullAddress{NIC: stack.NICID, Addr: tcpip.AddrFrom4([4]byte{198, 18, 0, 2}), Port: 80}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	msg := bytes.Repeat([]byte("xstack"), 10000)
	go s.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("read %v", err)
	}
	// Unread data on both ends: segments the stacks still hold.
	c.Write([]byte("unread by the server"))
	s.Write([]byte("unread by the client"))
	xstest.WaitFor(t, 5*time.Second, "unread data queued on both ends", func() error {
		for _, st := range []*stack.Stack{a, b} {
			if !slices.ContainsFunc(st.Sockets(), func(s stackinfo.Socket) bool { return s.State == "ESTABLISHED" && s.RecvQ > 0 }) {
				return fmt.Errorf("sockets %+v", st.Sockets())
			}
		}
		return nil
	})
	return c
}
