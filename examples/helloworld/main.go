// Command helloworld is F-Stack's helloworld on xstack: a non-blocking epoll
// HTTP/1.1 server that answers every request with the same page, on IPv4 and
// IPv6, honouring keep-alive and "Connection: close".
//
//	helloworld -c config.ini            serve on xstack (port 80)
//	helloworld -kernel -port 8080       the same server on the kernel's sockets
//
// The -kernel mode exists so that benchmarks compare the two stacks running
// exactly the same server logic.
package main

import (
	"flag"
	"log"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/core"
	"github.com/xstack/xstack/posix"
)

// tableSockets is one lcore's posix socket table as a sockets
// implementation.
type tableSockets struct{ t *posix.Sockets }

func (s tableSockets) Socket(d, t, p int) (int, error)     { return s.t.Socket(d, t, p) }
func (s tableSockets) SetsockoptInt(fd, l, o, v int) error { return s.t.SetsockoptInt(fd, l, o, v) }
func (s tableSockets) Bind(fd int, sa unix.Sockaddr) error { return s.t.Bind(fd, sa) }
func (s tableSockets) Listen(fd, n int) error              { return s.t.Listen(fd, n) }
func (s tableSockets) Read(fd int, p []byte) (int, error)  { return s.t.Read(fd, p) }
func (s tableSockets) Write(fd int, p []byte) (int, error) { return s.t.Write(fd, p) }
func (s tableSockets) Close(fd int) error                  { return s.t.CloseFD(fd) }
func (s tableSockets) EpollCreate1(f int) (int, error)     { return s.t.EpollCreate(f) }
func (s tableSockets) Accept4(fd, f int) (int, unix.Sockaddr, error) {
	return s.t.Accept4(fd, f)
}
func (s tableSockets) EpollCtl(ep, op, fd int, ev *unix.EpollEvent) error {
	return s.t.EpollCtl(ep, op, fd, ev)
}
func (s tableSockets) EpollWait(ep int, evs []unix.EpollEvent, ms int) (int, error) {
	return s.t.EpollWait(ep, evs, ms)
}

// kernelSockets is the Linux kernel's socket API.
type kernelSockets struct{}

func (kernelSockets) Socket(d, t, p int) (int, error)               { return unix.Socket(d, t, p) }
func (kernelSockets) SetsockoptInt(fd, l, o, v int) error           { return unix.SetsockoptInt(fd, l, o, v) }
func (kernelSockets) Bind(fd int, sa unix.Sockaddr) error           { return unix.Bind(fd, sa) }
func (kernelSockets) Listen(fd, n int) error                        { return unix.Listen(fd, n) }
func (kernelSockets) Accept4(fd, f int) (int, unix.Sockaddr, error) { return unix.Accept4(fd, f) }
func (kernelSockets) Read(fd int, p []byte) (int, error)            { return unix.Read(fd, p) }
func (kernelSockets) Write(fd int, p []byte) (int, error)           { return unix.Write(fd, p) }
func (kernelSockets) Close(fd int) error                            { return unix.Close(fd) }
func (kernelSockets) EpollCreate1(f int) (int, error)               { return unix.EpollCreate1(f) }
func (kernelSockets) EpollCtl(ep, op, fd int, ev *unix.EpollEvent) error {
	return unix.EpollCtl(ep, op, fd, ev)
}
func (kernelSockets) EpollWait(ep int, evs []unix.EpollEvent, ms int) (int, error) {
	return unix.EpollWait(ep, evs, ms)
}

func main() {
	var opts posix.Options
	opts.RegisterFlags(flag.CommandLine)
	kernel := flag.Bool("kernel", false, "serve on the kernel's sockets instead of xstack (for comparisons)")
	cpu := flag.Int("cpu", -1, "with -kernel: pin the server to this CPU")
	port := flag.Int("port", 80, "TCP port to serve on")
	backlog := flag.Int("backlog", 4096, "listen backlog")
	headerTimeout := flag.Duration("header-timeout", 10*time.Second,
		"close a connection that has not sent a whole request within this time of its first byte (or of being accepted); 0 = never")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("helloworld: ")

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if *kernel {
		runtime.GOMAXPROCS(1)
		if *cpu >= 0 {
			if err := core.PinProcess(*cpu); err != nil {
				log.Fatal(err)
			}
		}
		srv, err := newServer(kernelSockets{}, 100)
		if err == nil {
			srv.headerTimeout = *headerTimeout
			err = srv.listenAll(*port, *backlog)
		}
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("serving on port %d (IPv4 and IPv6) with the kernel stack", *port)
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
		for {
			select {
			case <-stop:
				log.Printf("stopped after %d requests (%d connections timed out)", srv.requests, srv.timedOut)
				return
			default:
			}
			if err := srv.poll(); err != nil {
				log.Fatal(err)
			}
		}
	}

	// One server per lcore this process runs: one in process mode, every
	// lcore of lcore_mask in thread mode.
	tables, err := posix.InitLcores(opts)
	if err != nil {
		log.Fatal(err)
	}
	servers := make([]*server, len(tables))
	loops := make([]func() error, len(tables))
	for i, t := range tables {
		srv, err := newServer(tableSockets{t}, 0)
		if err == nil {
			srv.headerTimeout = *headerTimeout
			err = srv.listenAll(*port, *backlog)
		}
		if err != nil {
			posix.Teardown()
			log.Fatal(err)
		}
		servers[i], loops[i] = srv, srv.poll
	}
	log.Printf("serving on port %d (IPv4 and IPv6) with xstack, %d lcore(s) in this process", *port, len(tables))
	if err := posix.RunLcores(loops); err != nil {
		log.Fatal(err)
	}
	var requests, timedOut uint64
	for _, s := range servers {
		requests += s.requests
		timedOut += s.timedOut
	}
	log.Printf("stopped after %d requests (%d connections timed out)", requests, timedOut)
}
