// Package soak holds the long-running tests of a stack process under churn:
// TestSoak runs examples/helloworld on a rig with a steady stream of short
// connections from the kernel peer, ten thousand idle long-lived ones, pcap
// switched on and off and the tools polling throughout, and checks that
// memory, goroutines, file descriptors, UMEM frames, gVisor's references
// and the connection table all come back; TestKillUnderLoad kills stacks
// with SIGKILL at random moments under load and checks that the kernel gets
// the NIC back each time.
//
// The soak runs for $XSTACK_SOAK (a Go duration), 30s when unset, so that
// the ordinary test run stays short; a long run is, for example:
//
//	XSTACK_SOAK=1h go test -timeout 2h -run TestSoak ./internal/soak
//
// Both need root (network namespaces, veth, XDP), as the end-to-end tests do.
package soak
