// Command arp shows and changes the ARP cache of running xstack stacks,
// with FreeBSD's arp syntax: -a lists, -d deletes, -s adds a permanent entry.
package main

import "github.com/xstack/xstack/internal/ctl"

func main() { ctl.NeighMain(false) }
