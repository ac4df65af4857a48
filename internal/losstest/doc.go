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
// connections × 100) run against both targets, with both stacks' default
// timers. At 20% each way a retransmission and its acknowledgment both get
// through only two times in three, and runs of failures back the
// retransmission timer off from its 200 ms minimum for seconds at a time:
// 1 MiB echoed takes xstack 160 s and the kernel 84 s. So at 20% both
// stacks get a least retransmission timeout of 20 ms (xstack's
// net.inet.tcp.rexmit_min, Linux's tcp_rto_min_us), as a data centre sets
// it for round trips like this rig's (about 0.5 ms), and 1 MiB takes each
// about 20 s. Even so 100 MiB takes over half an hour, so by default the
// 20% case moves 256 KiB and makes 500 exchanges (100 connections × 5);
// XSTACK_LOSS_FULL=1 runs it at the full 100 MiB and 10,000 exchanges
// (give -timeout).
//
// The echo transfers are the ones that once wedged xstack: the echo server
// stops reading while its own writes are blocked, its receive buffer fills,
// and under loss gVisor ended up behind a zero window dropping every
// segment of the peer, acknowledgements included (about one 100 MiB
// transfer in three at 5%). The link endpoint now hands gVisor those
// acknowledgements (stack/zerowindow.go); each xstack transfer logs how
// many it made (link.zero_window_acks).
//
// TestEchoUnderLossGSO runs smaller echo transfers (8 MiB at 1%, 2 MiB at
// 5%) against xstack with net.inet.tcp.gso=1, so that what the link
// endpoint cuts from gVisor's large packets is proved under loss too; GRO
// is on in every test (the stack's default).
//
// A transfer fails as hung when no byte moves for 150 s, longer than the
// longest retransmission timeout (120 s), or for 10 minutes at 20%, where
// runs of failed retransmissions back the timer off for minutes in all
// (stallTimeoutHeavy). The failure shows both ends' view of the stuck
// connection (ss on the peer, tools/netstat on xstack), and the writer's
// error when the writer stopped first.
package losstest
