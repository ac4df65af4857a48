// Command nethttp serves a Go net/http handler on xstack. The lcore loop
// runs with no callback (posix.Run(nil)) while net/http's goroutines use
// the stack through posix's net.Listener and net.Conn adapters: the same
// http.Server a program would run on the kernel's sockets, unchanged.
//
//	nethttp -c config.ini [-port 80]
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/xstack/xstack/posix"
)

func main() {
	var opts posix.Options
	opts.RegisterFlags(flag.CommandLine)
	port := flag.Int("port", 80, "TCP port (IPv4 and IPv6)")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("nethttp: ")
	if err := posix.InitWith(opts); err != nil {
		log.Fatal(err)
	}
	// "tcp" with no host: one dual-stack socket for IPv4 and IPv6.
	ln, err := posix.NetListen("tcp", fmt.Sprintf(":%d", *port))
	if err != nil {
		posix.Teardown()
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "Hello, %s, from net/http on xstack\n", r.RemoteAddr)
	})
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Body.Read(buf)
			w.Write(buf[:n])
			if err != nil {
				return
			}
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Printf("serving on port %d (net/http over xstack)", *port)

	// The loop runs until SIGINT/SIGTERM; Run then closes every socket,
	// which ends Serve with net.ErrClosed.
	if err := posix.Run(nil); err != nil {
		log.Fatal(err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		log.Fatal(err)
	}
}
