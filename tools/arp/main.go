// Command arp shows and changes the ARP cache of running xstack stacks,
// with FreeBSD's arp syntax: -a lists, -d deletes, -s adds a permanent entry.
//
//	arp -a                                every entry
//	arp 198.18.0.2                        the entry of one host
//	arp -d 198.18.0.2                     delete it: the next packet resolves it again
//	arp -s 198.18.0.50 02:00:00:00:00:50  a permanent entry
package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/xstack/xstack/stack/stackinfo"
	"github.com/xstack/xstack/tools/internal/neigh"
)

const about = `Shows or changes the ARP cache of running xstack processes (every process in
the run dir unless -p is given): -a lists it, -d deletes an entry (the next
packet to the host resolves it again), -s adds a permanent entry. Hosts are
IPv4 addresses; -n is accepted (output is numeric).`

func main() {
	neigh.Main(neigh.Table{Tool: "arp", About: about, Noun: "hostname",
		Line: func(n stackinfo.Neighbor, mac string) string {
			return fmt.Sprintf("? (%s) at %s on %s %s [ethernet]", n.Addr, mac, n.Iface, expiry(n))
		},
	})
}

// expiry is "permanent" for a static entry, else its state and age.
func expiry(n stackinfo.Neighbor) string {
	if n.State == "Static" {
		return "permanent"
	}
	return fmt.Sprintf("%s, updated %s ago", strings.ToLower(n.State), n.Age.Round(time.Second))
}
