package core

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/nic"
	"github.com/xstack/xstack/stack"
)

// Config is a parsed and validated config.ini.
//
// The file is INI: "[section]" headers, "key=value" lines, blank lines, and
// comments that start with ';' or '#' either at the beginning of a line or
// after whitespace ("frames=8192 ; per port"). Whitespace around sections,
// keys and values is ignored. Parsing is strict: an unknown section or key, a
// key given twice, a line without '=', or a bad value is an error that names
// the file, the line, the key and what was expected (see ConfigError). An
// empty value is allowed only for optional keys and means "not set".
//
// Keys, their defaults and what they take:
//
//	key             default        value
//	[xstack]
//	lcore_mask      1              hex bit mask (0x optional) of lcores, bit n = CPU n; one
//	                               lcore (process, or thread with mode=thread) per set bit
//	busy_poll       1              0|1: poll the rings without sleeping in the kernel
//	idle_sleep      0              µs an idle pass waits for a frame, 0 (spin)..1000000
//	tx_flush_us     100            µs after which a partial TX batch is flushed, 0..1000000
//	mode            process        process|thread: a process per lcore, or a pinned thread
//	                               per lcore in one process
//	shutdown        fin            fin|rst: on SIGTERM or SIGINT, close connections with FIN
//	                               (after the data queued) and wait for the peers to close,
//	                               or reset them at once with RST
//	shutdown_timeout_ms
//	                2000           ms a fin shutdown waits for the peers, 0..60000; the
//	                               connections still open then are reset
//	gc_percent      100            10..10000: the Go GC's heap growth between collections,
//	                               in % of the live heap (GOGC), at least
//	gc_headroom_mb  256            MiB, 0..1048576: the heap may grow by at least this much
//	                               between collections, whatever gc_percent gives
//	memory_limit_mb 0              MiB, 0 (none)..1048576: a soft limit on the process's
//	                               memory (GOMEMLIMIT); the GC works harder near it
//	[portN]                        one per NIC; N = 0..63, numbered from 0 without gaps
//	ifname          (required)     interface name
//	netns           (unset)        network namespace (`ip netns`) of the interface
//	addr            (unset)        IPv4 address; required unless addr6 is set
//	netmask         255.255.255.0  dotted, contiguous netmask of addr
//	broadcast       (unset)        IPv4 broadcast address, inside addr/netmask
//	gateway         (unset)        IPv4 default gateway, on-link (inside addr/netmask)
//	addr6           (unset)        IPv6 address/prefix length, e.g. 2001:2::1/64
//	gateway6        (unset)        IPv6 default gateway, link-local or inside addr6's prefix
//	lcore_list      lcore_mask's   comma-separated lcore ids, ascending by default; the i-th
//	                lcores         serves queue i; each lcore of lcore_mask exactly once
//	xdp_mode        auto           auto|native|generic XDP attachment
//	zerocopy        auto           auto|on|off AF_XDP zero-copy
//	tx_checksum     off            off|auto|on|software TCP/UDP checksums completed by the
//	                               kernel or NIC (AF_XDP TX metadata, Linux 6.8); on fails
//	                               where missing; software is the kernel's, copy mode only;
//	                               off by default: see Same-host traffic
//	frames          4096           UMEM frames, power of two, 64..1048576
//	frame_size      2048           UMEM frame size, 2048|4096
//	rx_ring         2048           RX and fill ring size, power of two, 64..frames
//	tx_ring         2048           TX and completion ring size, power of two, 64..frames
//	pass_to_kernel  1              0|1: XDP_PASS the traffic that is not for the stack
//	mtu             (interface's)  576..9000; without multi-buffer mtu+14 (Ethernet header)
//	                               must fit in frame_size-256 (XDP_PACKET_HEADROOM), so at
//	                               most 1778 with frame_size=2048 and 3826 with 4096
//	multi_buffer    auto           auto|on|off AF_XDP multi-buffer (XDP_USE_SG, Linux 6.6): a
//	                               frame may span several UMEM frames, for an MTU up to 9000
//	                               (jumbo frames); auto turns it on when the MTU (mtu, else
//	                               the interface's) does not fit one frame; on fails where
//	                               the kernel or driver lacks it; off keeps the limit above
//	[pcap]
//	enable          0              0|1: capture RX and TX to <savepath>/cpu<lcore>_<seq>.pcap
//	snaplen         96             bytes kept of each frame, 1..65535
//	savelen         16777216       bytes per file before it is rotated, at least 40+snaplen
//	savepath        .              directory for the capture files
//	[sysctl]                       all optional; unset = the stack's default
//	net.inet.tcp.sack              0|1 SACK (RFC 2018)
//	net.inet.tcp.rack              0|1 RACK-TLP loss detection (RFC 8985); 0: SACK's (RFC 6675)
//	net.inet.tcp.cc                reno|cubic congestion control
//	net.inet.tcp.sendspace         send buffer bytes, 4096..1073741824
//	net.inet.tcp.recvspace         receive buffer bytes, 4096..1073741824
//	net.inet.tcp.delayed_ack       0|1 delayed ACKs
//	net.inet.tcp.gro               0|1 merge a burst's in-order TCP segments (GRO)
//	net.inet.tcp.gso               0|1 let gVisor send TCP packets of up to 64 KiB, cut into frames by the link (GSO), default 0
//	net.inet.tcp.nodelay           0|1 TCP_NODELAY for new sockets
//	net.inet.tcp.msl               maximum segment lifetime in ms, 1..600000, default
//	                               2000 (TIME-WAIT lasts 2*MSL)
//	net.inet.tcp.tw_max            connections in TIME-WAIT the link endpoint holds per lcore, in
//	                               about 200 bytes each, 0..4194304, default 262144; past it the
//	                               oldest ends early; 0: gVisor holds them, as endpoints
//	net.inet.tcp.rexmit_min        least retransmission timeout in ms, 1..3600000, default 200
//	net.inet.tcp.rexmit_max        greatest retransmission timeout in ms, 1..3600000, default 120000
//	net.inet.tcp.keepidle          keepalive idle time in s, 1..32767
//	net.inet.tcp.keepintvl         keepalive probe interval in s, 1..32767
//	net.inet.tcp.keepcnt           keepalive probes, 1..127
//	net.inet.tcp.always_keepalive  0|1 SO_KEEPALIVE on every TCP socket
//	net.inet.tcp.user_timeout      TCP_USER_TIMEOUT of new TCP sockets in ms, 0 (none)..2147483647
//	net.inet.tcp.mem_limit         socket-buffer bytes the TCP sockets of one lcore may reserve,
//	                               0 (no limit, the default) or 65536..1099511627776; past it
//	                               Socket, Accept and SO_SNDBUF/SO_RCVBUF fail with ENOBUFS
//	net.inet.tcp.syncookies        0|1|2 = off|auto|always
//	net.inet.tcp.syn_guard         SYN-flood guard: SYNs/s per lcore that, with the listeners
//	                               overflowing, make first SYNs wait for their retransmission;
//	                               0..100000000, 0 = off, default 10000
//	net.inet.tcp.moderate_rcvbuf   0|1 receive buffer auto-tuning
//	net.inet.tcp.timestamps        0|1 timestamps (RFC 7323)
//	net.inet.tcp.mss_default       MSS when the peer sends none, 88..65495
//	net.inet.tcp.tw_reuse          0|1 reuse TIME-WAIT ports for new connections
//	net.inet.ip.ttl                default IPv4 TTL, 1..255
//	net.inet.ip.forwarding         0|1 IP forwarding
//	net.inet6.ip6.hlim             default IPv6 hop limit, 1..255
//
// A Config is read-only once returned; it is safe to share between lcores.
type Config struct {
	// File is the name the configuration was read from, as given to
	// LoadConfig or ParseConfig. Errors and CheckHost report it.
	File string

	// [xstack]
	LcoreMask uint64        // lcore_mask; never 0
	BusyPoll  bool          // busy_poll
	IdleSleep time.Duration // idle_sleep
	TxFlush   time.Duration // tx_flush_us
	Mode      RunMode       // mode

	Shutdown        ShutdownMode  // shutdown
	ShutdownTimeout time.Duration // shutdown_timeout_ms

	GC GCPolicy // gc_percent, gc_headroom_mb, memory_limit_mb

	// Ports holds [port0], [port1], ... in order: Ports[i].Index == i.
	// There is at least one.
	Ports []PortConfig

	Pcap PcapConfig // [pcap]

	// Sysctls holds the [sysctl] entries in file order, each validated by
	// stack.CheckSysctl. Names are unique.
	Sysctls []Sysctl

	// lines maps "section.key" (and "section" for its header) to its line,
	// so that cross-field and host checks can point at the culprit.
	lines map[string]int
}

// PortConfig is one [portN] section: a NIC driven through AF_XDP.
type PortConfig struct {
	Index     int          // N of [portN]
	Line      int          // line of the [portN] header
	Ifname    string       // ifname
	Netns     string       // netns; "" = the namespace the process runs in
	Addr      netip.Addr   // addr; invalid if unset (then Addr6 is set)
	Netmask   netip.Addr   // netmask; valid whenever Addr is
	Broadcast netip.Addr   // broadcast; invalid if unset
	Gateway   netip.Addr   // gateway; invalid if unset
	Addr6     netip.Prefix // addr6 (address bits kept, not masked); invalid if unset
	Gateway6  netip.Addr   // gateway6; invalid if unset

	// LcoreList[i] is the lcore that serves queue i. It holds every lcore
	// of lcore_mask exactly once.
	LcoreList []int

	XDPMode      nic.XDPMode        // xdp_mode
	ZeroCopy     nic.ZeroCopyMode   // zerocopy
	TxChecksum   nic.TxChecksumMode // tx_checksum
	Frames       int                // frames; power of two
	FrameSize    int                // frame_size; 2048 or 4096
	RxRing       int                // rx_ring; power of two, <= Frames
	TxRing       int                // tx_ring; power of two, <= Frames
	PassToKernel bool               // pass_to_kernel
	MTU          int                // mtu; 0 = use the interface's MTU
	MultiBuffer  MultiBufferMode    // multi_buffer

	lines map[string]int // key -> line
}

// lineOf returns the line of key in the port's section, else of the
// section header.
func (p *PortConfig) lineOf(key string) int {
	if l := p.lines[key]; l > 0 {
		return l
	}
	return p.Line
}

// Prefix returns the port's IPv4 address with its netmask length, or an
// invalid prefix if the port has no IPv4 address.
func (p *PortConfig) Prefix() netip.Prefix {
	if !p.Addr.IsValid() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(p.Addr, configMaskBits(p.Netmask))
}

// PcapConfig is the [pcap] section.
type PcapConfig struct {
	Enable   bool   // enable
	Snaplen  int    // snaplen
	Savelen  int64  // savelen
	Savepath string // savepath
}

// Sysctl is one validated [sysctl] entry.
type Sysctl struct {
	Name, Value string
	Line        int // line in Config.File
}

// RunMode says how lcores map onto processes (the mode key).
type RunMode string

const (
	ModeProcess RunMode = "process" // one process per lcore (F-Stack's model)
	ModeThread  RunMode = "thread"  // all lcores in one process, a pinned thread each
)

// MultiBufferMode says when a port's queues use AF_XDP multi-buffer (the
// multi_buffer key), which lets a frame span several UMEM frames.
type MultiBufferMode string

const (
	// MultiBufferAuto uses multi-buffer when the port's MTU does not fit
	// one UMEM frame, and only then: a queue whose frames fit one buffer
	// keeps the single-buffer path.
	MultiBufferAuto MultiBufferMode = "auto"
	MultiBufferOn   MultiBufferMode = "on"  // always; fails where the kernel or driver lacks it
	MultiBufferOff  MultiBufferMode = "off" // never; the MTU must fit one UMEM frame
)

// UseMultiBuffer reports whether the port's queues bind with AF_XDP
// multi-buffer when the interface's MTU is ifMTU (mtu, when set, is the
// MTU instead).
func (p *PortConfig) UseMultiBuffer(ifMTU int) bool {
	switch p.MultiBuffer {
	case MultiBufferOn:
		return true
	case MultiBufferOff:
		return false
	}
	mtu := p.MTU
	if mtu == 0 {
		mtu = ifMTU
	}
	return mtu > configMaxMTU(p.FrameSize)
}

// ShutdownMode is how the lcores end their connections when the process is
// asked to stop (the shutdown key); see Shutdown.
type ShutdownMode string

const (
	// ShutdownFIN closes every connection as close(2) does (FIN after the
	// data queued; RST if data the application never read is pending)
	// and waits up to ShutdownTimeout for the peers to close theirs.
	ShutdownFIN ShutdownMode = "fin"
	// ShutdownRST resets every connection at once.
	ShutdownRST ShutdownMode = "rst"
)

// Lcores returns the lcore ids set in LcoreMask, ascending.
func (c *Config) Lcores() []int {
	return configMaskLcores(c.LcoreMask)
}

// ConfigError is a problem in a configuration file. Error returns
// "<file>:<line>: <key>: <msg>", where Key is the offending key, or the
// section header such as "[port9x]" for problems with a whole section, and
// Msg says what was expected.
type ConfigError struct {
	File string
	Line int
	Key  string
	Msg  string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Key, e.Msg)
}

// LoadConfig reads and validates the configuration file at path. Errors in
// the file are *ConfigError; a file that cannot be opened gives the
// *os.PathError. It does not look at the host: see CheckHost.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseConfig(path, f)
}

// ParseConfig reads and validates a configuration from r. name is the file
// name that errors report. Every error it returns is a *ConfigError.
func ParseConfig(name string, r io.Reader) (*Config, error) {
	secs, last, err := configLex(name, r)
	if err != nil {
		return nil, err
	}
	p := &configParser{file: name, cfg: newDefaultConfig(name), last: last}
	return p.parse(secs)
}

// configMaxLine bounds a line's length: config files are small, and a bound
// keeps a hostile input from taking unbounded memory.
const configMaxLine = 64 << 10

// configSection is one [section] with its entries, as lexed.
type configSection struct {
	name    string
	line    int
	entries []configEntry
}

type configEntry struct {
	key, value string
	line       int
}

// configLex splits the input into sections and key=value entries. It
// rejects what is wrong regardless of the section: lines without '=',
// malformed headers, keys before any section, and repeated sections or keys.
// last is the number of the input's last line (at least 1).
func configLex(name string, r io.Reader) (secs []configSection, last int, err error) {
	errf := func(line int, key, format string, args ...any) error {
		return &ConfigError{File: name, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), configMaxLine)
	var (
		secLines = map[string]int{}
		keyLines map[string]int
		n        int
	)
	for sc.Scan() {
		n++
		text := sc.Bytes()
		if n == 1 {
			text = bytes.TrimPrefix(text, []byte("\ufeff")) // a BOM from Windows editors
		}
		line := configStripComment(string(text))
		if line == "" {
			continue
		}
		if line[0] == '[' {
			if !strings.HasSuffix(line, "]") {
				return nil, 0, errf(n, configQuoteKey(line), "expected a section header such as [port0]")
			}
			sec := strings.TrimSpace(line[1 : len(line)-1])
			hdr := "[" + sec + "]"
			if !configKnownSection(sec) {
				msg := "unknown section, expected [xstack], [portN], [pcap] or [sysctl]"
				if d, ok := strings.CutPrefix(sec, "port"); ok && d != "" && strings.Trim(d, "0123456789") == "" {
					msg += fmt.Sprintf(" with N 0..%d without leading zeros", configMaxPorts-1)
				}
				return nil, 0, errf(n, configQuoteKey(hdr), "%s", msg)
			}
			if prev, ok := secLines[sec]; ok {
				return nil, 0, errf(n, hdr, "duplicate section, already started on line %d", prev)
			}
			secLines[sec] = n
			keyLines = map[string]int{}
			secs = append(secs, configSection{name: sec, line: n})
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			return nil, 0, errf(n, configQuoteKey(line), "expected key=value or [section]")
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		if key == "" {
			return nil, 0, errf(n, configQuoteKey(line), "empty key, expected key=value")
		}
		if len(secs) == 0 {
			return nil, 0, errf(n, configQuoteKey(key), "key outside a section, expected [xstack], [portN], [pcap] or [sysctl] before it")
		}
		if prev, ok := keyLines[key]; ok {
			return nil, 0, errf(n, configQuoteKey(key), "duplicate key, already set on line %d", prev)
		}
		keyLines[key] = n
		s := &secs[len(secs)-1]
		s.entries = append(s.entries, configEntry{key: key, value: value, line: n})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, 0, errf(n+1, "line", "longer than %d bytes", configMaxLine)
		}
		return nil, 0, errf(n+1, "line", "read: %v", err)
	}
	return secs, max(n, 1), nil
}

// configStripComment removes a comment and surrounding whitespace. A comment
// starts with ';' or '#' at the beginning of the line or after whitespace, so
// that values such as "a#b" survive.
func configStripComment(s string) string {
	for i := 0; i < len(s); i++ {
		if (s[i] == ';' || s[i] == '#') && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t') {
			s = s[:i]
			break
		}
	}
	return strings.TrimSpace(s)
}

// configQuoteKey makes arbitrary text printable as the key of an error:
// quoted if it has anything unusual, and shortened.
func configQuoteKey(s string) string {
	const maxLen = 40
	if len(s) > maxLen {
		s = s[:maxLen] + "..."
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e || r == '"' || r == ':' {
			return strconv.Quote(s)
		}
	}
	return s
}

func configKnownSection(s string) bool {
	switch s {
	case "xstack", "pcap", "sysctl":
		return true
	}
	_, ok := configPortIndex(s)
	return ok
}

// configMaxPorts bounds N in [portN].
const configMaxPorts = 64

// configPortIndex returns N for "portN", N decimal without leading zeros.
func configPortIndex(s string) (int, bool) {
	d, ok := strings.CutPrefix(s, "port")
	if !ok || d == "" || len(d) > 3 || (len(d) > 1 && d[0] == '0') {
		return 0, false
	}
	n := 0
	for _, c := range []byte(d) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n < configMaxPorts
}

func newDefaultConfig(name string) *Config {
	return &Config{
		File:      name,
		LcoreMask: 1,
		BusyPoll:  true,
		TxFlush:   100 * time.Microsecond,
		Mode:      ModeProcess,

		Shutdown:        ShutdownFIN,
		ShutdownTimeout: 2 * time.Second,
		GC:              GCPolicy{Percent: 100, Headroom: 256 << 20},
		Pcap: PcapConfig{
			Snaplen:  96,
			Savelen:  16 << 20,
			Savepath: ".",
		},
		lines: map[string]int{},
	}
}

func newDefaultPort(index, line int) PortConfig {
	return PortConfig{
		Index:        index,
		Line:         line,
		XDPMode:      nic.XDPAuto,
		ZeroCopy:     nic.ZeroCopyAuto,
		TxChecksum:   nic.TxChecksumOff,
		Frames:       4096,
		FrameSize:    2048,
		RxRing:       2048,
		TxRing:       2048,
		PassToKernel: true,
		MultiBuffer:  MultiBufferAuto,
		lines:        map[string]int{},
	}
}

// configParser turns lexed sections into a Config.
type configParser struct {
	file string
	cfg  *Config
	last int // last line of the input
}

// errf returns a *ConfigError at line for key.
func (p *configParser) errf(line int, key, format string, args ...any) *ConfigError {
	return &ConfigError{File: p.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
}

// configKey describes one key of a section: whether an empty value is
// allowed (it means "not set"), and how to store a value. set returns what
// was expected when the value is bad.
type configKey[T any] struct {
	name     string
	optional bool
	set      func(t *T, v string) error
}

func (p *configParser) parse(secs []configSection) (*Config, error) {
	c := p.cfg
	var ports []PortConfig
	for _, s := range secs {
		c.lines[s.name] = s.line
		var err error
		switch s.name {
		case "xstack":
			err = configApply(p, s, configXstackKeys, c, c.lines, "xstack.")
		case "pcap":
			err = configApply(p, s, configPcapKeys, &c.Pcap, c.lines, "pcap.")
		case "sysctl":
			err = p.sysctls(s)
		default:
			n, _ := configPortIndex(s.name)
			port := newDefaultPort(n, s.line)
			err = configApply(p, s, configPortKeys, &port, port.lines, "")
			ports = append(ports, port)
		}
		if err != nil {
			return nil, err
		}
	}
	if err := p.checkPcap(); err != nil {
		return nil, err
	}
	if len(ports) == 0 {
		return nil, p.errf(p.last, "[port0]", "no [portN] section, expected at least [port0]")
	}
	slices.SortFunc(ports, func(a, b PortConfig) int { return a.Index - b.Index })
	for i := range ports {
		if ports[i].Index != i {
			return nil, p.errf(ports[i].Line, fmt.Sprintf("[port%d]", ports[i].Index),
				"ports are numbered from 0 without gaps, expected [port%d] first", i)
		}
	}
	for i := range ports {
		if err := p.checkPort(&ports[i], ports[:i]); err != nil {
			return nil, err
		}
	}
	c.Ports = ports
	return c, nil
}

// configApply stores the entries of s into t through keys, recording the
// line of each key in lines under prefix+key.
func configApply[T any](p *configParser, s configSection, keys []configKey[T], t *T, lines map[string]int, prefix string) error {
	for _, e := range s.entries {
		i := slices.IndexFunc(keys, func(k configKey[T]) bool { return k.name == e.key })
		if i < 0 {
			names := make([]string, len(keys))
			for j, k := range keys {
				names[j] = k.name
			}
			return p.errf(e.line, configQuoteKey(e.key), "unknown key in [%s], expected one of %s",
				s.name, strings.Join(names, ", "))
		}
		k := keys[i]
		lines[prefix+k.name] = e.line
		if e.value == "" && k.optional {
			continue
		}
		if err := k.set(t, e.value); err != nil {
			return p.errf(e.line, k.name, "%v", err)
		}
	}
	return nil
}

var configXstackKeys = []configKey[Config]{
	{name: "lcore_mask", set: func(c *Config, v string) error {
		h := v
		if len(h) > 2 && h[0] == '0' && (h[1] == 'x' || h[1] == 'X') {
			h = h[2:]
		}
		m, err := strconv.ParseUint(h, 16, 64)
		if err != nil || strings.ContainsAny(h, "+-_") {
			return fmt.Errorf("expected a hex lcore bit mask such as 3 or 0xf (at most 64 lcores), got %q", v)
		}
		if m == 0 {
			return fmt.Errorf("expected at least one lcore bit set, got %q", v)
		}
		c.LcoreMask = m
		return nil
	}},
	{name: "busy_poll", set: func(c *Config, v string) (err error) {
		c.BusyPoll, err = configBool(v)
		return err
	}},
	configDuration("idle_sleep", 1000000, time.Microsecond, "microseconds", func(c *Config) *time.Duration { return &c.IdleSleep }),
	configDuration("tx_flush_us", 1000000, time.Microsecond, "microseconds", func(c *Config) *time.Duration { return &c.TxFlush }),
	{name: "mode", set: func(c *Config, v string) (err error) {
		c.Mode, err = configEnum(v, ModeProcess, ModeThread)
		return err
	}},
	{name: "shutdown", set: func(c *Config, v string) (err error) {
		c.Shutdown, err = configEnum(v, ShutdownFIN, ShutdownRST)
		return err
	}},
	configDuration("shutdown_timeout_ms", 60000, time.Millisecond, "milliseconds", func(c *Config) *time.Duration { return &c.ShutdownTimeout }),
	{name: "gc_percent", set: func(c *Config, v string) error {
		n, err := configUint(v, 10, 10000, "a percentage")
		c.GC.Percent = int(n)
		return err
	}},
	configMiB("gc_headroom_mb", func(c *Config) *uint64 { return &c.GC.Headroom }),
	configMiB("memory_limit_mb", func(c *Config) *uint64 { return &c.GC.MemoryLimit }),
}

// configDuration is a key that takes a whole number of units, 0..hi.
func configDuration(name string, hi uint64, unit time.Duration, unitName string, field func(*Config) *time.Duration) configKey[Config] {
	return configKey[Config]{name: name, set: func(c *Config, v string) error {
		n, err := configUint(v, 0, hi, unitName)
		*field(c) = time.Duration(n) * unit
		return err
	}}
}

// configMiB is a key that takes MiB, 0..1048576, stored in bytes.
func configMiB(name string, field func(*Config) *uint64) configKey[Config] {
	return configKey[Config]{name: name, set: func(c *Config, v string) error {
		n, err := configUint(v, 0, 1<<20, "MiB")
		*field(c) = n << 20
		return err
	}}
}

var configPcapKeys = []configKey[PcapConfig]{
	{name: "enable", set: func(c *PcapConfig, v string) (err error) {
		c.Enable, err = configBool(v)
		return err
	}},
	{name: "snaplen", set: func(c *PcapConfig, v string) error {
		n, err := configUint(v, 1, 65535, "bytes")
		c.Snaplen = int(n)
		return err
	}},
	{name: "savelen", set: func(c *PcapConfig, v string) error {
		n, err := configUint(v, 1, 1<<50, "bytes")
		c.Savelen = int64(n)
		return err
	}},
	{name: "savepath", set: func(c *PcapConfig, v string) error {
		if v == "" {
			return errors.New(`expected a directory such as "." or /var/tmp/xstack`)
		}
		c.Savepath = v
		return nil
	}},
}

// configEnum returns v if it is one of allowed; the error lists them.
func configEnum[T ~string](v string, allowed ...T) (T, error) {
	if i := slices.Index(allowed, T(v)); i >= 0 {
		return allowed[i], nil
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = string(a)
	}
	last := len(names) - 1
	return "", fmt.Errorf("expected %s or %s, got %q", strings.Join(names[:last], ", "), names[last], v)
}

// configIPv4 parses an IPv4 address; the error says what was expected.
func configIPv4(v, what string) (netip.Addr, error) {
	a, err := netip.ParseAddr(v)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("expected %s, got %q", what, v)
	}
	return a, nil
}

var configPortKeys = []configKey[PortConfig]{
	{name: "ifname", set: func(p *PortConfig, v string) error {
		// IFNAMSIZ is 16 with the NUL; the kernel's dev_valid_name rules.
		if v == "" || len(v) >= unix.IFNAMSIZ || v == "." || v == ".." || strings.ContainsAny(v, "/: \t") {
			return fmt.Errorf("expected an interface name of at most %d characters without '/', ':' or spaces, got %q", unix.IFNAMSIZ-1, v)
		}
		p.Ifname = v
		return nil
	}},
	{name: "netns", optional: true, set: func(p *PortConfig, v string) error {
		if len(v) > 255 || v == "." || v == ".." || strings.ContainsAny(v, "/ \t") {
			return fmt.Errorf("expected a network namespace name (a file name under %s), got %q", netns.Dir, v)
		}
		p.Netns = v
		return nil
	}},
	{name: "addr", optional: true, set: func(p *PortConfig, v string) error {
		a, err := configIPv4(v, "an IPv4 address such as 198.18.0.1")
		if err != nil {
			return err
		}
		if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
			return fmt.Errorf("expected a unicast IPv4 address, got %s", a)
		}
		p.Addr = a
		return nil
	}},
	{name: "netmask", set: func(p *PortConfig, v string) error {
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() || configMaskBits(a) < 1 {
			return fmt.Errorf("expected a dotted netmask such as 255.255.255.0, got %q", v)
		}
		p.Netmask = a
		return nil
	}},
	{name: "broadcast", optional: true, set: func(p *PortConfig, v string) error {
		a, err := configIPv4(v, "an IPv4 broadcast address such as 198.18.255.255")
		if err == nil {
			p.Broadcast = a
		}
		return err
	}},
	{name: "gateway", optional: true, set: func(p *PortConfig, v string) error {
		a, err := configIPv4(v, "an IPv4 gateway address such as 198.18.0.254")
		if err == nil {
			p.Gateway = a
		}
		return err
	}},
	{name: "addr6", optional: true, set: func(p *PortConfig, v string) error {
		pf, err := netip.ParsePrefix(v)
		if err != nil || !pf.Addr().Is6() || pf.Addr().Is4In6() {
			return fmt.Errorf("expected an IPv6 address with prefix length such as 2001:2::1/64, got %q", v)
		}
		if a := pf.Addr(); a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
			return fmt.Errorf("expected a unicast IPv6 address, got %s", a)
		}
		p.Addr6 = pf
		return nil
	}},
	{name: "gateway6", optional: true, set: func(p *PortConfig, v string) error {
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
			return fmt.Errorf("expected an IPv6 gateway address without zone such as fe80::1, got %q", v)
		}
		if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
			return fmt.Errorf("expected a unicast IPv6 gateway address, got %s", a)
		}
		p.Gateway6 = a
		return nil
	}},
	{name: "lcore_list", optional: true, set: func(p *PortConfig, v string) error {
		var ids []int
		for f := range strings.SplitSeq(v, ",") {
			n, err := configUint(strings.TrimSpace(f), 0, 63, "lcore id")
			if err != nil {
				return fmt.Errorf("expected comma-separated lcore ids such as 0,1, got %q", v)
			}
			if slices.Contains(ids, int(n)) {
				return fmt.Errorf("expected each lcore once, got %d twice in %q", n, v)
			}
			ids = append(ids, int(n))
		}
		p.LcoreList = ids
		return nil
	}},
	{name: "xdp_mode", set: func(p *PortConfig, v string) (err error) {
		p.XDPMode, err = configEnum(v, nic.XDPAuto, nic.XDPNative, nic.XDPGeneric)
		return err
	}},
	{name: "zerocopy", set: func(p *PortConfig, v string) (err error) {
		p.ZeroCopy, err = configEnum(v, nic.ZeroCopyAuto, nic.ZeroCopyOn, nic.ZeroCopyOff)
		return err
	}},
	{name: "tx_checksum", set: func(p *PortConfig, v string) (err error) {
		p.TxChecksum, err = configEnum(v, nic.TxChecksumAuto, nic.TxChecksumOn, nic.TxChecksumOff, nic.TxChecksumSoftware)
		return err
	}},
	{name: "frames", set: func(p *PortConfig, v string) (err error) {
		p.Frames, err = configPow2(v, 64, 1<<20)
		return err
	}},
	{name: "frame_size", set: func(p *PortConfig, v string) error {
		if v != "2048" && v != "4096" {
			return fmt.Errorf("expected 2048 or 4096, got %q", v)
		}
		p.FrameSize, _ = strconv.Atoi(v)
		return nil
	}},
	{name: "rx_ring", set: func(p *PortConfig, v string) (err error) {
		p.RxRing, err = configPow2(v, 64, 1<<20)
		return err
	}},
	{name: "tx_ring", set: func(p *PortConfig, v string) (err error) {
		p.TxRing, err = configPow2(v, 64, 1<<20)
		return err
	}},
	{name: "pass_to_kernel", set: func(p *PortConfig, v string) (err error) {
		p.PassToKernel, err = configBool(v)
		return err
	}},
	{name: "mtu", optional: true, set: func(p *PortConfig, v string) error {
		n, err := configUint(v, 576, 9000, "bytes")
		p.MTU = int(n)
		return err
	}},
	{name: "multi_buffer", set: func(p *PortConfig, v string) (err error) {
		p.MultiBuffer, err = configEnum(v, MultiBufferAuto, MultiBufferOn, MultiBufferOff)
		return err
	}},
}

func (p *configParser) checkPcap() error {
	c := &p.cfg.Pcap
	// A file must hold its 24-byte header and at least one 16-byte record
	// header with a full snapshot.
	if least := int64(24 + 16 + c.Snaplen); c.Savelen < least {
		return p.errf(p.cfg.lineOf("pcap.savelen", "pcap"), "savelen",
			"expected at least %d bytes (file header, record header and snaplen %d), got %d", least, c.Snaplen, c.Savelen)
	}
	return nil
}

// configEthHdr is the Ethernet header that a frame adds to the MTU, and
// configXDPHeadroom is XDP_PACKET_HEADROOM, which the kernel reserves in each
// UMEM frame in front of the packet (frame_len = chunk_size - headroom -
// XDP_PACKET_HEADROOM in net/xdp/xsk_buff_pool.c): without multi-buffer
// AF_XDP, a larger frame is dropped.
const (
	configEthHdr      = 14
	configXDPHeadroom = 256
)

// configMaxMTU returns the largest MTU whose frames fit in a UMEM frame.
func configMaxMTU(frameSize int) int {
	return frameSize - configXDPHeadroom - configEthHdr
}

// configMaxJumboMTU is the largest MTU a multi-buffer queue takes: the
// stack's own bound (stack.New), which 9000-byte jumbo frames meet.
const configMaxJumboMTU = 9000

func (p *configParser) checkPort(port *PortConfig, before []PortConfig) error {
	line := func(key string) int {
		if l := port.lines[key]; l > 0 {
			return l
		}
		return port.Line
	}
	errf := func(key, format string, args ...any) error {
		return p.errf(line(key), key, format, args...)
	}
	sec := fmt.Sprintf("[port%d]", port.Index)

	if port.Ifname == "" {
		return errf("ifname", "missing in %s, expected the interface name", sec)
	}
	for _, q := range before {
		if q.Ifname == port.Ifname && q.Netns == port.Netns {
			return errf("ifname", "interface %q is already used by [port%d]", port.Ifname, q.Index)
		}
	}

	// IPv4.
	if !port.Addr.IsValid() {
		for _, f := range []struct {
			key string
			a   netip.Addr
		}{{"netmask", port.Netmask}, {"broadcast", port.Broadcast}, {"gateway", port.Gateway}} {
			if f.a.IsValid() {
				return errf(f.key, "needs addr in %s", sec)
			}
		}
		if !port.Addr6.IsValid() {
			return errf("addr", "missing in %s, expected addr (IPv4) or addr6 (IPv6)", sec)
		}
	} else {
		if !port.Netmask.IsValid() {
			port.Netmask = netip.AddrFrom4([4]byte{255, 255, 255, 0})
		}
		pf := port.Prefix()
		net4 := pf.Masked().Addr()
		bcast := configBroadcast(pf)
		if pf.Bits() <= 30 && (port.Addr == net4 || port.Addr == bcast) {
			return errf("addr", "expected a host address of %s, got its network or broadcast address %s", pf.Masked(), port.Addr)
		}
		if port.Broadcast.IsValid() {
			if !pf.Contains(port.Broadcast) || port.Broadcast == port.Addr {
				return errf("broadcast", "expected an address inside %s other than addr, such as %s, got %s", pf.Masked(), bcast, port.Broadcast)
			}
		}
		if port.Gateway.IsValid() {
			if !pf.Contains(port.Gateway) {
				return errf("gateway", "expected an on-link gateway inside %s (addr/netmask), got %s", pf.Masked(), port.Gateway)
			}
			if port.Gateway == port.Addr || (pf.Bits() <= 30 && (port.Gateway == net4 || port.Gateway == bcast)) {
				return errf("gateway", "expected a host of %s other than addr, got %s", pf.Masked(), port.Gateway)
			}
		}
		for _, q := range before {
			if q.Addr == port.Addr {
				return errf("addr", "address %s is already used by [port%d]", port.Addr, q.Index)
			}
		}
	}

	// IPv6.
	if !port.Addr6.IsValid() {
		if port.Gateway6.IsValid() {
			return errf("gateway6", "needs addr6 in %s", sec)
		}
	} else {
		if port.Gateway6.IsValid() {
			if !port.Gateway6.IsLinkLocalUnicast() && !port.Addr6.Masked().Contains(port.Gateway6) {
				return errf("gateway6", "expected an on-link gateway, link-local (fe80::/10) or inside %s, got %s", port.Addr6.Masked(), port.Gateway6)
			}
			if port.Gateway6 == port.Addr6.Addr() {
				return errf("gateway6", "expected a gateway other than addr6, got %s", port.Gateway6)
			}
		}
		for _, q := range before {
			if q.Addr6.IsValid() && q.Addr6.Addr() == port.Addr6.Addr() {
				return errf("addr6", "address %s is already used by [port%d]", port.Addr6.Addr(), q.Index)
			}
		}
	}

	// Queues: one per lcore, each lcore serving one queue of every port.
	lcores := p.cfg.Lcores()
	if port.LcoreList == nil {
		port.LcoreList = lcores
	} else {
		for _, id := range port.LcoreList {
			if !slices.Contains(lcores, id) {
				return errf("lcore_list", "lcore %d is not set in lcore_mask %#x (lcores %s)", id, p.cfg.LcoreMask, configJoinInts(lcores))
			}
		}
		if len(port.LcoreList) != len(lcores) {
			return errf("lcore_list", "expected all %d lcores of lcore_mask %#x (%s), one per queue, got %d",
				len(lcores), p.cfg.LcoreMask, configJoinInts(lcores), len(port.LcoreList))
		}
	}

	// The kernel computes requested checksums in software only for the
	// skbs of copy mode (XDP_UMEM_TX_SW_CSUM).
	if port.TxChecksum == nic.TxChecksumSoftware && port.ZeroCopy == nic.ZeroCopyOn {
		return errf("tx_checksum", "software needs copy mode, and zerocopy is on; expected auto, on or off, or zerocopy=off or auto")
	}

	// UMEM: each ring must be fillable from the frames. Blame the ring if
	// it was set, else frames, which then went below a default ring size.
	for _, r := range []struct {
		key  string
		size int
	}{{"rx_ring", port.RxRing}, {"tx_ring", port.TxRing}} {
		if r.size <= port.Frames {
			continue
		}
		if port.lines[r.key] > 0 {
			return errf(r.key, "expected at most frames (%d), got %d", port.Frames, r.size)
		}
		return errf("frames", "expected at least %s (%d, its default), got %d", r.key, r.size, port.Frames)
	}
	if port.MTU > configMaxMTU(port.FrameSize) && port.MultiBuffer == MultiBufferOff {
		return errf("mtu", "expected at most %d so that a frame fits in frame_size %d (less %d bytes XDP headroom and %d bytes Ethernet header) with multi_buffer=off, got %d; multi_buffer=auto or on takes up to %d",
			configMaxMTU(port.FrameSize), port.FrameSize, configXDPHeadroom, configEthHdr, port.MTU, configMaxJumboMTU)
	}
	return nil
}

// lineOf returns the line of "section.key", else of the section header, else 0.
func (c *Config) lineOf(key, section string) int {
	if l := c.lines[key]; l > 0 {
		return l
	}
	return c.lines[section]
}

// CheckHost checks the configuration against the machine it is about to run
// on: every lcore is a CPU this process may run on, every port's network
// namespace and interface exist (and, when mtu is not set, the interface's
// MTU fits a UMEM frame, or multi-buffer's 9000 when it may be used), and
// the pcap directory exists when capture is on.
// Entering a namespace needs CAP_SYS_ADMIN. Errors are *ConfigError pointing
// at the key to fix.
func (c *Config) CheckHost() error {
	errf := func(line int, key, format string, args ...any) error {
		return &ConfigError{File: c.File, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
	}
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err == nil {
		for _, id := range c.Lcores() {
			if !cpus.IsSet(id) {
				return errf(c.lineOf("xstack.lcore_mask", "xstack"), "lcore_mask",
					"lcore %d is not a CPU this process may run on (allowed: %s)", id, configCPUList(&cpus))
			}
		}
	}
	for i := range c.Ports {
		port := &c.Ports[i]
		line := func(key string) int {
			if l := port.lines[key]; l > 0 {
				return l
			}
			return port.Line
		}
		where := ""
		if port.Netns != "" {
			if !netns.Exists(port.Netns) {
				return errf(line("netns"), "netns", "network namespace %q not found (no %s)", port.Netns, netns.Path(port.Netns))
			}
			where = fmt.Sprintf(" in network namespace %q", port.Netns)
		}
		var ifi *net.Interface
		var lookupErr error
		err := netns.Do(port.Netns, func() error {
			ifi, lookupErr = net.InterfaceByName(port.Ifname)
			return nil
		})
		if err != nil {
			return errf(line("netns"), "netns", "%v", err)
		}
		if lookupErr != nil {
			if configNoSuchInterface(lookupErr) {
				return errf(line("ifname"), "ifname", "interface %q not found%s", port.Ifname, where)
			}
			return errf(line("ifname"), "ifname", "look up interface %q%s: %v", port.Ifname, where, lookupErr)
		}
		switch {
		case port.MTU != 0:
		case ifi.MTU > configMaxMTU(port.FrameSize) && port.MultiBuffer == MultiBufferOff:
			return errf(line("multi_buffer"), "multi_buffer",
				"interface %q%s has MTU %d, but frame_size %d holds at most MTU %d with multi_buffer=off: set multi_buffer=auto or on, set mtu, lower the interface's MTU or raise frame_size",
				port.Ifname, where, ifi.MTU, port.FrameSize, configMaxMTU(port.FrameSize))
		case ifi.MTU > configMaxJumboMTU:
			return errf(line("ifname"), "ifname",
				"interface %q%s has MTU %d, more than the %d the stack takes even with multi-buffer: set mtu or lower the interface's MTU",
				port.Ifname, where, ifi.MTU, configMaxJumboMTU)
		}
	}
	if c.Pcap.Enable {
		fi, err := os.Stat(c.Pcap.Savepath)
		if err != nil || !fi.IsDir() {
			return errf(c.lineOf("pcap.savepath", "pcap"), "savepath", "expected an existing directory for capture files, got %q", c.Pcap.Savepath)
		}
	}
	return nil
}

// configNoSuchInterface reports whether err from net.InterfaceByName means
// that there is no such interface (the net package has no sentinel for it).
func configNoSuchInterface(err error) bool {
	var ne *net.OpError
	if errors.As(err, &ne) && errors.Is(ne.Err, unix.ENODEV) {
		return true
	}
	return strings.Contains(err.Error(), "no such network interface")
}

// configCPUList formats a CPU set as "0-3,6".
func configCPUList(s *unix.CPUSet) string {
	var b strings.Builder
	const n = len(unix.CPUSet{}) * 64
	for i := 0; i < n; i++ {
		if !s.IsSet(i) {
			continue
		}
		j := i
		for j+1 < n && s.IsSet(j+1) {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", i, j)
		} else {
			fmt.Fprintf(&b, "%d", i)
		}
		i = j
	}
	return b.String()
}

func configMaskLcores(m uint64) []int {
	ids := make([]int, 0, bits.OnesCount64(m))
	for m != 0 {
		i := bits.TrailingZeros64(m)
		ids = append(ids, i)
		m &^= 1 << i
	}
	return ids
}

func configJoinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// configMaskBits returns the prefix length of a contiguous IPv4 netmask, or
// -1 if m is not one.
func configMaskBits(m netip.Addr) int {
	if !m.Is4() {
		return -1
	}
	b := m.As4()
	ones, n := net.IPv4Mask(b[0], b[1], b[2], b[3]).Size()
	if n == 0 {
		return -1
	}
	return ones
}

// configBroadcast returns the all-ones host address of pf.
func configBroadcast(pf netip.Prefix) netip.Addr {
	a := pf.Masked().Addr().As4()
	host := ^uint32(0) >> pf.Bits()
	if pf.Bits() == 32 {
		host = 0
	}
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func configBool(v string) (bool, error) {
	switch v {
	case "0":
		return false, nil
	case "1":
		return true, nil
	}
	return false, fmt.Errorf("expected 0 or 1, got %q", v)
}

// configUint parses a decimal in [lo, hi]; unit names what it counts.
func configUint(v string, lo, hi uint64, unit string) (uint64, error) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || v[0] == '+' || n < lo || n > hi {
		return 0, fmt.Errorf("expected %s %d..%d, got %q", unit, lo, hi, v)
	}
	return n, nil
}

// configPow2 parses a power of two in [lo, hi].
func configPow2(v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || v[0] == '+' || v[0] == '-' || n < lo || n > hi || n&(n-1) != 0 {
		return 0, fmt.Errorf("expected a power of two %d..%d, got %q", lo, hi, v)
	}
	return n, nil
}

// sysctls validates the [sysctl] section into Config.Sysctls.
func (p *configParser) sysctls(s configSection) error {
	for _, e := range s.entries {
		if err := stack.CheckSysctl(e.key, e.value); err != nil {
			return p.errf(e.line, configQuoteKey(e.key), "%v", err)
		}
		p.cfg.Sysctls = append(p.cfg.Sysctls, Sysctl{Name: e.key, Value: e.value, Line: e.line})
	}
	return nil
}
