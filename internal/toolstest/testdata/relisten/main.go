// Command relisten is a test server for TestSysctlRecvspace: it answers
// every read with a small HTTP response on port 80, and opens one more
// listener, on port 81, on SIGHUP. Socket buffer sysctls apply to sockets
// created after them (connections inherit their listener's buffers, as
// FreeBSD's do), so the test needs a listener made after its sysctl -w.
package main

import (
	"errors"
	"flag"
	"log"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/posix"
)

const resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

func listen(port int) int {
	fd, err := posix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		log.Fatal(err)
	}
	if err := posix.Bind(fd, &unix.SockaddrInet4{Port: port}); err != nil {
		log.Fatal(err)
	}
	if err := posix.Listen(fd, 128); err != nil {
		log.Fatal(err)
	}
	log.Printf("listening on port %d", port)
	return fd
}

func main() {
	var opts posix.Options
	opts.RegisterFlags(flag.CommandLine)
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("relisten: ")
	if err := posix.InitWith(opts); err != nil {
		log.Fatal(err)
	}
	var hup atomic.Bool
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGHUP)
	go func() {
		for range sigc {
			hup.Store(true)
		}
	}()
	listeners := []int{listen(80)}
	log.Printf("serving")
	var conns []int
	buf := make([]byte, 4096)
	err := posix.Run(func() error {
		if hup.Swap(false) {
			listeners = append(listeners, listen(81))
		}
		for _, l := range listeners {
			if fd, _, err := posix.Accept4(l, unix.SOCK_NONBLOCK); err == nil {
				conns = append(conns, fd)
			}
		}
		for i := 0; i < len(conns); i++ {
			n, err := posix.Read(conns[i], buf)
			switch {
			case n > 0:
				posix.Write(conns[i], []byte(resp))
			case errors.Is(err, unix.EAGAIN):
			default:
				posix.Close(conns[i])
				conns = append(conns[:i], conns[i+1:]...)
				i--
			}
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
