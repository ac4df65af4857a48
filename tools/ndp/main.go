// Command ndp shows and changes the IPv6 neighbour cache of running xstack stacks,
// with FreeBSD's ndp syntax: -a lists, -d deletes, -s adds a permanent entry.
package main

import "github.com/xstack/xstack/internal/ctl"

func main() { ctl.NeighMain(true) }
