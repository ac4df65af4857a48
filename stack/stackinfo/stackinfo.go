// Package stackinfo holds what a stack reports to the tools: its interface,
// sockets, routes, neighbour entries and capture state, in the form the
// control plane sends them (the JSON tags are the wire format of
// internal/ctl's protocol).
//
// It is a leaf package: it imports nothing of gVisor, nor of xstack, so
// that the tools, which talk to running stacks over the control socket,
// decode these types without linking a stack. Package stack fills them in
// (its Interface, Socket, Route, RouteLookup, Neighbor and PcapStatus are
// these types) on the lcore loop; they hold plain values only, and a value
// is owned by whoever holds it.
package stackinfo

import (
	"net/netip"
	"time"
)

// Interface describes a stack's interface.
type Interface struct {
	Name    string         `json:"name"`
	MAC     string         `json:"mac"`
	MTU     int            `json:"mtu"`
	MaxMTU  int            `json:"max_mtu"` // the largest MTU the stack accepts
	Up      bool           `json:"up"`
	Running bool           `json:"running"`
	Addrs   []netip.Prefix `json:"addrs"`

	// Link counters of the endpoint; the lcore adds the queue's packet and
	// byte counts.
	RxErrors  uint64 `json:"rx_errors"`  // frames too short for Ethernet
	RxDropped uint64 `json:"rx_dropped"` // frames for another MAC or of an unknown EtherType
	TxDropped uint64 `json:"tx_dropped"` // frames too large or refused by the queue
}

// Socket is one transport endpoint, as netstat shows it.
type Socket struct {
	Proto  string         `json:"proto"` // tcp, tcp6, udp, udp6
	Local  netip.AddrPort `json:"local"`
	Remote netip.AddrPort `json:"remote"`
	State  string         `json:"state"` // TCP state as netstat prints it (ESTABLISHED, TIME_WAIT, ...); "" for UDP
	RecvQ  int            `json:"recv_q"`
	SendQ  int            `json:"send_q"`
}

// Route is one entry of the routing table.
type Route struct {
	Dst     netip.Prefix `json:"dst"`
	Gateway netip.Addr   `json:"gateway,omitzero"` // invalid: on-link
	Iface   string       `json:"iface"`
	MTU     int          `json:"mtu,omitempty"`
}

// RouteLookup is how a stack would reach an address.
type RouteLookup struct {
	Dst     netip.Addr `json:"dst"`
	Source  netip.Addr `json:"source"`
	NextHop netip.Addr `json:"next_hop"`         // the gateway, or Dst itself on-link
	Gateway netip.Addr `json:"gateway,omitzero"` // invalid: on-link
	Route   Route      `json:"route"`            // the table entry used
	Iface   string     `json:"iface"`
}

// Neighbor is one ARP (IPv4) or NDP (IPv6) cache entry.
type Neighbor struct {
	Addr  netip.Addr `json:"addr"`
	MAC   string     `json:"mac"` // "" while incomplete
	State string     `json:"state"`
	Iface string     `json:"iface"`
	// Age is the time since the entry last changed.
	Age time.Duration `json:"age_ns"`
}

// PcapStatus describes the capture of a stack, running or last run.
type PcapStatus struct {
	Enabled bool   `json:"enabled"`
	Dir     string `json:"dir,omitempty"`
	Prefix  string `json:"prefix,omitempty"`
	Snaplen int    `json:"snaplen,omitempty"`
	Savelen int64  `json:"savelen,omitempty"`
	File    string `json:"file,omitempty"` // the file being written, or the last one
	Files   int    `json:"files"`          // files started by this capture
	Frames  uint64 `json:"frames"`         // frames captured
	Bytes   uint64 `json:"bytes"`          // bytes written to files, headers included
	Dropped uint64 `json:"dropped"`        // frames lost because the writer fell behind
	Error   string `json:"error,omitempty"`
}
