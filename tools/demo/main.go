// Command demo shows xstack end to end on a fresh machine: it creates a rig
// (two network namespaces joined by a veth pair), starts examples/helloworld
// on xstack with the shipped config.ini, fetches the page from the kernel
// peer over IPv4 and IPv6, prints it with the stack's counters, and serves
// until Ctrl-C. The rig is removed on exit, also after an error.
//
//	sudo go run ./tools/demo
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
)

func main() {
	conf := flag.String("c", "config.ini", "config file for helloworld (the shipped one runs on this rig)")
	once := flag.Bool("once", false, "exit after the fetches instead of serving until Ctrl-C")
	flag.Parse()
	if err := run(*conf, *once); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

const rigName = "xsdemo" // config.ini names its namespace xsdemo-s

func run(conf string, once bool) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("run as root (sudo go run ./tools/demo): it creates network namespaces, a veth pair and an XDP program")
	}
	for _, tool := range []string{"ip", "ethtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: install iproute2 and ethtool (apt-get install iproute2 ethtool)", tool)
		}
	}
	if netns.Exists(rigName+"-s") || netns.Exists(rigName+"-p") {
		fmt.Printf("removing the rig %s left by an earlier run\n", rigName)
		if err := rig.Remove(rigName); err != nil {
			return err
		}
	}
	r, err := rig.Up(rig.Options{Name: rigName})
	if err != nil {
		return err
	}
	defer func() {
		if derr := r.Down(); derr != nil && err == nil {
			err = derr
		}
		fmt.Printf("rig %s removed\n", rigName)
	}()
	fmt.Printf("rig %s: xstack on %s in netns %s (%s, %s); kernel peer in netns %s (%s)\n",
		r.Name, r.StackIf, r.StackNS, r.StackAddr4, r.StackAddr6, r.PeerNS, r.PeerAddr4)

	bin, err := build()
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(bin))
	p, err := rigtest.StartProc("serving on port", 30*time.Second, bin, "-c", conf)
	if err != nil {
		if p != nil {
			p.Stop(5 * time.Second)
		}
		return err
	}
	defer func() {
		p.Stop(10 * time.Second)
		fmt.Println("helloworld stopped")
	}()
	fmt.Println(indent(p.Output()))

	for _, a := range []netip.Addr{r.StackAddr4, r.StackAddr6} {
		body, status, err := get(r.PeerNS, a)
		if err != nil {
			return fmt.Errorf("fetch from %s: %w", a, err)
		}
		fmt.Printf("\nGET http://%s/ from the kernel peer: %s\n%s", hostport(a), status, indent(body))
	}
	if err := printCounters(p); err != nil {
		return err
	}

	if once {
		return nil
	}
	fmt.Printf("\nhelloworld is serving. Try:\n  sudo ip netns exec %s curl http://%s/\n  sudo ip netns exec %s curl 'http://[%s]/'\n  sudo ip netns exec %s ping %s\nCtrl-C stops it and removes the rig.\n",
		r.PeerNS, r.StackAddr4, r.PeerNS, r.StackAddr6, r.PeerNS, r.StackAddr4)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
		fmt.Println()
		printCounters(p)
	case <-waitExit(p):
		return fmt.Errorf("helloworld exited:\n%s", p.Output())
	}
	return nil
}

func waitExit(p *rigtest.Proc) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		for !p.Exited() {
			time.Sleep(100 * time.Millisecond)
		}
		close(c)
	}()
	return c
}

// build compiles examples/helloworld from the module the demo runs in.
func build() (string, error) {
	dir, err := os.MkdirTemp("", "xstack-demo-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "helloworld")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/xstack/xstack/examples/helloworld")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go build examples/helloworld (run the demo from inside the repository): %w", err)
	}
	return bin, nil
}

func hostport(a netip.Addr) string {
	if a.Is6() {
		return "[" + a.String() + "]"
	}
	return a.String()
}

// get fetches / from a with the kernel's TCP stack in namespace ns.
func get(ns string, a netip.Addr) (string, string, error) {
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var c net.Conn
				err := netns.Do(ns, func() error {
					var err error
					c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
					return err
				})
				return c, err
			},
		},
	}
	resp, err := client.Get("http://" + hostport(a) + "/")
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.Proto + " " + resp.Status, err
}

// printCounters shows the counters that are not zero.
func printCounters(p *rigtest.Proc) error {
	cs, err := p.CountersErr()
	if err != nil {
		return err
	}
	var names []string
	for k, v := range cs {
		if v != 0 && !strings.HasPrefix(k, "loop.") {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	fmt.Println("\nxstack counters (non-zero):")
	for _, k := range names {
		fmt.Printf("  %-48s %d\n", k, cs[k])
	}
	fmt.Printf("  %-48s %d (idle %d)\n", "loop.passes", cs["loop.passes"], cs["loop.idle_passes"])
	return nil
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "  " + strings.ReplaceAll(s, "\n", "\n  ") + "\n"
}
