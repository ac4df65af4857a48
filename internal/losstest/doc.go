// Package losstest holds root-only end-to-end tests of xstack on a lossy
// link: a rig whose peer veth end drops a share of the TCP and UDP frames
// both ways (internal/lossy; ARP and neighbour discovery always pass),
// examples/echo on xstack, and the same transfers against examples/echo
// -kernel on the stack side's kernel under the same dropper, as the
// oracle. TSO and GSO are off on both veth ends, so that every dropped
// frame is one MTU-sized segment for both stacks.
//
// At 1% and 5% loss each way, a 100 MiB echo transfer (100 MiB each way
// at once, SHA-256 checked) and 10,000 request/response exchanges (100
// connections × 100) run against both targets. xstack (gVisor's TCP)
// recovers from loss much more slowly than the kernel, and at 20% both
// stacks' retransmission timers back off to tens of seconds now and then,
// so by default the 20% case moves 256 KiB and makes 500 exchanges (100
// connections × 5) to keep the package within a few minutes;
// XSTACK_LOSS_FULL=1 runs it at the full 100 MiB and 10,000 exchanges
// (hours for xstack, beyond go test's default timeout: give -timeout).
//
// The echo transfers run only with XSTACK_LOSS_ECHO=1: under loss they can
// deadlock in gVisor's TCP (about one 100 MiB transfer in three at 1% or
// 5%). The echo server stops reading while its own writes are blocked, so
// its receive buffer fills; gVisor advertises the last few free bytes
// (112 in the captured case), does not take the peer's segment that fills
// them, and from then on every segment of the peer starts beyond its
// receive window: the peer's pure ACKs at its snd_nxt, and its
// zero-window probes, which carry data. gVisor drops such segments whole,
// their acknowledgement field included, where RFC 9293 3.10.7.4 still
// processes the ACK of a segment refused for a zero window. The peer has
// acknowledged everything xstack sent, xstack never learns it, its send
// buffer stays full, and the application never reads again. The exchanges
// never fill a buffer and run by default.
//
// A transfer fails as hung when no byte moves for 150 s, longer than the
// longest retransmission timeout (120 s); the failure shows both ends'
// view of the stuck connection (ss on the peer, tools/netstat on xstack).
package losstest
