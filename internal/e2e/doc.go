// Package e2e holds the end-to-end tests: xstack programs from examples/
// run on a rig, and the Linux kernel in the peer namespace talks to them
// with its own TCP/IP stack (Go's net package, ping, raw AF_PACKET frames).
package e2e
