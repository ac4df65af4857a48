package stack

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// The sysctls: FreeBSD-style dotted names for the stack's knobs, as
// config.ini's [sysctl] section, the control plane's sysctl.get and
// sysctl.set and tools/sysctl spell them. sysctlTable below is the one list
// of them. Each entry says which values the name takes (config validation
// and the tools check with it, so its messages are the "expected ..." of
// config errors), how the running stack reads it back and applies it, and
// the lines of the configuration reference that document it (README's
// [sysctl] block and core.Config's doc; a test holds both to the table).
//
// A value that passes the check may still be one gVisor cannot honour
// (syncookies=0, say): the entry's set refuses it with the reason, which
// config.ini reports at start-up with the line of the key.
//
// Some sysctls are per-socket options, which gVisor keeps per endpoint
// rather than per stack: their entries keep the value in the stack's
// SocketDefaults, which the socket layer reads for every TCP socket it
// makes (posix.Sockets.SetSocketDefaults) and, for mem_limit, at every
// buffer reservation.

// ErrUnknownSysctl is wrapped by the errors about a name that is not a
// sysctl.
var ErrUnknownSysctl = errors.New("unknown sysctl")

// sysctl is one entry of the table.
type sysctl struct {
	name string
	// doc holds the entry's lines of the configuration reference, after
	// the name column; the first line sits beside the name.
	doc    []string
	values sysctlValues
	sysctlAccess
}

// sysctlAccess is how the running stack reads a sysctl back and applies
// it.
type sysctlAccess struct {
	// get reads the value back, in the form set takes.
	get func(st *Stack) (string, error)
	// set applies v, which the entry's values have accepted. It refuses,
	// saying why, a value the stack cannot honour.
	set func(st *Stack, v string) error
}

// sysctlValues says which values a sysctl takes: a decimal in [lo, hi]
// counting unit (0 as well, with orZero), or one of words, when expect says
// what was expected.
type sysctlValues struct {
	lo, hi uint64
	unit   string
	orZero bool // 0 is valid too: it turns the feature off
	words  []string
	expect string
}

var (
	sysctlBool  = sysctlValues{words: []string{"0", "1"}, expect: "0 or 1"}
	sysctlSpace = sysctlValues{lo: 4096, hi: 1 << 30, unit: "bytes"}
)

// sysctlTable is every sysctl, in the order of the configuration
// reference. Linux's limits bound the per-socket values, as setsockopt
// would.
var sysctlTable = []sysctl{{
	name:         "net.inet.tcp.sack",
	doc:          []string{"0|1 SACK (RFC 2018)"},
	values:       sysctlBool,
	sysctlAccess: tcpFlag[tcpip.TCPSACKEnabled](),
}, {
	// RACK walks every segment in flight on every ACK, which a
	// bulk sender with a large window pays for in full; without it
	// gVisor recovers from SACK's scoreboard (RFC 6675).
	name:   "net.inet.tcp.rack",
	doc:    []string{"0|1 RACK-TLP loss detection (RFC 8985); 0: SACK's (RFC 6675)"},
	values: sysctlBool,
	sysctlAccess: sysctlAccess{
		get: func(st *Stack) (string, error) {
			var o tcpip.TCPRecovery
			err := getTCP(st, &o)
			return sysctlBoolString(o&tcpip.TCPRACKLossDetection != 0), err
		},
		set: func(st *Stack, v string) error {
			var o tcpip.TCPRecovery
			if err := getTCP(st, &o); err != nil {
				return err
			}
			o &^= tcpip.TCPRACKLossDetection
			if v == "1" {
				o |= tcpip.TCPRACKLossDetection
			}
			return setTCP(st, &o)
		},
	},
}, {
	name:   "net.inet.tcp.cc",
	doc:    []string{"reno|cubic congestion control"},
	values: sysctlValues{words: []string{"reno", "cubic"}, expect: "reno or cubic"},
	sysctlAccess: sysctlAccess{
		get: func(st *Stack) (string, error) {
			var o tcpip.CongestionControlOption
			err := getTCP(st, &o)
			return string(o), err
		},
		set: func(st *Stack, v string) error {
			o := tcpip.CongestionControlOption(v)
			return setTCP(st, &o)
		},
	},
}, {
	name:         "net.inet.tcp.sendspace",
	doc:          []string{"send buffer bytes, 4096..1073741824"},
	values:       sysctlSpace,
	sysctlAccess: bufferSpace(true),
}, {
	name:         "net.inet.tcp.recvspace",
	doc:          []string{"receive buffer bytes, 4096..1073741824"},
	values:       sysctlSpace,
	sysctlAccess: bufferSpace(false),
}, {
	// gVisor acknowledges at once; with delayed_ack=1 the link
	// endpoint drops pure ACKs that a later frame of the same pass
	// supersedes, which is the part of delaying ACKs that saves
	// frames on request/response traffic.
	name:   "net.inet.tcp.delayed_ack",
	doc:    []string{"0|1 delayed ACKs"},
	values: sysctlBool,
	sysctlAccess: sysctlAccess{
		get: func(st *Stack) (string, error) {
			st.ep.txMu.Lock()
			defer st.ep.txMu.Unlock()
			return sysctlBoolString(!st.ep.elide.disabled), nil
		},
		set: func(st *Stack, v string) error {
			st.ep.txMu.Lock()
			st.ep.elide.disabled = v == "0"
			st.ep.txMu.Unlock()
			return nil
		},
	},
}, {
	// GRO on receive (gro.go): in-order segments of a TCP flow in one
	// burst reach gVisor as one. It applies from the next burst on.
	name:         "net.inet.tcp.gro",
	doc:          []string{"0|1 merge a burst's in-order TCP segments (GRO)"},
	values:       sysctlBool,
	sysctlAccess: flagAccess(func(st *Stack) *atomic.Bool { return &st.ep.rx.off }, false),
}, {
	// GSO on send (gso.go): gVisor builds TCP packets of up to 64 KiB and
	// the endpoint cuts them into frames. Off by default: it costs loss
	// recovery dearly. It applies to connections opened after the change.
	name:         "net.inet.tcp.gso",
	doc:          []string{"0|1 let gVisor send TCP packets of up to 64 KiB, cut into frames by the link (GSO), default 0"},
	values:       sysctlBool,
	sysctlAccess: flagAccess(func(st *Stack) *atomic.Bool { return &st.ep.tx.on }, true),
}, {
	// Both the socket layer's default and gVisor's stack-wide delay
	// option, which gVisor's own endpoints start from.
	name:   "net.inet.tcp.nodelay",
	doc:    []string{"0|1 TCP_NODELAY for new sockets"},
	values: sysctlBool,
	sysctlAccess: sysctlAccess{
		get: func(st *Stack) (string, error) {
			return sysctlBoolString(st.SocketDefaults().NoDelay), nil
		},
		set: func(st *Stack, v string) error {
			st.sockMu.Lock()
			st.sockDefaults.NoDelay = v == "1"
			st.sockMu.Unlock()
			o := tcpip.TCPDelayEnabled(v == "0")
			return setTCP(st, &o)
		},
	},
}, {
	// TIME-WAIT lasts 2*MSL.
	name:   "net.inet.tcp.msl",
	doc:    []string{"maximum segment lifetime in ms, 1..600000, default", "2000 (TIME-WAIT lasts 2*MSL)"},
	values: sysctlValues{lo: 1, hi: 600000, unit: "milliseconds"},
	sysctlAccess: sysctlAccess{
		get: func(st *Stack) (string, error) {
			life, _ := st.ep.tw.settings()
			return strconv.Itoa(int(life / 2 / time.Millisecond)), nil
		},
		set: func(st *Stack, v string) error {
			st.ep.tw.setLife(2 * time.Duration(sysctlInt(v)) * time.Millisecond)
			return st.applyTimeWait()
		},
	},
}, {
	// The link endpoint's TIME-WAIT table (timewait.go).
	name: "net.inet.tcp.tw_max",
	doc: []string{
		"connections in TIME-WAIT the link endpoint holds per lcore, in",
		"about 200 bytes each, 0..4194304, default 262144; past it the",
		"oldest ends early; 0: gVisor holds them, as endpoints",
	},
	values: sysctlValues{lo: 0, hi: 4194304, unit: "connections"},
	sysctlAccess: sysctlAccess{
		get: func(st *Stack) (string, error) {
			_, n := st.ep.tw.settings()
			return strconv.Itoa(n), nil
		},
		set: func(st *Stack, v string) error {
			st.ep.tw.setMax(int(sysctlInt(v)))
			return st.applyTimeWait()
		},
	},
}, {
	name:         "net.inet.tcp.rexmit_min",
	doc:          []string{"least retransmission timeout in ms, 1..3600000, default 200"},
	values:       sysctlValues{lo: 1, hi: 3600000, unit: "milliseconds"},
	sysctlAccess: rto(true),
}, {
	name:         "net.inet.tcp.rexmit_max",
	doc:          []string{"greatest retransmission timeout in ms, 1..3600000, default 120000"},
	values:       sysctlValues{lo: 1, hi: 3600000, unit: "milliseconds"},
	sysctlAccess: rto(false),
}, {
	name:         "net.inet.tcp.keepidle",
	doc:          []string{"keepalive idle time in s, 1..32767"},
	values:       sysctlValues{lo: 1, hi: 32767, unit: "seconds"}, // Linux MAX_TCP_KEEPIDLE
	sysctlAccess: socketDefaultInt(func(d *SocketDefaults) *int { return &d.KeepIdle }, int(tcp.DefaultKeepaliveIdle/time.Second)),
}, {
	name:         "net.inet.tcp.keepintvl",
	doc:          []string{"keepalive probe interval in s, 1..32767"},
	values:       sysctlValues{lo: 1, hi: 32767, unit: "seconds"}, // Linux MAX_TCP_KEEPINTVL
	sysctlAccess: socketDefaultInt(func(d *SocketDefaults) *int { return &d.KeepIntvl }, int(tcp.DefaultKeepaliveInterval/time.Second)),
}, {
	name:         "net.inet.tcp.keepcnt",
	doc:          []string{"keepalive probes, 1..127"},
	values:       sysctlValues{lo: 1, hi: 127, unit: "probes"}, // Linux MAX_TCP_KEEPCNT
	sysctlAccess: socketDefaultInt(func(d *SocketDefaults) *int { return &d.KeepCnt }, tcp.DefaultKeepaliveCount),
}, {
	name:   "net.inet.tcp.always_keepalive",
	doc:    []string{"0|1 SO_KEEPALIVE on every TCP socket"},
	values: sysctlBool,
	sysctlAccess: socketDefault(
		func(d *SocketDefaults) string { return sysctlBoolString(d.AlwaysKeepalive) },
		func(d *SocketDefaults, v string) { d.AlwaysKeepalive = v == "1" }),
}, {
	name:   "net.inet.tcp.user_timeout",
	doc:    []string{"TCP_USER_TIMEOUT of new TCP sockets in ms, 0 (none)..2147483647"},
	values: sysctlValues{lo: 0, hi: 1<<31 - 1, unit: "milliseconds"}, // 0 = none
	sysctlAccess: socketDefault(
		func(d *SocketDefaults) string { return strconv.Itoa(int(d.UserTimeout / time.Millisecond)) },
		func(d *SocketDefaults, v string) { d.UserTimeout = time.Duration(sysctlInt(v)) * time.Millisecond }),
}, {
	// Enforced by the socket layer, which reads it at every
	// reservation. Past 32 bits: an int64 throughout.
	name: "net.inet.tcp.mem_limit",
	doc: []string{
		"socket-buffer bytes the TCP sockets of one lcore may reserve,",
		"0 (no limit, the default) or 65536..1099511627776; past it",
		"Socket, Accept and SO_SNDBUF/SO_RCVBUF fail with ENOBUFS",
	},
	values: sysctlValues{lo: 64 << 10, hi: 1 << 40, unit: "bytes", orZero: true},
	sysctlAccess: socketDefault(
		func(d *SocketDefaults) string { return strconv.FormatInt(d.MemLimit, 10) },
		func(d *SocketDefaults, v string) { d.MemLimit = sysctlInt(v) }),
}, {
	// gVisor sends SYN cookies when a listener's queue is full, or
	// always; it has no way of never sending them.
	name:   "net.inet.tcp.syncookies",
	doc:    []string{"0|1|2 = off|auto|always"},
	values: sysctlValues{words: []string{"0", "1", "2"}, expect: "0 (off), 1 (auto) or 2 (always)"},
	sysctlAccess: sysctlAccess{
		get: func(st *Stack) (string, error) {
			var o tcpip.TCPAlwaysUseSynCookies
			err := getTCP(st, &o)
			if o {
				return "2", err
			}
			return "1", err
		},
		set: func(st *Stack, v string) error {
			if v == "0" {
				return errors.New("SYN cookies cannot be turned off in gVisor; use 1 (when the accept queue is full) or 2 (always)")
			}
			o := tcpip.TCPAlwaysUseSynCookies(v == "2")
			return setTCP(st, &o)
		},
	},
}, {
	name: "net.inet.tcp.syn_guard",
	doc: []string{
		"SYN-flood guard: SYNs/s per lcore that, with the listeners",
		"overflowing, make first SYNs wait for their retransmission;",
		"0..100000000, 0 = off, default 10000",
	},
	values: sysctlValues{lo: 0, hi: 100000000, unit: "SYNs per second"},
	sysctlAccess: sysctlAccess{
		get: func(st *Stack) (string, error) {
			return strconv.FormatUint(uint64(st.ep.guard.limit.Load()), 10), nil
		},
		set: func(st *Stack, v string) error {
			st.ep.guard.limit.Store(uint32(sysctlInt(v)))
			return nil
		},
	},
}, {
	name:         "net.inet.tcp.moderate_rcvbuf",
	doc:          []string{"0|1 receive buffer auto-tuning"},
	values:       sysctlBool,
	sysctlAccess: tcpFlag[tcpip.TCPModerateReceiveBufferOption](),
}, {
	name:         "net.inet.tcp.timestamps",
	doc:          []string{"0|1 timestamps (RFC 7323)"},
	values:       sysctlBool,
	sysctlAccess: fixed("1", "gVisor always offers RFC 7323 timestamps"),
}, {
	name:         "net.inet.tcp.mss_default",
	doc:          []string{"MSS when the peer sends none, 88..65495"},
	values:       sysctlValues{lo: 88, hi: 65495, unit: "bytes"}, // Linux TCP_MIN_MSS .. 65535-40
	sysctlAccess: fixed(strconv.Itoa(header.TCPDefaultMSS), "gVisor fixes the MSS used when the peer sends none"),
}, {
	name:   "net.inet.tcp.tw_reuse",
	doc:    []string{"0|1 reuse TIME-WAIT ports for new connections"},
	values: sysctlBool,
	sysctlAccess: sysctlAccess{
		get: func(st *Stack) (string, error) {
			var o tcpip.TCPTimeWaitReuseOption
			err := getTCP(st, &o)
			return sysctlBoolString(o != tcpip.TCPTimeWaitReuseDisabled), err
		},
		set: func(st *Stack, v string) error {
			o := tcpip.TCPTimeWaitReuseDisabled
			if v == "1" {
				o = tcpip.TCPTimeWaitReuseGlobal
			}
			return setTCP(st, &o)
		},
	},
}, {
	name:         "net.inet.ip.ttl",
	doc:          []string{"default IPv4 TTL, 1..255"},
	values:       sysctlValues{lo: 1, hi: 255, unit: "hops"},
	sysctlAccess: ttl(ipv4.ProtocolNumber),
}, {
	name:   "net.inet.ip.forwarding",
	doc:    []string{"0|1 IP forwarding"},
	values: sysctlBool,
	sysctlAccess: sysctlAccess{
		get: func(st *Stack) (string, error) {
			v, err := st.s.NICForwarding(NICID, ipv4.ProtocolNumber)
			if err != nil {
				return "", fmt.Errorf("%s", err)
			}
			return sysctlBoolString(v), nil
		},
		set: func(st *Stack, v string) error {
			if err := st.s.SetForwardingDefaultAndAllNICs(ipv4.ProtocolNumber, v == "1"); err != nil {
				return fmt.Errorf("%s", err)
			}
			return nil
		},
	},
}, {
	name:         "net.inet6.ip6.hlim",
	doc:          []string{"default IPv6 hop limit, 1..255"},
	values:       sysctlValues{lo: 1, hi: 255, unit: "hops"},
	sysctlAccess: ttl(ipv6.ProtocolNumber),
}}

// sysctlIndex finds an entry of sysctlTable by name; sysctlSorted is
// their names, sorted.
var sysctlIndex, sysctlSorted = func() (map[string]*sysctl, []string) {
	m := make(map[string]*sysctl, len(sysctlTable))
	names := make([]string, 0, len(sysctlTable))
	for i := range sysctlTable {
		s := &sysctlTable[i]
		if _, dup := m[s.name]; dup {
			panic("sysctl " + s.name + " twice in the table")
		}
		m[s.name] = s
		names = append(names, s.name)
	}
	slices.Sort(names)
	return m, names
}()

func lookupSysctl(name string) (*sysctl, error) {
	if s, ok := sysctlIndex[name]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("%w, expected one of %s", ErrUnknownSysctl, strings.Join(sysctlSorted, ", "))
}

// SysctlNames returns the names of every sysctl, sorted. The slice is the
// caller's.
func SysctlNames() []string { return slices.Clone(sysctlSorted) }

// CheckSysctl checks that name is a sysctl and value one of the values it
// takes, as config.ini's [sysctl] and the tools check them before a stack
// sees them. The error says what was expected ("expected 0 or 1, got
// \"on\""); for an unknown name it wraps ErrUnknownSysctl and lists the
// names. A value that passes may still be one the stack cannot honour;
// SetSysctl says so.
func CheckSysctl(name, value string) error {
	s, err := lookupSysctl(name)
	if err != nil {
		return err
	}
	return s.values.check(value)
}

// SysctlReference returns the [sysctl] lines of the configuration
// reference (README's config.ini block and core.Config's doc), from the
// section's header on: the name in a column 31 wide, then its doc.
func SysctlReference() []string {
	const col = 31
	lines := []string{fmt.Sprintf("%-*s%s", col, "[sysctl]", "all optional; unset = the stack's default")}
	for _, s := range sysctlTable {
		for i, d := range s.doc {
			name := ""
			if i == 0 {
				name = s.name
			}
			lines = append(lines, fmt.Sprintf("%-*s%s", col, name, d))
		}
	}
	return lines
}

// SetSysctl applies one sysctl to the running stack, after CheckSysctl's
// check. It also refuses, saying why, a value that the stack cannot
// honour. The lcore applies config.ini's [sysctl] with it at start-up and
// its control plane runs sysctl.set with it between bursts.
func (st *Stack) SetSysctl(name, value string) error {
	s, err := lookupSysctl(name)
	if err == nil {
		err = s.values.check(value)
	}
	if err == nil {
		err = s.set(st, value)
	}
	// The buffer sysctls change what TCPBuffers reports.
	st.refreshTCPBuffers()
	if err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
	}
	return nil
}

// Sysctl returns the current value of a sysctl, read back from the
// running stack, in the form SetSysctl and config.ini take.
func (st *Stack) Sysctl(name string) (string, error) {
	s, err := lookupSysctl(name)
	var v string
	if err == nil {
		v, err = s.get(st)
	}
	if err != nil {
		return "", fmt.Errorf("sysctl %s: %w", name, err)
	}
	return v, nil
}

// check reports whether v is one of the values; the error says what was
// expected and what was given.
func (s sysctlValues) check(v string) error {
	if s.words != nil {
		if !slices.Contains(s.words, v) {
			return fmt.Errorf("expected %s, got %q", s.expect, v)
		}
		return nil
	}
	if s.orZero && v == "0" {
		return nil
	}
	if _, ok := s.parse(v); !ok {
		if s.orZero {
			return fmt.Errorf("expected 0 or %s %d..%d, got %q", s.unit, s.lo, s.hi, v)
		}
		return fmt.Errorf("expected %s %d..%d, got %q", s.unit, s.lo, s.hi, v)
	}
	return nil
}

// parse reads a decimal in [lo, hi], without a sign.
func (s sysctlValues) parse(v string) (uint64, bool) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || v[0] == '+' || n < s.lo || n > s.hi {
		return 0, false
	}
	return n, true
}

// sysctlInt is the number v, which has passed a numeric entry's check: a
// decimal of at most 1<<40, so it fits an int64 (and an int).
func sysctlInt(v string) int64 {
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

func sysctlBoolString(v bool) string {
	if v {
		return "1"
	}
	return "0"
}

func getTCP(st *Stack, opt tcpip.GettableTransportProtocolOption) error {
	if err := st.s.TransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
		return fmt.Errorf("%s", err)
	}
	return nil
}

func setTCP(st *Stack, opt tcpip.SettableTransportProtocolOption) error {
	if err := st.s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
		return fmt.Errorf("%s", err)
	}
	return nil
}

// tcpFlag is the access to one of gVisor's boolean TCP options, as
// 0 or 1.
func tcpFlag[T ~bool, P interface {
	*T
	tcpip.GettableTransportProtocolOption
	tcpip.SettableTransportProtocolOption
}]() sysctlAccess {
	return sysctlAccess{
		get: func(st *Stack) (string, error) {
			var o T
			err := getTCP(st, P(&o))
			return sysctlBoolString(bool(o)), err
		},
		set: func(st *Stack, v string) error {
			o := T(v == "1")
			return setTCP(st, P(&o))
		},
	}
}

// ttl is the access to the default TTL (hop limit) of proto.
func ttl(proto tcpip.NetworkProtocolNumber) sysctlAccess {
	return sysctlAccess{
		get: func(st *Stack) (string, error) {
			var o tcpip.DefaultTTLOption
			if err := st.s.NetworkProtocolOption(proto, &o); err != nil {
				return "", fmt.Errorf("%s", err)
			}
			return strconv.Itoa(int(o)), nil
		},
		set: func(st *Stack, v string) error {
			o := tcpip.DefaultTTLOption(sysctlInt(v))
			if err := st.s.SetNetworkProtocolOption(proto, &o); err != nil {
				return fmt.Errorf("%s", err)
			}
			return nil
		},
	}
}

// bufferSpace is the access to the default of gVisor's send (snd) or
// receive buffer range, which sockets made afterwards start with. Setting
// it raises the range's maximum to match.
func bufferSpace(snd bool) sysctlAccess {
	return sysctlAccess{
		get: func(st *Stack) (string, error) {
			r, err := bufferRange(st, snd)
			return strconv.Itoa(r.Default), err
		},
		set: func(st *Stack, v string) error {
			r, err := bufferRange(st, snd)
			if err != nil {
				return err
			}
			r.Default = int(sysctlInt(v))
			r.Max = max(r.Max, r.Default)
			if snd {
				return setTCP(st, &r)
			}
			o := tcpip.TCPReceiveBufferSizeRangeOption(r)
			return setTCP(st, &o)
		},
	}
}

// bufferRange reads the send or receive buffer range; gVisor gives the two
// the same fields.
func bufferRange(st *Stack, snd bool) (tcpip.TCPSendBufferSizeRangeOption, error) {
	if snd {
		var o tcpip.TCPSendBufferSizeRangeOption
		err := getTCP(st, &o)
		return o, err
	}
	var o tcpip.TCPReceiveBufferSizeRangeOption
	err := getTCP(st, &o)
	return tcpip.TCPSendBufferSizeRangeOption(o), err
}

// rto is the access to a bound of the retransmission timeout, in ms: the
// least (min) or the greatest. gVisor keeps min <= max, so a bound may not
// cross the other: set then names the other and its value.
func rto(min bool) sysctlAccess {
	return sysctlAccess{
		get: func(st *Stack) (string, error) {
			lo, hi, err := rtoBounds(st)
			if min {
				return strconv.Itoa(int(lo / time.Millisecond)), err
			}
			return strconv.Itoa(int(hi / time.Millisecond)), err
		},
		set: func(st *Stack, v string) error {
			d := time.Duration(sysctlInt(v)) * time.Millisecond
			lo, hi, err := rtoBounds(st)
			if err != nil {
				return err
			}
			if min {
				if d > hi {
					return fmt.Errorf("above net.inet.tcp.rexmit_max (%d ms)", hi/time.Millisecond)
				}
				o := tcpip.TCPMinRTOOption(d)
				return setTCP(st, &o)
			}
			if d < lo {
				return fmt.Errorf("below net.inet.tcp.rexmit_min (%d ms)", lo/time.Millisecond)
			}
			o := tcpip.TCPMaxRTOOption(d)
			return setTCP(st, &o)
		},
	}
}

func rtoBounds(st *Stack) (lo, hi time.Duration, err error) {
	var mn tcpip.TCPMinRTOOption
	var mx tcpip.TCPMaxRTOOption
	if err := getTCP(st, &mn); err != nil {
		return 0, 0, err
	}
	if err := getTCP(st, &mx); err != nil {
		return 0, 0, err
	}
	return time.Duration(mn), time.Duration(mx), nil
}

// socketDefault is the access to a per-socket sysctl, kept in the stack's
// SocketDefaults for the socket layer: field reads the value from the
// defaults, apply writes v, which has passed the entry's check, to them.
func socketDefault(field func(d *SocketDefaults) string, apply func(d *SocketDefaults, v string)) sysctlAccess {
	return sysctlAccess{
		get: func(st *Stack) (string, error) {
			d := st.SocketDefaults()
			return field(&d), nil
		},
		set: func(st *Stack, v string) error {
			st.sockMu.Lock()
			apply(&st.sockDefaults, v)
			st.sockMu.Unlock()
			return nil
		},
	}
}

// fixed is the access to a sysctl whose value gVisor fixes at want: it
// reads back as want, setting want changes nothing, and any other value is
// refused with why.
func fixed(want, why string) sysctlAccess {
	return sysctlAccess{
		get: func(*Stack) (string, error) { return want, nil },
		set: func(_ *Stack, v string) error {
			if v != want {
				return fmt.Errorf("%s; only %s is supported", why, want)
			}
			return nil
		},
	}
}

// socketDefaultInt is socketDefault for the int field of SocketDefaults
// that field points to, where 0 leaves gVisor's default def, which it
// reads back as.
func socketDefaultInt(field func(d *SocketDefaults) *int, def int) sysctlAccess {
	return socketDefault(
		func(d *SocketDefaults) string {
			if v := *field(d); v != 0 {
				return strconv.Itoa(v)
			}
			return strconv.Itoa(def)
		},
		func(d *SocketDefaults, v string) { *field(d) = int(sysctlInt(v)) })
}

// flagAccess reads and writes a 0|1 sysctl kept in the atomic flag that
// field returns; set says which value the flag's true stands for.
func flagAccess(field func(st *Stack) *atomic.Bool, set bool) sysctlAccess {
	return sysctlAccess{
		get: func(st *Stack) (string, error) {
			return sysctlBoolString(field(st).Load() == set), nil
		},
		set: func(st *Stack, v string) error {
			field(st).Store((v == "1") == set)
			return nil
		},
	}
}
