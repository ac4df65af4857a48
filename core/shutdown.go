package core

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// Graceful shutdown: what a stack process does between SIGTERM (or SIGINT)
// and its exit, once its loops have stopped.
//
//  1. With shutdown=rst every TCP connection is reset (RST) at once.
//  2. The application's sockets are closed, listeners first in effect: no
//     frame is processed between the loops' stop and the close, so a SYN
//     that arrives from then on finds no listener and is answered with RST
//     (connection refused), and the connections a listener had not handed
//     to the application yet are reset, as Linux does. With shutdown=fin a
//     connection is closed as close(2) closes it: its queued data, then a
//     FIN (an RST when data the application never read is pending).
//  3. The loops run on without the application, so that the data, FINs,
//     retransmits and the peers' FINs flow, until no connection is left in
//     a state that still needs its peer (every one is in TIME-WAIT or
//     closed) or shutdown_timeout_ms has passed. A second SIGTERM or SIGINT
//     ends the wait early. The control plane keeps answering the tools.
//  4. Lcore.Close then resets what is left (gVisor's Stack.Close aborts
//     every endpoint), flushes those frames, stops the capture (the pcap
//     files are complete), closes the queues and detaches the XDP program
//     (in process mode, with the last lcore process).

// Shutdown ends the connections of ls, the lcores of this process, as
// [xstack] shutdown and shutdown_timeout_ms say, and returns when they are
// done or the timeout has passed; the caller then closes each lcore.
// closeSockets closes every socket of the application (posix's tables). The
// loops must have stopped; Shutdown runs their passes on the calling
// goroutine.
func Shutdown(ls []*Lcore, closeSockets func()) {
	if len(ls) == 0 {
		if closeSockets != nil {
			closeSockets()
		}
		return
	}
	conf := ls[0].Conf
	start := time.Now()
	if conf.Shutdown == ShutdownRST {
		for _, l := range ls {
			if n := l.resetConnections(); n > 0 {
				l.log.Printf("lcore %d: shutdown: %d connection(s) reset", l.ID, n)
			}
		}
	}
	if closeSockets != nil {
		closeSockets()
	}
	// A second signal cuts the wait short.
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)

	timeout := conf.ShutdownTimeout
	if conf.Shutdown == ShutdownRST {
		// The RSTs only need to leave.
		timeout = min(timeout, shutdownFlush)
	}
	deadline := start.Add(timeout)
	open := 0
	lastCheck := time.Time{}
	failed := make([]bool, len(ls)) // a queue that failed is not polled again
	for {
		did := false
		for i, l := range ls {
			if l.Loop == nil || failed[i] {
				continue
			}
			d, err := l.Loop.Pass(nil)
			if err != nil {
				l.log.Printf("lcore %d: shutdown: %v", l.ID, err)
				failed[i] = true
				continue
			}
			did = did || d
		}
		now := time.Now()
		if now.Sub(lastCheck) >= shutdownCheck {
			// Counting walks every endpoint: not on every pass.
			lastCheck = now
			open = 0
			for _, l := range ls {
				open += l.openConnections()
			}
			if open == 0 && now.Sub(start) >= shutdownFlush {
				break
			}
		}
		if now.After(deadline) {
			break
		}
		select {
		case <-sigc:
			deadline = now
		default:
		}
		if !did {
			time.Sleep(100 * time.Microsecond)
		}
	}
	ls[0].log.Printf("shutdown (%s): %d connection(s) still open after %v", conf.Shutdown, open, time.Since(start).Round(time.Millisecond))
}

const (
	// shutdownFlush is how long the loops run at least, so that the last
	// frames (the final ACKs, the RSTs) leave even when no connection
	// remains to wait for.
	shutdownFlush = 20 * time.Millisecond
	// shutdownCheck is how often the connections are counted.
	shutdownCheck = 5 * time.Millisecond
)

// openConnections counts the lcore's TCP endpoints that still need their
// peer: every state but TIME-WAIT, closed, listening and the states of a
// socket that never connected.
func (l *Lcore) openConnections() int {
	return l.eachTCP(func(ep *tcp.Endpoint) bool {
		switch ep.EndpointState() {
		case tcp.StateConnecting, tcp.StateSynSent, tcp.StateSynRecv, tcp.StateEstablished,
			tcp.StateFinWait1, tcp.StateFinWait2, tcp.StateCloseWait, tcp.StateClosing, tcp.StateLastAck:
			return true
		}
		return false
	})
}

// resetConnections resets every TCP connection of the lcore that has a
// peer (RST), as close(2) does with SO_LINGER and a zero timeout, and
// returns how many it reset.
func (l *Lcore) resetConnections() int {
	return l.eachTCP(func(ep *tcp.Endpoint) bool {
		switch ep.EndpointState() {
		case tcp.StateSynRecv, tcp.StateEstablished, tcp.StateFinWait1, tcp.StateFinWait2,
			tcp.StateCloseWait, tcp.StateClosing, tcp.StateLastAck:
			ep.Abort()
			return true
		}
		return false
	})
}

// eachTCP calls fn with every TCP endpoint of the lcore's stack and
// returns how many times fn returned true.
func (l *Lcore) eachTCP(fn func(*tcp.Endpoint) bool) int {
	if l.Stack == nil {
		return 0
	}
	n := 0
	for _, te := range l.Stack.Gvisor().RegisteredEndpoints() {
		if ep, ok := te.(*tcp.Endpoint); ok && fn(ep) {
			n++
		}
	}
	return n
}
