// Command rig creates and removes xstack test rigs: two network namespaces
// joined by a veth pair, the stack side and a Linux kernel peer.
//
//	rig up   [-name NAME] [-queues N]   create a rig and print its layout
//	rig down  -name NAME                remove it
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/xstack/xstack/internal/rig"
)

func usage() {
	fmt.Fprintf(os.Stderr, `usage: rig up [-name NAME] [-queues N] [--json]
       rig down -name NAME

Creates (up) or removes (down) a rig: network namespaces NAME-s (stack side,
interface xs0) and NAME-p (kernel peer, interface xp0) joined by a veth pair,
addresses from 198.18.0.0/15 and 2001:2::/48. xstack's address is 198.18.0.1
and 2001:2::1; the peer is 198.18.0.2 and 2001:2::2.
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
	fs.Parse(os.Args[2:])

	switch os.Args[1] {
	case "up":
		r, err := rig.Up(rig.Options{Name: *name, Queues: *queues})
		if err != nil {
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
