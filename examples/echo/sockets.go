package main

import "github.com/xstack/xstack/examples/internal/sockapi"

// The server is written against sockapi.Sockets, which xstack's posix
// package and the kernel both provide, so the same server logic runs on
// either stack.
type (
	sockets       = sockapi.Sockets
	tableSockets  = sockapi.Table
	kernelSockets = sockapi.Kernel
)
