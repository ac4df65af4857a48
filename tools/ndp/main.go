// Command ndp shows and changes the IPv6 neighbour cache of running xstack
// stacks, with FreeBSD's ndp syntax: -a lists, -d deletes, -s adds a
// permanent entry.
//
//	ndp -a                              every entry
//	ndp 2001:2::2                       the entry of one neighbour
//	ndp -d 2001:2::2                    delete it: the next packet solicits it again
//	ndp -s 2001:2::50 02:00:00:00:00:50 a permanent entry
package main

import (
	"fmt"
	"time"

	"github.com/xstack/xstack/stack/stackinfo"
	"github.com/xstack/xstack/tools/internal/neigh"
)

const about = `Shows or changes the IPv6 neighbour cache of running xstack processes
(every process in the run dir unless -p is given): -a lists it, -d deletes
an entry (the next packet to the neighbour solicits it again), -s adds a
permanent entry. -n is accepted (output is numeric).`

func main() {
	neigh.Main(neigh.Table{Tool: "ndp", About: about, IPv6: true, Noun: "address",
		Header: fmt.Sprintf("%-39s %-17s %-6s %-10s %s", "Neighbor", "Linklayer Address", "Netif", "Expire", "S"),
		Line: func(n stackinfo.Neighbor, mac string) string {
			return fmt.Sprintf("%-39s %-17s %-6s %-10s %s", n.Addr, mac, n.Iface, expire(n), state(n.State))
		},
	})
}

// expire is "permanent" for a static entry, else the time since it changed.
func expire(n stackinfo.Neighbor) string {
	if n.State == "Static" {
		return "permanent"
	}
	return n.Age.Round(time.Second).String() + " ago"
}

// state is FreeBSD ndp's one-letter state.
func state(s string) string {
	switch s {
	case "Reachable", "Static":
		return "R"
	case "Stale":
		return "S"
	case "Delay":
		return "D"
	case "Probe":
		return "P"
	case "Incomplete":
		return "I"
	case "Unreachable":
		return "U"
	}
	return "?"
}
