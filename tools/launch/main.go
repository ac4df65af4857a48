// Command launch starts an xstack program once per lcore of its
// config.ini (process mode, F-Stack's model): proc-id 0 as the primary,
// which attaches the XDP program, and the others as secondaries, which join
// it. It forwards SIGINT, SIGTERM, SIGUSR1 (print counters), SIGHUP and
// SIGQUIT to all of them and exits when they have all exited, with a
// failure status if any of them failed.
//
// Each program runs in a process group of its own, so that a signal the
// terminal sends to the foreground group (^C, ^\, a hangup) reaches it once,
// through launch, and not a second time from the terminal: a stack takes a
// second SIGINT as "cut the FIN wait short" (core.Shutdown).
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
	"sync/atomic"
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
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGHUP, syscall.SIGQUIT)
	var mu sync.Mutex // guards procs against the forwarding goroutine
	go func() {
		for s := range sig {
			mu.Lock()
			for _, p := range procs {
				p.Process.Signal(s)
			}
			mu.Unlock()
		}
	}()
	var (
		failed      atomic.Bool // a program failed; set by the goroutines that wait for them
		startFailed bool        // a program did not start: stop the others
		wg          sync.WaitGroup
	)
	for i := 0; i < n; i++ {
		typ := "secondary"
		if i == 0 {
			typ = "primary"
		}
		cmd := exec.Command(args[0], append(args[1:], "-c", *conf, "-p", strconv.Itoa(i), "-t", typ)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		mu.Lock()
		err := cmd.Start()
		if err == nil {
			procs = append(procs, cmd)
		}
		mu.Unlock()
		if err != nil {
			fmt.Fprintf(os.Stderr, "launch: proc-id %d: %v\n", i, err)
			startFailed = true
			break
		}
		wg.Add(1)
		go func(i int, cmd *exec.Cmd) {
			defer wg.Done()
			if err := cmd.Wait(); err != nil {
				fmt.Fprintf(os.Stderr, "launch: proc-id %d (pid %d): %v\n", i, cmd.Process.Pid, err)
				failed.Store(true)
			}
		}(i, cmd)
	}
	if startFailed {
		mu.Lock()
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
		}
		mu.Unlock()
	}
	wg.Wait()
	if startFailed || failed.Load() {
		os.Exit(1)
	}
}
