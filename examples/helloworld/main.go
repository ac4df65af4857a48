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
	"runtime/pprof"
	"time"

	"github.com/xstack/xstack/examples/internal/sockapi"
	"github.com/xstack/xstack/posix"
)

// The server is written against sockapi.Sockets, which xstack's posix
// package and the kernel both provide, so the same server logic runs on
// either stack.
type (
	sockets       = sockapi.Sockets
	tableSockets  = sockapi.Table
	kernelSockets = sockapi.Kernel
)

func main() {
	var flags sockapi.Flags
	flags.Register(flag.CommandLine)
	port := flag.Int("port", 80, "TCP port to serve on")
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
	if flags.Kernel {
		if err := sockapi.PinKernel(flags.CPU); err != nil {
			log.Fatal(err)
		}
		srv, err := newServer(kernelSockets{}, 100)
		if err == nil {
			srv.headerTimeout = *headerTimeout
			err = srv.listenAll(*port, flags.Backlog)
		}
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("serving on port %d (IPv4 and IPv6) with the kernel stack", *port)
		if err := sockapi.RunKernel(srv.poll); err != nil {
			log.Fatal(err)
		}
		log.Printf("stopped after %d requests (%d connections timed out)", srv.requests, srv.timedOut)
		return
	}

	// One server per lcore this process runs: one in process mode, every
	// lcore of lcore_mask in thread mode.
	tables, err := posix.InitLcores(flags.Posix)
	if err != nil {
		log.Fatal(err)
	}
	servers := make([]*server, len(tables))
	loops := make([]func() error, len(tables))
	for i, t := range tables {
		srv, err := newServer(tableSockets{Sockets: t}, 0)
		if err == nil {
			srv.headerTimeout = *headerTimeout
			err = srv.listenAll(*port, flags.Backlog)
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
