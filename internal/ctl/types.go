package ctl

import (
	"github.com/xstack/xstack/stack/stackinfo"
)

// Info identifies a process.
type Info struct {
	ProcID int    `json:"proc_id"`
	Lcore  int    `json:"lcore"`
	Pid    int    `json:"pid"`
	Ifname string `json:"ifname"`
	Queue  int    `json:"queue"`
}

// Stats is the snapshot top samples.
type Stats struct {
	Lcore      int    `json:"lcore"`
	TimeNs     int64  `json:"time_ns"` // when it was taken (Unix ns)
	Passes     uint64 `json:"passes"`
	IdlePasses uint64 `json:"idle_passes"`
	// BusyNs and IdleNs are the loop's time in passes that did work and
	// in idle passes (core.LoopStats); busy % over an interval is
	// ΔBusyNs / (ΔBusyNs + ΔIdleNs).
	BusyNs uint64 `json:"busy_ns"`
	IdleNs uint64 `json:"idle_ns"`
	// LongPasses counts the working passes of at least 100 µs, 1 ms and
	// 10 ms (core.LoopStats.LongPasses): the stalls a latency tail is
	// made of.
	LongPasses [3]uint64 `json:"long_passes"`
	// UserNs and SysNs are the CPU time the whole process has used in
	// user and kernel mode (getrusage): in thread mode every lcore of the
	// process reports the same figures.
	UserNs    uint64 `json:"user_ns"`
	SysNs     uint64 `json:"sys_ns"`
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
	Conns     int    `json:"conns"` // TCP connections not in LISTEN or CLOSE
}

// Interface is the stack's interface with the queue's counters.
type Interface struct {
	stackinfo.Interface
	RxPackets uint64 `json:"rx_packets"`
	RxBytes   uint64 `json:"rx_bytes"`
	TxPackets uint64 `json:"tx_packets"`
	TxBytes   uint64 `json:"tx_bytes"`
}

// IfconfigArgs changes the interface; zero fields change nothing. They are
// applied in the order add, delete, mtu, up/down.
type IfconfigArgs struct {
	AddAddr string `json:"add_addr,omitempty"` // address/prefix length
	DelAddr string `json:"del_addr,omitempty"` // address
	MTU     int    `json:"mtu,omitempty"`
	Up      *bool  `json:"up,omitempty"`
}

// SysctlGetArgs names the sysctls to read; none means all.
type SysctlGetArgs struct {
	Names []string `json:"names,omitempty"`
}

// SysctlValue is one sysctl.
type SysctlValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// RouteArgs names a route: Dst is a prefix (an address alone is a host
// route), Gateway an address or empty for an on-link route.
type RouteArgs struct {
	Dst     string `json:"dst"`
	Gateway string `json:"gateway,omitempty"`
}

// NeighArgs selects the ARP (IPv6 false) or NDP table for neigh.show, and
// an entry for neigh.add (Addr, MAC) and neigh.delete (Addr).
type NeighArgs struct {
	IPv6 bool   `json:"ipv6,omitempty"`
	Addr string `json:"addr,omitempty"`
	MAC  string `json:"mac,omitempty"`
}

// PcapArgs overrides the [pcap] settings for pcap.on; zero = config.ini's.
type PcapArgs struct {
	Snaplen  int    `json:"snaplen,omitempty"`
	Savelen  int64  `json:"savelen,omitempty"`
	Savepath string `json:"savepath,omitempty"`
}
