// Command echo serves the classic test services on xstack, in the F-Stack
// style: non-blocking sockets and one epoll instance, polled from the lcore
// loop.
//
//   - echo (RFC 862), TCP and UDP, port 7: every byte a TCP client sends
//     comes back on the same connection; every datagram goes back to its
//     sender.
//   - discard (RFC 863), TCP, port 9: every byte is read and thrown away.
//   - chargen (RFC 864), TCP, port 19: RFC 864's pattern of 72-character
//     lines, written as fast as the socket takes it until the client
//     closes; what the client sends is thrown away.
//
// Usage:
//
//	echo -c config.ini                   serve on xstack
//	echo -kernel -cpu 0                  the same server on the kernel's sockets
//
// The -kernel mode exists so that benchmarks (tools/bench) compare the two
// stacks running exactly the same server logic. A port of 0 turns its
// service off.
package main

import (
	"flag"
	"fmt"
	"log"
	"strings"

	"github.com/xstack/xstack/examples/internal/sockapi"
	"github.com/xstack/xstack/posix"
)

func main() {
	var flags sockapi.Flags
	flags.Register(flag.CommandLine)
	port := flag.Int("port", 7, "echo: TCP and UDP port")
	discardPort := flag.Int("discard-port", 9, "discard: TCP port")
	chargenPort := flag.Int("chargen-port", 19, "chargen: TCP port")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("echo: ")

	if flags.Kernel {
		if err := sockapi.PinKernel(flags.CPU); err != nil {
			log.Fatal(err)
		}
		srv, err := newServer(kernelSockets{}, 100)
		if err == nil {
			err = srv.listenAll(*port, *discardPort, *chargenPort, flags.Backlog)
		}
		if err != nil {
			log.Fatal(err)
		}
		log.Printf("echoing: %s (IPv4 and IPv6) with the kernel stack", services(*port, *discardPort, *chargenPort))
		if err := sockapi.RunKernel(srv.poll); err != nil {
			log.Fatal(err)
		}
		return
	}

	if err := posix.InitWith(flags.Posix); err != nil {
		log.Fatal(err)
	}
	srv, err := newServer(tableSockets{Sockets: posix.Default()}, 0)
	if err == nil {
		err = srv.listenAll(*port, *discardPort, *chargenPort, flags.Backlog)
	}
	if err != nil {
		posix.Teardown()
		log.Fatal(err)
	}
	log.Printf("echoing: %s (IPv4 and IPv6) with xstack", services(*port, *discardPort, *chargenPort))
	if err := posix.Run(srv.poll); err != nil {
		log.Fatal(err)
	}
}

// listenAll opens every service whose port is not 0.
func (s *server) listenAll(echoPort, discardPort, chargenPort, backlog int) error {
	if echoPort != 0 {
		if err := s.listenTCP(echoPort, echoService, backlog); err != nil {
			return err
		}
		if err := s.listenUDP(echoPort); err != nil {
			return err
		}
	}
	if discardPort != 0 {
		if err := s.listenTCP(discardPort, discardService, backlog); err != nil {
			return err
		}
	}
	if chargenPort != 0 {
		if err := s.listenTCP(chargenPort, chargenService, backlog); err != nil {
			return err
		}
	}
	return nil
}

// services describes the services that are on, for the ready line.
func services(echoPort, discardPort, chargenPort int) string {
	var on []string
	if echoPort != 0 {
		on = append(on, fmt.Sprintf("echo on TCP and UDP port %d", echoPort))
	}
	if discardPort != 0 {
		on = append(on, fmt.Sprintf("discard on TCP port %d", discardPort))
	}
	if chargenPort != 0 {
		on = append(on, fmt.Sprintf("chargen on TCP port %d", chargenPort))
	}
	if len(on) == 0 {
		return "nothing"
	}
	return strings.Join(on, ", ")
}
