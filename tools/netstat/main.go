// Command netstat shows the sockets, protocol statistics, interfaces and
// routes of running xstack stacks, in the layout of Linux's netstat.
//
//	netstat        connections (not listening sockets)
//	netstat -a     every socket, listening ones too (-n is accepted: output is numeric)
//	netstat -s     protocol statistics
//	netstat -i     interface counters
//	netstat -r     routing table
package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/stack/stackinfo"
	"github.com/xstack/xstack/tools/internal/gather"
)

const usage = `
usage: netstat [-p proc-id] [--run-dir dir] [--json] [-a] [-n] [-t] [-u]
       netstat [flags] -s
       netstat [flags] -i
       netstat [flags] -r

Shows what running xstack processes hold (every process in the run dir
unless -p is given; lists are merged, counters summed):
  (none)  TCP connections and UDP sockets, without listening sockets
  -a      all sockets, listening ones too
  -t, -u  only TCP, only UDP
  -s      protocol statistics (every counter of the stack, by protocol)
  -i      the interface and its counters
  -r      the routing table
Addresses are always numeric; -n is accepted for habit's sake.`

func main() {
	t := ctl.NewTool("netstat", usage)
	all := t.FS.Bool("a", false, "all sockets, listening ones too")
	t.FS.Bool("n", false, "numeric addresses (always)")
	tcpOnly := t.FS.Bool("t", false, "only TCP")
	udpOnly := t.FS.Bool("u", false, "only UDP")
	stats := t.FS.Bool("s", false, "protocol statistics")
	ifaces := t.FS.Bool("i", false, "interface table")
	routes := t.FS.Bool("r", false, "routing table")
	t.Bools = "antusir"
	t.Main(func(args []string) error {
		if len(args) > 0 {
			return ctl.Usagef("unexpected operand %q", args[0])
		}
		switch {
		case *stats:
			return showStats(t)
		case *ifaces:
			return showInterfaces(t)
		case *routes:
			return showRoutes(t)
		}
		return showSockets(t, *all, *tcpOnly, *udpOnly)
	})
}

func showSockets(t *ctl.Tool, all, tcpOnly, udpOnly bool) error {
	answers, err := gather.All[[]stackinfo.Socket](t, ctl.OpSockets, nil)
	if err != nil {
		return err
	}
	socks := slices.Concat(gather.Values(answers)...)
	socks = slices.DeleteFunc(socks, func(s stackinfo.Socket) bool {
		isTCP := strings.HasPrefix(s.Proto, "tcp")
		return (!all && (s.State == "LISTEN" || s.Remote.Port() == 0)) ||
			(tcpOnly && !isTCP) || (udpOnly && isTCP)
	})
	if t.Opts.JSON {
		if socks == nil {
			socks = []stackinfo.Socket{}
		}
		return ctl.PrintJSON(os.Stdout, socks)
	}
	if all {
		fmt.Println("Active Internet connections (servers and established)")
	} else {
		fmt.Println("Active Internet connections (w/o servers)")
	}
	fmt.Printf("%-5s %6s %6s %-23s %-23s %s\n", "Proto", "Recv-Q", "Send-Q", "Local Address", "Foreign Address", "State")
	for _, s := range socks {
		fmt.Printf("%-5s %6d %6d %-23s %-23s %s\n", s.Proto, s.RecvQ, s.SendQ, endpoint(s.Local), endpoint(s.Remote), s.State)
	}
	return nil
}

// endpoint prints an address as Linux netstat does: "198.18.0.1:80",
// "2001:2::1:80", "0.0.0.0:*".
func endpoint(ap netip.AddrPort) string {
	port := "*"
	if ap.Port() != 0 {
		port = fmt.Sprint(ap.Port())
	}
	return ap.Addr().String() + ":" + port
}

func showStats(t *ctl.Tool) error {
	answers, err := gather.All[map[string]uint64](t, ctl.OpCounters, nil)
	if err != nil {
		return err
	}
	sum := map[string]uint64{}
	for _, a := range answers {
		for k, v := range a.Value {
			sum[k] += v
		}
	}
	if t.Opts.JSON {
		return ctl.PrintJSON(os.Stdout, sum)
	}
	printStats(os.Stdout, sum)
	return nil
}

// printStats groups counters by their first name component, as FreeBSD's
// netstat -s groups by protocol.
func printStats(w io.Writer, m map[string]uint64) {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	group := ""
	for _, n := range names {
		g, rest, ok := strings.Cut(n, ".")
		if !ok {
			g, rest = "", n
		}
		if g != group {
			fmt.Fprintf(w, "%s:\n", g)
			group = g
		}
		fmt.Fprintf(w, "\t%d %s\n", m[n], strings.ReplaceAll(rest, "_", " "))
	}
}

func showInterfaces(t *ctl.Tool) error {
	answers, err := gather.All[ctl.Interface](t, ctl.OpIfconfig, nil)
	if err != nil {
		return err
	}
	if t.Opts.JSON {
		return ctl.PrintJSON(os.Stdout, gather.Values(answers))
	}
	fmt.Println("Kernel Interface table")
	fmt.Printf("%-10s %5s %4s %8s %6s %6s %6s %8s %6s %6s %6s %s\n",
		"Iface", "MTU", "Proc", "RX-OK", "RX-ERR", "RX-DRP", "RX-OVR", "TX-OK", "TX-ERR", "TX-DRP", "TX-OVR", "Flg")
	for _, a := range answers {
		f := a.Value
		flg := "B"
		if f.Up {
			flg += "U"
		}
		if f.Running {
			flg += "R"
		}
		flg += "M"
		fmt.Printf("%-10s %5d %4d %8d %6d %6d %6d %8d %6d %6d %6d %s\n",
			f.Name, f.MTU, a.ProcID, f.RxPackets, f.RxErrors, f.RxDropped, 0, f.TxPackets, 0, f.TxDropped, 0, flg)
	}
	return nil
}

func showRoutes(t *ctl.Tool) error {
	routes, err := gather.Routes(t)
	if err != nil {
		return err
	}
	return ctl.OutputRoutes(os.Stdout, t.Opts.JSON, routes)
}
