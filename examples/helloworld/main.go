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
	"fmt"
	"log"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/core"
	"github.com/xstack/xstack/posix"
)

// xstackSockets is the posix package as a sockets implementation.
type xstackSockets struct{}

func (xstackSockets) Socket(d, t, p int) (int, error)               { return posix.Socket(d, t, p) }
func (xstackSockets) SetsockoptInt(fd, l, o, v int) error           { return posix.SetsockoptInt(fd, l, o, v) }
func (xstackSockets) Bind(fd int, sa unix.Sockaddr) error           { return posix.Bind(fd, sa) }
func (xstackSockets) Listen(fd, n int) error                        { return posix.Listen(fd, n) }
func (xstackSockets) Accept4(fd, f int) (int, unix.Sockaddr, error) { return posix.Accept4(fd, f) }
func (xstackSockets) Read(fd int, p []byte) (int, error)            { return posix.Read(fd, p) }
func (xstackSockets) Write(fd int, p []byte) (int, error)           { return posix.Write(fd, p) }
func (xstackSockets) Close(fd int) error                            { return posix.Close(fd) }
func (xstackSockets) EpollCreate1(f int) (int, error)               { return posix.EpollCreate(f) }
func (xstackSockets) EpollCtl(ep, op, fd int, ev *unix.EpollEvent) error {
	return posix.EpollCtl(ep, op, fd, ev)
}
func (xstackSockets) EpollWait(ep int, evs []unix.EpollEvent, ms int) (int, error) {
	return posix.EpollWait(ep, evs, ms)
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
	var (
		srv *server
		err error
	)
	if *kernel {
		runtime.GOMAXPROCS(1)
		if *cpu >= 0 {
			if err := core.PinProcess(*cpu); err != nil {
				log.Fatal(err)
			}
		}
		srv, err = newServer(kernelSockets{}, 100)
	} else {
		if err := posix.InitWith(opts); err != nil {
			log.Fatal(err)
		}
		srv, err = newServer(xstackSockets{}, 0)
	}
	if err != nil {
		fail(*kernel, err)
	}
	if err := srv.listen(&unix.SockaddrInet4{Port: *port}, *backlog); err != nil {
		fail(*kernel, fmt.Errorf("listen on IPv4 port %d: %w", *port, err))
	}
	if err := srv.listen(&unix.SockaddrInet6{Port: *port}, *backlog); err != nil {
		fail(*kernel, fmt.Errorf("listen on IPv6 port %d: %w", *port, err))
	}
	log.Printf("serving on port %d (IPv4 and IPv6) with %s", *port, map[bool]string{true: "the kernel stack", false: "xstack"}[*kernel])

	if *kernel {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
		for {
			select {
			case <-stop:
				log.Printf("stopped after %d requests", srv.requests)
				return
			default:
			}
			if err := srv.poll(); err != nil {
				log.Fatal(err)
			}
		}
	}
	if err := posix.Run(srv.poll); err != nil {
		log.Fatal(err)
	}
	log.Printf("stopped after %d requests", srv.requests)
}

func fail(kernel bool, err error) {
	if !kernel {
		posix.Teardown()
	}
	log.Fatal(err)
}
