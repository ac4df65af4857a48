package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/xstack/xstack/internal/affinity"
	"golang.org/x/sys/unix"
)

// udpEchoCmd is the hidden subcommand that runs the kernel's UDP echo
// server: the bench re-executes itself with it inside the stack namespace.
const udpEchoCmd = "_kernel-udp-echo"

// udpEchoReady is the line the kernel echo prints when it is serving.
const udpEchoReady = "kernel udp echo: serving"

// udpEchoMain is the kernel counterpart of examples/echo's UDP side: one
// socket, one datagram at a time, each sent back to its sender, on one
// pinned CPU with GOMAXPROCS=1. It runs until killed.
func udpEchoMain(args []string) int {
	fs := flag.NewFlagSet(udpEchoCmd, flag.ExitOnError)
	cpu := fs.Int("cpu", 0, "CPU to pin to")
	port := fs.Int("port", 7, "UDP port")
	fs.Parse(args)
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	if err := affinity.PinProcess(*cpu); err != nil {
		fmt.Fprintln(os.Stderr, "kernel udp echo:", err)
		return 1
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrInet4{Port: *port})
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kernel udp echo:", err)
		return 1
	}
	fmt.Printf("%s port %d on cpu %d\n", udpEchoReady, *port, *cpu)
	buf := make([]byte, 65536)
	for {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			fmt.Fprintln(os.Stderr, "kernel udp echo:", err)
			return 1
		}
		unix.Sendto(fd, buf[:n], 0, from)
	}
}

// udpResult is what a UDP echo run counted.
type udpResult struct {
	sent, echoed uint64
	timeouts     uint64
	elapsed      time.Duration
}

// runUDP keeps window datagrams of size bytes in flight on each of flows
// connected sockets for d and counts the echoes. A flow that hears nothing
// for 20ms assumes its window was lost and sends a new one.
func runUDP(ctx context.Context, ns string, addr netip.AddrPort, flows, window, size int, d time.Duration) (udpResult, error) {
	var sent, echoed, timeouts atomic.Uint64
	start := monotonic()
	deadline := start + d.Nanoseconds()
	err := runWorkers(ctx, ns, flows, func(_ int, stop *atomic.Bool) error {
		fd, err := dialBlocking(unix.SOCK_DGRAM, addr, 20*time.Millisecond)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		msg := make([]byte, size)
		buf := make([]byte, 2048)
		var s, e, to uint64
		defer func() { sent.Add(s); echoed.Add(e); timeouts.Add(to) }()
		burst := func() {
			for range window {
				if _, err := unix.Write(fd, msg); err == nil {
					s++
				}
			}
		}
		burst()
		for !stop.Load() {
			_, err := unix.Read(fd, buf)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					to++
					burst()
				}
				// ECONNREFUSED (an ICMP error from a server not yet
				// listening) is retried by the next burst.
			} else {
				e++
			}
			if (err != nil || e&63 == 0) && monotonic() >= deadline {
				return nil
			}
			if err == nil {
				if _, err := unix.Write(fd, msg); err == nil {
					s++
				}
			}
		}
		return nil
	})
	return udpResult{sent: sent.Load(), echoed: echoed.Load(), timeouts: timeouts.Load(), elapsed: time.Duration(monotonic() - start)}, err
}
