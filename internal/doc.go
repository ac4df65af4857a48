// Package internal holds no code: its subpackages are what xstack's
// programs, tools and tests share without making it API, and its end-to-end
// suites. None of them holds protocol logic (that is gVisor's, in stack) or
// the data path (nic, stack, core, posix).
//
// Used by the product as well as by tests:
//
//   - ctl: the control protocol between lcore processes and the tools (its
//     messages, the run directory, the client); core serves it.
//   - netns: running code inside a named network namespace, on a locked
//     thread.
//   - affinity: pinning processes and threads to CPUs.
//
// Rigs and test helpers:
//
//   - rig: two network namespaces joined by a veth pair, the rig every
//     privileged test and benchmark runs on; rigtest gives a test one of its
//     own (removed in t.Cleanup, a failure instead of a skip under
//     XSTACK_REQUIRE_ROOT=1), builds and runs the programs, and reads back
//     capture files.
//   - lossy: BPF programs that drop a share of the frames on an interface,
//     both ways.
//   - blast: a sendmmsg(2) load generator on AF_PACKET.
//   - servertest: checks that every example server must pass alike, on an
//     in-memory stack pair.
//   - testframe: Ethernet, IPv4, IPv6, TCP, UDP, ICMP and ARP frames built
//     with gVisor's encoders, for the tests of the parsers, the classifier
//     and the receive path.
//   - fuzzcorpus: keeps the committed fuzz seed corpora in step with the
//     code that builds them.
//
// Test suites, run against the Linux kernel in the rig's peer namespace:
// e2e (the examples end to end), toolstest (the tools and the control
// plane), difftest (posix against the kernel's sockets, scenario by
// scenario), attack (SYN floods, slow clients, exhaustion), losstest
// (injected loss) and soak (churn, SIGKILL under load).
package internal
