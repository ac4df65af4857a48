// Package difftest is the differential suite for posix: one table of
// scenarios (socket calls and what can be observed of them: return values,
// errnos, bytes, epoll and poll events, and what the peer sees, such as a
// FIN or a RST) runs twice on a rig, once on the Linux kernel's sockets in
// the rig's stack namespace and once on posix over an xstack lcore running
// in the test process, with the same kernel peer on the other side of the
// veth. Every difference fails the test with both transcripts shown, except
// where the table says xstack differs by design and why.
//
// The package holds only tests; it needs root (namespaces, veth, XDP).
package difftest
