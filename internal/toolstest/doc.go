// Package toolstest holds the end-to-end tests of the control plane and
// the tools (ifconfig, sysctl, netstat, route, arp, ndp, top, pcap): each
// test runs examples/helloworld on a rig of its own with its control socket
// in a temporary run directory, drives the tools built from tools/ against
// it, and checks what they report and change against what the Linux kernel
// in the peer namespace observes.
package toolstest
