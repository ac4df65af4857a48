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
// The echo transfers are the ones that once wedged xstack: the echo server
// stops reading while its own writes are blocked, its receive buffer fills,
// and under loss gVisor ended up behind a zero window dropping every
// segment of the peer, acknowledgements included (about one 100 MiB
// transfer in three at 5%). The link endpoint now hands gVisor those
// acknowledgements (stack/zerowindow.go); each xstack transfer logs how
// many it made (link.zero_window_acks).
//
// A transfer fails as hung when no byte moves for 150 s, longer than the
// longest retransmission timeout (120 s), or for 10 minutes at 20%, where
// runs of failed retransmissions back the timer off for minutes in all
// (stallTimeoutHeavy). The failure shows both ends' view of the stuck
// connection (ss on the peer, tools/netstat on xstack), and the writer's
// error when the writer stopped first.
package losstest
