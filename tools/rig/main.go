// Command rig creates and removes xstack test rigs: two network namespaces
// joined by a veth pair, the stack side and a Linux kernel peer.
//
//	rig up   [-name NAME] [-queues N] [-rx-cpu sender|receiver]   create a rig and print its layout
//	rig down  -name NAME                                          remove it
//
// -rx-cpu receiver makes the rig NIC-like: each veth end's receive work
// runs in threaded NAPI pinned to its side's CPU (-stack-cpu, -peer-cpu),
// instead of on the sender's CPU as veth does by default.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/xstack/xstack/internal/rig"
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage: rig up [-name NAME] [-queues N] [-rx-cpu sender|receiver [-stack-cpu N] [-peer-cpu N]] [--json]
       rig down -name NAME

Creates (up) or removes (down) a rig: network namespaces NAME-s (stack side,
interface xs0) and NAME-p (kernel peer, interface xp0) joined by a veth pair,
addresses from 198.18.0.0/15 and 2001:2::/48. xstack's address is 198.18.0.1
and 2001:2::1; the peer is 198.18.0.2 and 2001:2::2.

-rx-cpu sender (the default) leaves veth as it is: a frame's receive path
runs on the CPU that sent it. -rx-cpu receiver is NIC-like: threaded NAPI
on both ends, GRO on both, TSO off on xs0, and each end's napi/<if>-<id>
kthread pinned to its side's CPU (xs0's to -stack-cpu, xp0's to
-peer-cpu) at SCHED_FIFO 50 (as threaded interrupt handlers run), so that
each side's receive work runs on its own core, ahead of its tasks. The
settings belong to the veth pair and go with it at rig down.
`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet("rig "+os.Args[1], flag.ExitOnError)
	fs.Usage = usage
	name := fs.String("name", "", "rig name (at most 10 characters); random when empty for up")
	queues := fs.Int("queues", 1, "queues per veth end")
	asJSON := fs.Bool("json", false, "print the rig as JSON")
	rxCPU := fs.String("rx-cpu", string(rig.RxSender), "where receive work runs: sender (veth as it is) or receiver (NIC-like threaded NAPI)")
	stackCPU := fs.Int("stack-cpu", 0, "-rx-cpu receiver: CPU of the stack side's NAPI kthreads (the server's CPU)")
	peerCPU := fs.Int("peer-cpu", 1, "-rx-cpu receiver: CPU of the peer side's NAPI kthreads (the client's CPU)")
	fs.Parse(os.Args[2:])

	switch os.Args[1] {
	case "up":
		mode, err := rig.ParseRxCPU(*rxCPU)
		if err != nil {
			fmt.Fprintln(os.Stderr, "rig up:", err)
			os.Exit(2)
		}
		r, err := rig.Up(rig.Options{Name: *name, Queues: *queues, RxCPU: mode, StackCPU: *stackCPU, PeerCPU: *peerCPU})
		if err != nil {
			fmt.Fprintln(os.Stderr, "rig up:", err)
			os.Exit(1)
		}
		napi, err := r.PinNAPI()
		if err != nil {
			r.Down()
			fmt.Fprintln(os.Stderr, "rig up:", err)
			os.Exit(1)
		}
		if *asJSON {
			json.NewEncoder(os.Stdout).Encode(r)
			return
		}
		fmt.Printf("rig %s is up\n", r.Name)
		fmt.Printf("  stack side: netns %s, interface %s (%s), xstack address %s, %s\n", r.StackNS, r.StackIf, r.StackMAC, r.StackAddr4, r.StackAddr6)
		fmt.Printf("  peer side:  netns %s, interface %s (%s), address %s, %s\n", r.PeerNS, r.PeerIf, r.PeerMAC, r.PeerAddr4, r.PeerAddr6)
		fmt.Printf("  receive work: on the %s's CPU\n", r.RxCPU)
		for _, n := range napi {
			fmt.Printf("    napi/%s-%d: kthread %d pinned to CPU %d\n", n.Ifname, n.ID, n.PID, n.CPU)
		}
		fmt.Printf("remove it with: rig down -name %s\n", r.Name)
	case "down":
		if *name == "" {
			fmt.Fprintln(os.Stderr, "rig down: -name is required")
			os.Exit(2)
		}
		if err := rig.Remove(*name); err != nil {
			fmt.Fprintln(os.Stderr, "rig down:", err)
			os.Exit(1)
		}
	default:
		usage()
	}
}
