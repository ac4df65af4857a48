// Command ifconfig shows and configures the interface of running xstack
// stacks, in the layout of Linux's ifconfig.
//
//	ifconfig                         the interface, its addresses and counters
//	ifconfig xs0 add 198.19.0.1/24   add an address (also: inet|inet6 ADDR alias)
//	ifconfig xs0 del 198.19.0.1      remove one (also: delete, -alias)
//	ifconfig xs0 mtu 1400            set the MTU (up to the one it started with)
//	ifconfig xs0 up|down             enable or disable the interface
package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/xstack/xstack/internal/ctl"
)

const usage = `
usage: ifconfig [-p proc-id] [--run-dir dir] [--json] [ifname]
       ifconfig [flags] ifname [add|inet|inet6] address[/len] [alias]
       ifconfig [flags] ifname del|delete|-alias address
       ifconfig [flags] ifname mtu N
       ifconfig [flags] ifname up|down

Shows the interface of running xstack processes with its flags, MTU, MAC,
IPv4 and IPv6 addresses and counters (summed over the processes when -p is
not given), or changes it in every selected process. Packet and byte
counters are those of the AF_XDP queues; errors are frames too short for
Ethernet; dropped are frames for another host or of an unknown EtherType,
and frames the kernel or the queue dropped.`

func main() {
	t := ctl.NewTool("ifconfig", usage)
	t.Main(func(args []string) error {
		var set ctl.IfconfigArgs
		changes := false
		if len(args) > 1 {
			var err error
			if set, err = parseSet(args[1:]); err != nil {
				return err
			}
			changes = true
		}
		var ifcs []ctl.Interface
		err := t.Each(func(c *ctl.Client) error {
			var ifc ctl.Interface
			op, a := ctl.OpIfconfig, any(nil)
			if changes {
				op, a = ctl.OpIfconfigSet, set
			}
			if err := c.Call(op, a, &ifc); err != nil {
				return err
			}
			if len(args) > 0 && ifc.Name != args[0] {
				return fmt.Errorf("interface %s: no such interface (the stack drives %s)", args[0], ifc.Name)
			}
			ifcs = append(ifcs, ifc)
			return nil
		})
		if err != nil {
			return err
		}
		merged := merge(ifcs)
		if t.Opts.JSON {
			return ctl.PrintJSON(os.Stdout, merged)
		}
		printInterface(os.Stdout, merged, len(ifcs))
		return nil
	})
}

func parseSet(words []string) (ctl.IfconfigArgs, error) {
	var a ctl.IfconfigArgs
	for i := 0; i < len(words); i++ {
		w := words[i]
		next := func() (string, error) {
			if i+1 >= len(words) {
				return "", ctl.Usagef("%s: expected a value after it", w)
			}
			i++
			return words[i], nil
		}
		switch w {
		case "up", "down":
			up := w == "up"
			a.Up = &up
		case "mtu":
			v, err := next()
			if err != nil {
				return a, err
			}
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return a, ctl.Usagef("mtu: expected a positive number, got %q", v)
			}
			a.MTU = n
		case "add", "inet", "inet6":
			v, err := next()
			if err != nil {
				return a, err
			}
			a.AddAddr = v
		case "alias":
		case "del", "delete", "-alias":
			v, err := next()
			if err != nil {
				return a, err
			}
			a.DelAddr = v
		default:
			if _, err := netip.ParsePrefix(w); err == nil {
				a.AddAddr = w
				continue
			}
			if _, err := netip.ParseAddr(w); err == nil {
				a.AddAddr = w
				continue
			}
			return a, ctl.Usagef("unknown argument %q", w)
		}
	}
	return a, nil
}

// merge sums the counters of the processes' views of the one interface.
func merge(ifcs []ctl.Interface) ctl.Interface {
	m := ifcs[0]
	for _, i := range ifcs[1:] {
		m.RxPackets += i.RxPackets
		m.RxBytes += i.RxBytes
		m.TxPackets += i.TxPackets
		m.TxBytes += i.TxBytes
		m.RxErrors += i.RxErrors
		m.RxDropped += i.RxDropped
		m.TxDropped += i.TxDropped
	}
	return m
}

func printInterface(w io.Writer, i ctl.Interface, procs int) {
	// IFF_UP 0x1, IFF_BROADCAST 0x2, IFF_RUNNING 0x40, IFF_MULTICAST 0x1000.
	flags, names := 0x2|0x1000, []string{"BROADCAST"}
	if i.Up {
		flags |= 0x1
		names = append([]string{"UP"}, names...)
	}
	if i.Running {
		flags |= 0x40
		names = append(names, "RUNNING")
	}
	names = append(names, "MULTICAST")
	fmt.Fprintf(w, "%s: flags=%d<%s>  mtu %d\n", i.Name, flags, strings.Join(names, ","), i.MTU)
	for _, p := range i.Addrs {
		if p.Addr().Is4() {
			fmt.Fprintf(w, "        inet %s  netmask %s  broadcast %s\n", p.Addr(), netmask(p.Bits()), broadcast(p))
		}
	}
	for _, p := range i.Addrs {
		if p.Addr().Is6() {
			scope := "global"
			if p.Addr().IsLinkLocalUnicast() {
				scope = "link"
			}
			fmt.Fprintf(w, "        inet6 %s  prefixlen %d  scopeid <%s>\n", p.Addr(), p.Bits(), scope)
		}
	}
	note := ""
	if procs > 1 {
		note = fmt.Sprintf("  (counters of %d lcores)", procs)
	}
	fmt.Fprintf(w, "        ether %s  (AF_XDP)%s\n", i.MAC, note)
	fmt.Fprintf(w, "        RX packets %d  bytes %d (%s)\n", i.RxPackets, i.RxBytes, human(i.RxBytes))
	fmt.Fprintf(w, "        RX errors %d  dropped %d\n", i.RxErrors, i.RxDropped)
	fmt.Fprintf(w, "        TX packets %d  bytes %d (%s)\n", i.TxPackets, i.TxBytes, human(i.TxBytes))
	fmt.Fprintf(w, "        TX errors 0  dropped %d\n\n", i.TxDropped)
}

func netmask(bits int) netip.Addr {
	var b [4]byte
	for i := 0; i < bits; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}

func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}

// human is Linux ifconfig's "(1.2 KB)".
func human(n uint64) string {
	units := []string{"B", "KB", "MB", "GB", "TB", "PB"}
	f := float64(n)
	u := 0
	for f >= 1000 && u < len(units)-1 {
		f /= 1000
		u++
	}
	if u == 0 {
		return fmt.Sprintf("%d.0 B", n)
	}
	return fmt.Sprintf("%.1f %s", f, units[u])
}
