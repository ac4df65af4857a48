// Command launch starts an xstack program once per lcore of its
// config.ini (process mode, F-Stack's model): proc-id 0 as the primary,
// which attaches the XDP program, and the others as secondaries, which join
// it. It forwards SIGINT, SIGTERM and SIGUSR1 (print counters) to all of
// them and exits when they have all exited, with a failure status if any of
// them failed.
//
//	launch -c config.ini -- ./helloworld [flags]
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync"
	"syscall"

	"github.com/xstack/xstack/core"
)

func main() {
	conf := flag.String("c", "config.ini", "config file; passed on to every process")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: launch [-c config.ini] -- program [flags]\n\n"+
			"Starts program once per lcore of lcore_mask with -c, -p <proc-id> and -t primary|secondary.\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		flag.Usage()
		os.Exit(2)
	}
	c, err := core.LoadConfig(*conf)
	if err != nil {
		fmt.Fprintln(os.Stderr, "launch:", err)
		os.Exit(1)
	}
	if c.Mode != core.ModeProcess {
		fmt.Fprintf(os.Stderr, "launch: %s: mode=%s runs every lcore in one process; start the program directly\n", *conf, c.Mode)
		os.Exit(1)
	}
	n := len(c.Lcores())
	procs := make([]*exec.Cmd, 0, n)
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	var mu sync.Mutex
	go func() {
		for s := range sig {
			mu.Lock()
			for _, p := range procs {
				p.Process.Signal(s)
			}
			mu.Unlock()
		}
	}()
	failed := false
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		typ := "secondary"
		if i == 0 {
			typ = "primary"
		}
		cmd := exec.Command(args[0], append(args[1:], "-c", *conf, "-p", strconv.Itoa(i), "-t", typ)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		mu.Lock()
		err := cmd.Start()
		if err == nil {
			procs = append(procs, cmd)
		}
		mu.Unlock()
		if err != nil {
			fmt.Fprintf(os.Stderr, "launch: proc-id %d: %v\n", i, err)
			failed = true
			break
		}
		wg.Add(1)
		go func(i int, cmd *exec.Cmd) {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				fmt.Fprintf(os.Stderr, "launch: proc-id %d (pid %d): %v\n", i, cmd.Process.Pid, err)
				mu.Lock()
				failed = true
				mu.Unlock()
			}
		}(i, cmd)
	}
	if failed {
		mu.Lock()
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
		}
		mu.Unlock()
	}
	wg.Wait()
	if failed {
		os.Exit(1)
	}
}
