package core

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
	"github.com/xstack/xstack/nic"
	"github.com/xstack/xstack/stack"
)

// configParse parses text as file "test.ini" and fails t on error.
func configParse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := ParseConfig("test.ini", strings.NewReader(text))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	return c
}

// configMinimal is the smallest valid configuration.
const configMinimal = "[port0]\nifname=xs0\naddr=198.18.0.1\n"

func TestParseConfigShipped(t *testing.T) {
	c, err := LoadConfig(filepath.Join("..", "config.ini"))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if c.LcoreMask != 1 || !slices.Equal(c.Lcores(), []int{0}) || c.Mode != ModeProcess {
		t.Errorf("lcores: mask %#x lcores %v mode %q, want 0x1 [0] process", c.LcoreMask, c.Lcores(), c.Mode)
	}
	if len(c.Ports) != 1 {
		t.Fatalf("got %d ports, want 1", len(c.Ports))
	}
	p := c.Ports[0]
	want := []struct {
		name      string
		got, want any
	}{
		{"ifname", p.Ifname, "xs0"},
		{"netns", p.Netns, "xsdemo-s"},
		{"addr", p.Addr, netip.MustParseAddr("198.18.0.1")},
		{"prefix", p.Prefix(), netip.MustParsePrefix("198.18.0.1/16")},
		{"addr6", p.Addr6, netip.MustParsePrefix("2001:2::1/64")},
		{"lcore_list", p.LcoreList, []int{0}},
		{"pass_to_kernel", p.PassToKernel, true},
		{"pcap", c.Pcap.Enable, false},
		{"sysctls", c.Sysctls, []Sysctl{
			{Name: "net.inet.tcp.sack", Value: "1", Line: configLineOf(t, "../config.ini", "net.inet.tcp.sack=")},
			{Name: "net.inet.tcp.cc", Value: "cubic", Line: configLineOf(t, "../config.ini", "net.inet.tcp.cc=")},
		}},
	}
	for _, w := range want {
		if !reflect.DeepEqual(w.got, w.want) {
			t.Errorf("%s: got %v, want %v", w.name, w.got, w.want)
		}
	}
}

// configLineOf returns the 1-based line of the first line of file that
// starts with prefix.
func configLineOf(t *testing.T, file, prefix string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, prefix) {
			return i + 1
		}
	}
	t.Fatalf("%s: no line starts with %q", file, prefix)
	return 0
}

func TestConfigDefaults(t *testing.T) {
	got := configParse(t, configMinimal)
	want := &Config{
		File:      "test.ini",
		LcoreMask: 1,
		BusyPoll:  true,
		IdleSleep: 0,
		TxFlush:   100 * time.Microsecond,
		Mode:      ModeProcess,

		Shutdown:        ShutdownFIN,
		ShutdownTimeout: 2 * time.Second,
		GC:              GCPolicy{Percent: 100, Headroom: 256 << 20},
		Ports: []PortConfig{{
			Index:        0,
			Line:         1,
			Ifname:       "xs0",
			Addr:         netip.MustParseAddr("198.18.0.1"),
			Netmask:      netip.MustParseAddr("255.255.255.0"),
			LcoreList:    []int{0},
			XDPMode:      nic.XDPAuto,
			ZeroCopy:     nic.ZeroCopyAuto,
			TxChecksum:   nic.TxChecksumOff,
			Frames:       4096,
			FrameSize:    2048,
			RxRing:       2048,
			TxRing:       2048,
			PassToKernel: true,
			MultiBuffer:  MultiBufferAuto,
		}},
		Pcap: PcapConfig{Enable: false, Snaplen: 96, Savelen: 16777216, Savepath: "."},
	}
	got.lines = nil
	for i := range got.Ports {
		got.Ports[i].lines = nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults (-want +got):\n-%+v\n+%+v", want, got)
	}
}

func TestConfigValues(t *testing.T) {
	c := configParse(t, `
[xstack]
lcore_mask=0x6
busy_poll=0
idle_sleep=50
tx_flush_us=0
mode=thread
shutdown=rst
shutdown_timeout_ms=0
gc_percent=200
gc_headroom_mb=0
memory_limit_mb=2048
[port1]
ifname=xs1
addr6=2001:2::11/64
gateway6=fe80::1
[port0]
ifname=xs0
netns=demo
addr=10.1.2.3
netmask=255.255.252.0
broadcast=10.1.3.255
gateway=10.1.0.1
addr6=2001:2::1/64
gateway6=2001:2::ffff
lcore_list=2,1
xdp_mode=generic
zerocopy=off
tx_checksum=software
frames=8192
frame_size=4096
rx_ring=4096
tx_ring=1024
pass_to_kernel=0
mtu=3000
[pcap]
enable=1
snaplen=65535
savelen=1048576
savepath=/var/tmp/x#y
[sysctl]
net.inet.tcp.cc=reno
net.inet.tcp.syncookies=2
net.inet.ip.ttl=255
`)
	if c.LcoreMask != 6 || c.BusyPoll || c.IdleSleep != 50*time.Microsecond || c.TxFlush != 0 || c.Mode != ModeThread ||
		c.Shutdown != ShutdownRST || c.ShutdownTimeout != 0 || c.GC != (GCPolicy{Percent: 200, MemoryLimit: 2 << 30}) {
		t.Errorf("[xstack]: got %+v", c)
	}
	if len(c.Ports) != 2 || c.Ports[0].Index != 0 || c.Ports[1].Index != 1 {
		t.Fatalf("ports not in order: %+v", c.Ports)
	}
	p := c.Ports[0]
	if p.Netns != "demo" || p.Prefix() != netip.MustParsePrefix("10.1.2.3/22") ||
		p.Broadcast != netip.MustParseAddr("10.1.3.255") || p.Gateway != netip.MustParseAddr("10.1.0.1") ||
		p.Gateway6 != netip.MustParseAddr("2001:2::ffff") || !slices.Equal(p.LcoreList, []int{2, 1}) ||
		p.XDPMode != nic.XDPGeneric || p.ZeroCopy != nic.ZeroCopyOff || p.TxChecksum != nic.TxChecksumSoftware || p.Frames != 8192 || p.FrameSize != 4096 ||
		p.RxRing != 4096 || p.TxRing != 1024 || p.PassToKernel || p.MTU != 3000 {
		t.Errorf("[port0]: got %+v", p)
	}
	if p := c.Ports[1]; p.Addr.IsValid() || p.Addr6 != netip.MustParsePrefix("2001:2::11/64") || !slices.Equal(p.LcoreList, []int{1, 2}) {
		t.Errorf("[port1]: got %+v", p)
	}
	if want := (PcapConfig{Enable: true, Snaplen: 65535, Savelen: 1 << 20, Savepath: "/var/tmp/x#y"}); c.Pcap != want {
		t.Errorf("[pcap]: got %+v, want %+v", c.Pcap, want)
	}
	wantSys := []Sysctl{
		{Name: "net.inet.tcp.cc", Value: "reno", Line: 42},
		{Name: "net.inet.tcp.syncookies", Value: "2", Line: 43},
		{Name: "net.inet.ip.ttl", Value: "255", Line: 44},
	}
	if !slices.Equal(c.Sysctls, wantSys) {
		t.Errorf("[sysctl]: got %+v, want %+v", c.Sysctls, wantSys)
	}
}

func TestConfigComments(t *testing.T) {
	tests := []struct {
		name, text string
		check      func(*Config) bool
	}{
		{"semicolon line", "; c\n" + configMinimal, nil},
		{"hash line", "# c\n" + configMinimal, nil},
		{"indented comment", "   ; c\n\t# c\n" + configMinimal, nil},
		{"trailing after space", configMinimal + "frames=8192 ; more frames\n",
			func(c *Config) bool { return c.Ports[0].Frames == 8192 }},
		{"trailing after tab", configMinimal + "frames=8192\t# more frames\n",
			func(c *Config) bool { return c.Ports[0].Frames == 8192 }},
		{"trailing after header", "[port0] ; the first port\nifname=xs0\naddr=198.18.0.1\n", nil},
		{"hash inside value", "[pcap]\nsavepath=/tmp/a#b;c\n" + configMinimal,
			func(c *Config) bool { return c.Pcap.Savepath == "/tmp/a#b;c" }},
		{"blank lines and CRLF", "\r\n\r\n[port0]\r\n  ifname = xs0  \r\naddr=198.18.0.1\r\n\r\n", nil},
		{"BOM", "\ufeff" + configMinimal, nil},
		{"empty optional value", configMinimal + "netns=       ; none\ngateway=\nmtu=\n",
			func(c *Config) bool {
				return c.Ports[0].Netns == "" && !c.Ports[0].Gateway.IsValid() && c.Ports[0].MTU == 0
			}},
		{"no trailing newline", strings.TrimSuffix(configMinimal, "\n"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := configParse(t, tt.text)
			if c.Ports[0].Ifname != "xs0" {
				t.Errorf("ifname = %q, want xs0", c.Ports[0].Ifname)
			}
			if tt.check != nil && !tt.check(c) {
				t.Errorf("unexpected result: %+v", c)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	const port0 = "[port0]\nifname=xs0\naddr=198.18.0.1\n" // lines 1-3
	tests := []struct {
		name string
		text string
		want string // exact "file:line: key: " prefix
		msg  string // part of what was expected
	}{
		// Syntax.
		{"no equals", port0 + "frames\n", "test.ini:4: frames: ", "expected key=value"},
		{"empty key", port0 + "=5\n", "test.ini:4: =5: ", "empty key"},
		{"unclosed header", "[port0\n", "test.ini:1: [port0: ", "expected a section header"},
		{"key before section", "frames=1\n" + port0, "test.ini:1: frames: ", "key outside a section"},
		{"unknown section", port0 + "\n[port9x]\n", "test.ini:5: [port9x]: ", "unknown section, expected [xstack], [portN], [pcap] or [sysctl]"},
		{"unknown section name", "[dpdk]\n", "test.ini:1: [dpdk]: ", "unknown section"},
		{"port leading zero", "[port01]\n", "test.ini:1: [port01]: ", "without leading zeros"},
		{"port too large", "[port64]\n", "test.ini:1: [port64]: ", "N 0..63"},
		{"section case", "[XSTACK]\n", "test.ini:1: [XSTACK]: ", "unknown section"},
		{"duplicate section", port0 + "[port0]\n", "test.ini:4: [port0]: ", "duplicate section, already started on line 1"},
		{"duplicate key", port0 + "ifname=xs1\n", "test.ini:4: ifname: ", "duplicate key, already set on line 2"},
		{"unknown key", port0 + "queues=2\n", "test.ini:4: queues: ", "unknown key in [port0], expected one of ifname, netns,"},
		{"unknown xstack key", "[xstack]\nnb_ports=1\n" + port0, "test.ini:2: nb_ports: ", "unknown key in [xstack]"},
		{"quoted odd key", port0 + "a:b=1\n", `test.ini:4: "a:b": `, "unknown key"},

		// [xstack] values.
		{"lcore_mask not hex", "[xstack]\nlcore_mask=0xg\n" + port0, "test.ini:2: lcore_mask: ", `expected a hex lcore bit mask such as 3 or 0xf (at most 64 lcores), got "0xg"`},
		{"lcore_mask zero", "[xstack]\nlcore_mask=0\n" + port0, "test.ini:2: lcore_mask: ", "at least one lcore"},
		{"lcore_mask too wide", "[xstack]\nlcore_mask=1ffffffffffffffff\n" + port0, "test.ini:2: lcore_mask: ", "at most 64 lcores"},
		{"lcore_mask empty", "[xstack]\nlcore_mask=\n" + port0, "test.ini:2: lcore_mask: ", `got ""`},
		{"busy_poll", "[xstack]\nbusy_poll=yes\n" + port0, "test.ini:2: busy_poll: ", `expected 0 or 1, got "yes"`},
		{"idle_sleep negative", "[xstack]\nidle_sleep=-1\n" + port0, "test.ini:2: idle_sleep: ", "expected microseconds 0..1000000"},
		{"tx_flush_us plus", "[xstack]\ntx_flush_us=+1\n" + port0, "test.ini:2: tx_flush_us: ", "expected microseconds"},
		{"mode", "[xstack]\nmode=primary\n" + port0, "test.ini:2: mode: ", `expected process or thread, got "primary"`},
		{"shutdown", "[xstack]\nshutdown=linger\n" + port0, "test.ini:2: shutdown: ", `expected fin or rst, got "linger"`},
		{"shutdown empty", "[xstack]\nshutdown=\n" + port0, "test.ini:2: shutdown: ", `expected fin or rst, got ""`},
		{"gc_percent too small", "[xstack]\ngc_percent=5\n" + port0, "test.ini:2: gc_percent: ", `expected a percentage 10..10000, got "5"`},
		{"gc_headroom_mb negative", "[xstack]\ngc_headroom_mb=-1\n" + port0, "test.ini:2: gc_headroom_mb: ", `expected MiB 0..1048576, got "-1"`},
		{"memory_limit_mb too large", "[xstack]\nmemory_limit_mb=1048577\n" + port0, "test.ini:2: memory_limit_mb: ", `expected MiB 0..1048576, got "1048577"`},
		{"shutdown_timeout_ms too long", "[xstack]\nshutdown_timeout_ms=60001\n" + port0, "test.ini:2: shutdown_timeout_ms: ", `expected milliseconds 0..60000, got "60001"`},
		{"shutdown_timeout_ms unit", "[xstack]\nshutdown_timeout_ms=2s\n" + port0, "test.ini:2: shutdown_timeout_ms: ", "expected milliseconds 0..60000"},

		// [portN] values.
		{"ifname too long", "[port0]\nifname=abcdefghijklmnop\n", "test.ini:2: ifname: ", "at most 15 characters"},
		{"ifname empty", "[port0]\nifname=\n", "test.ini:2: ifname: ", "expected an interface name"},
		{"netns slash", port0 + "netns=../x\n", "test.ini:4: netns: ", "expected a network namespace name"},
		{"addr v6", "[port0]\nifname=xs0\naddr=2001:2::1\n", "test.ini:3: addr: ", "expected an IPv4 address"},
		{"addr junk", "[port0]\nifname=xs0\naddr=198.18.0\n", "test.ini:3: addr: ", "expected an IPv4 address"},
		{"addr multicast", "[port0]\nifname=xs0\naddr=224.0.0.1\n", "test.ini:3: addr: ", "expected a unicast IPv4 address"},
		{"netmask holes", port0 + "netmask=255.0.255.0\n", "test.ini:4: netmask: ", "expected a dotted netmask"},
		{"netmask prefix form", port0 + "netmask=/24\n", "test.ini:4: netmask: ", "expected a dotted netmask"},
		{"netmask zero", port0 + "netmask=0.0.0.0\n", "test.ini:4: netmask: ", "expected a dotted netmask"},
		{"broadcast junk", port0 + "broadcast=x\n", "test.ini:4: broadcast: ", "expected an IPv4 broadcast address"},
		{"gateway junk", port0 + "gateway=fe80::1\n", "test.ini:4: gateway: ", "expected an IPv4 gateway address"},
		{"addr6 no prefix", port0 + "addr6=2001:2::1\n", "test.ini:4: addr6: ", "expected an IPv6 address with prefix length"},
		{"addr6 v4", port0 + "addr6=198.18.0.1/16\n", "test.ini:4: addr6: ", "expected an IPv6 address"},
		{"addr6 multicast", port0 + "addr6=ff02::1/64\n", "test.ini:4: addr6: ", "expected a unicast IPv6 address"},
		{"gateway6 zone", port0 + "addr6=2001:2::1/64\ngateway6=fe80::1%xs0\n", "test.ini:5: gateway6: ", "without zone"},
		{"lcore_list junk", port0 + "lcore_list=0,a\n", "test.ini:4: lcore_list: ", `expected comma-separated lcore ids such as 0,1, got "0,a"`},
		{"lcore_list repeat", "[xstack]\nlcore_mask=3\n" + port0 + "lcore_list=1,1\n", "test.ini:6: lcore_list: ", "got 1 twice"},
		{"xdp_mode", port0 + "xdp_mode=skb\n", "test.ini:4: xdp_mode: ", `expected auto, native or generic, got "skb"`},
		{"zerocopy", port0 + "zerocopy=1\n", "test.ini:4: zerocopy: ", `expected auto, on or off, got "1"`},
		{"tx_checksum", port0 + "tx_checksum=hw\n", "test.ini:4: tx_checksum: ", `expected auto, on, off or software, got "hw"`},
		{"tx_checksum software zerocopy", port0 + "zerocopy=on\ntx_checksum=software\n", "test.ini:5: tx_checksum: ", "software needs copy mode, and zerocopy is on"},
		{"frames not power of two", port0 + "frames=5000\n", "test.ini:4: frames: ", `expected a power of two 64..1048576, got "5000"`},
		{"frames too small", port0 + "frames=32\n", "test.ini:4: frames: ", "power of two 64..1048576"},
		{"frame_size", port0 + "frame_size=1024\n", "test.ini:4: frame_size: ", `expected 2048 or 4096, got "1024"`},
		{"rx_ring", port0 + "rx_ring=1000\n", "test.ini:4: rx_ring: ", "power of two"},
		{"tx_ring", port0 + "tx_ring=-64\n", "test.ini:4: tx_ring: ", "power of two"},
		{"pass_to_kernel", port0 + "pass_to_kernel=2\n", "test.ini:4: pass_to_kernel: ", "expected 0 or 1"},
		{"mtu low", port0 + "mtu=500\n", "test.ini:4: mtu: ", "expected bytes 576..9000"},
		{"mtu high", port0 + "mtu=9001\n", "test.ini:4: mtu: ", "expected bytes 576..9000"},
		{"multi_buffer", port0 + "multi_buffer=1\n", "test.ini:4: multi_buffer: ", `expected auto, on or off, got "1"`},

		// [pcap] values.
		{"pcap enable", "[pcap]\nenable=true\n" + port0, "test.ini:2: enable: ", "expected 0 or 1"},
		{"snaplen zero", "[pcap]\nsnaplen=0\n" + port0, "test.ini:2: snaplen: ", "expected bytes 1..65535"},
		{"savelen junk", "[pcap]\nsavelen=16M\n" + port0, "test.ini:2: savelen: ", "expected bytes"},
		{"savepath empty", "[pcap]\nsavepath=\n" + port0, "test.ini:2: savepath: ", "expected a directory"},

		// [sysctl] values.
		{"sysctl unknown", port0 + "[sysctl]\nnet.inet.tcp.nosuch=1\n", "test.ini:5: net.inet.tcp.nosuch: ", "unknown sysctl, expected one of net.inet.ip.forwarding,"},
		{"sysctl bool", port0 + "[sysctl]\nnet.inet.tcp.sack=on\n", "test.ini:5: net.inet.tcp.sack: ", `expected 0 or 1, got "on"`},
		{"sysctl cc", port0 + "[sysctl]\nnet.inet.tcp.cc=bbr\n", "test.ini:5: net.inet.tcp.cc: ", `expected reno or cubic, got "bbr"`},
		{"sysctl sendspace", port0 + "[sysctl]\nnet.inet.tcp.sendspace=1024\n", "test.ini:5: net.inet.tcp.sendspace: ", "expected bytes 4096..1073741824"},
		{"sysctl empty", port0 + "[sysctl]\nnet.inet.ip.ttl=\n", "test.ini:5: net.inet.ip.ttl: ", "expected hops 1..255"},
		{"sysctl duplicate", port0 + "[sysctl]\nnet.inet.ip.ttl=1\nnet.inet.ip.ttl=2\n", "test.ini:6: net.inet.ip.ttl: ", "duplicate key, already set on line 5"},

		// Cross-field checks point at the offending key.
		{"no port", "[xstack]\nlcore_mask=1\n", "test.ini:2: [port0]: ", "no [portN] section"},
		{"empty file", "", "test.ini:1: [port0]: ", "no [portN] section"},
		{"port gap", port0 + "[port2]\nifname=xs2\naddr=198.18.0.2\n", "test.ini:4: [port2]: ", "expected [port1] first"},
		{"ifname missing", "[port0]\naddr=198.18.0.1\n", "test.ini:1: ifname: ", "missing in [port0]"},
		{"ifname reused", port0 + "[port1]\nifname=xs0\naddr=198.19.0.1\n", "test.ini:5: ifname: ", `interface "xs0" is already used by [port0]`},
		{"addr missing", "[port0]\nifname=xs0\n", "test.ini:1: addr: ", "missing in [port0], expected addr (IPv4) or addr6 (IPv6)"},
		{"addr empty", "[port0]\nifname=xs0\naddr=\n", "test.ini:3: addr: ", "missing in [port0]"},
		{"addr reused", port0 + "[port1]\nifname=xs1\naddr=198.18.0.1\n", "test.ini:6: addr: ", "already used by [port0]"},
		{"netmask without addr", "[port0]\nifname=xs0\naddr6=2001:2::1/64\nnetmask=255.255.0.0\n", "test.ini:4: netmask: ", "needs addr"},
		{"gateway without addr", "[port0]\nifname=xs0\naddr6=2001:2::1/64\ngateway=1.2.3.4\n", "test.ini:4: gateway: ", "needs addr"},
		{"addr is network", "[port0]\nifname=xs0\naddr=198.18.0.0\nnetmask=255.255.0.0\n", "test.ini:3: addr: ", "network or broadcast"},
		{"broadcast outside", port0 + "broadcast=198.18.1.255\n", "test.ini:4: broadcast: ", "expected an address inside 198.18.0.0/24"},
		{"gateway off-link", port0 + "gateway=198.19.0.1\n", "test.ini:4: gateway: ", "expected an on-link gateway inside 198.18.0.0/24"},
		{"gateway is addr", port0 + "gateway=198.18.0.1\n", "test.ini:4: gateway: ", "other than addr"},
		{"gateway off-link after netmask", port0 + "gateway=198.18.1.1\nnetmask=255.255.255.0\n", "test.ini:4: gateway: ", "on-link"},
		{"gateway6 without addr6", port0 + "gateway6=fe80::1\n", "test.ini:4: gateway6: ", "needs addr6"},
		{"gateway6 off-link", port0 + "addr6=2001:2::1/64\ngateway6=2001:3::1\n", "test.ini:5: gateway6: ", "expected an on-link gateway, link-local (fe80::/10) or inside 2001:2::/64"},
		{"lcore_list not in mask", port0 + "lcore_list=1\n", "test.ini:4: lcore_list: ", "lcore 1 is not set in lcore_mask 0x1 (lcores 0)"},
		{"lcore_list too short", "[xstack]\nlcore_mask=3\n" + port0 + "lcore_list=1\n", "test.ini:6: lcore_list: ", "expected all 2 lcores of lcore_mask 0x3 (0,1), one per queue, got 1"},
		{"rx_ring > frames", port0 + "frames=1024\nrx_ring=2048\ntx_ring=512\n", "test.ini:5: rx_ring: ", "expected at most frames (1024), got 2048"},
		{"tx_ring > frames", port0 + "frames=1024\nrx_ring=512\ntx_ring=2048\n", "test.ini:6: tx_ring: ", "expected at most frames (1024), got 2048"},
		{"frames < default ring", port0 + "frames=1024\ntx_ring=512\n", "test.ini:4: frames: ", "expected at least rx_ring (2048, its default), got 1024"},
		{"mtu > frame without multi-buffer", port0 + "mtu=9000\nmulti_buffer=off\n", "test.ini:4: mtu: ", "expected at most 1778 so that a frame fits in frame_size 2048 (less 256 bytes XDP headroom and 14 bytes Ethernet header) with multi_buffer=off, got 9000; multi_buffer=auto or on takes up to 9000"},
		{"savelen < snaplen", "[pcap]\nsnaplen=1000\nsavelen=100\n" + port0, "test.ini:3: savelen: ", "expected at least 1040 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig("test.ini", strings.NewReader(tt.text))
			if err == nil {
				t.Fatalf("ParseConfig succeeded (%+v), want error %q", c, tt.want+tt.msg)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is %T, want *ConfigError", err, err)
			}
			if got := fmt.Sprintf("%s:%d: %s: ", ce.File, ce.Line, ce.Key); got != tt.want {
				t.Errorf("fields give %q, want %q", got, tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) || !strings.Contains(ce.Msg, tt.msg) {
				t.Errorf("error:\n got  %q\n want %q...%q", err, tt.want, tt.msg)
			}
		})
	}
}

func TestConfigLongLine(t *testing.T) {
	text := configMinimal + "netns=" + strings.Repeat("a", configMaxLine) + "\n"
	_, err := ParseConfig("test.ini", strings.NewReader(text))
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Line != 4 {
		t.Errorf("got %v, want a *ConfigError on line 4", err)
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "nope.ini"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("got %v, want an error matching os.ErrNotExist", err)
	}
}

func TestConfigSysctlNames(t *testing.T) {
	names := stack.SysctlNames()
	if len(names) != 28 || !slices.IsSorted(names) {
		t.Errorf("stack.SysctlNames() = %v, want 28 sorted names", names)
	}
	if names[0] != "net.inet.ip.forwarding" {
		t.Errorf("first name %q, want net.inet.ip.forwarding", names[0])
	}
	names[0] = "x" // callers may not change the table
	if stack.SysctlNames()[0] != "net.inet.ip.forwarding" {
		t.Error("SysctlNames returned shared storage")
	}
}

func TestConfigCheckSysctl(t *testing.T) {
	tests := []struct {
		name, value string
		ok          bool
	}{
		{"net.inet.tcp.sack", "0", true},
		{"net.inet.tcp.sack", "1", true},
		{"net.inet.tcp.sack", "2", false},
		{"net.inet.tcp.rack", "0", true},
		{"net.inet.tcp.rack", "1", true},
		{"net.inet.tcp.rack", "yes", false},
		{"net.inet.tcp.tw_max", "0", true},
		{"net.inet.tcp.tw_max", "4194304", true},
		{"net.inet.tcp.tw_max", "4194305", false},
		{"net.inet.tcp.cc", "cubic", true},
		{"net.inet.tcp.cc", "reno", true},
		{"net.inet.tcp.cc", "Cubic", false},
		{"net.inet.tcp.sendspace", "4096", true},
		{"net.inet.tcp.sendspace", "4095", false},
		{"net.inet.tcp.recvspace", "1048576", true},
		{"net.inet.tcp.recvspace", "1k", false},
		{"net.inet.tcp.delayed_ack", "1", true},
		{"net.inet.tcp.gro", "0", true},
		{"net.inet.tcp.gro", "on", false},
		{"net.inet.tcp.gso", "0", true},
		{"net.inet.tcp.gso", "2", false},
		{"net.inet.tcp.nodelay", "1", true},
		{"net.inet.tcp.msl", "30000", true},
		{"net.inet.tcp.msl", "0", false},
		{"net.inet.tcp.rexmit_min", "20", true},
		{"net.inet.tcp.rexmit_min", "0", false},
		{"net.inet.tcp.rexmit_max", "3600000", true},
		{"net.inet.tcp.rexmit_max", "3600001", false},
		{"net.inet.tcp.keepidle", "7200", true},
		{"net.inet.tcp.keepintvl", "75", true},
		{"net.inet.tcp.keepcnt", "9", true},
		{"net.inet.tcp.keepcnt", "128", false},
		{"net.inet.tcp.always_keepalive", "1", true},
		{"net.inet.tcp.always_keepalive", "2", false},
		{"net.inet.tcp.user_timeout", "0", true},
		{"net.inet.tcp.user_timeout", "30000", true},
		{"net.inet.tcp.user_timeout", "-1", false},
		{"net.inet.tcp.mem_limit", "0", true},
		{"net.inet.tcp.mem_limit", "65536", true},
		{"net.inet.tcp.mem_limit", "1099511627776", true},
		{"net.inet.tcp.mem_limit", "1", false},
		{"net.inet.tcp.mem_limit", "65535", false},
		{"net.inet.tcp.mem_limit", "1099511627777", false},
		{"net.inet.tcp.mem_limit", "00", false},
		{"net.inet.tcp.mem_limit", "-1", false},
		{"net.inet.tcp.syn_guard", "0", true},
		{"net.inet.tcp.syn_guard", "50000", true},
		{"net.inet.tcp.syn_guard", "-5", false},
		{"net.inet.tcp.syncookies", "0", true},
		{"net.inet.tcp.syncookies", "2", true},
		{"net.inet.tcp.syncookies", "3", false},
		{"net.inet.tcp.moderate_rcvbuf", "1", true},
		{"net.inet.tcp.timestamps", "0", true},
		{"net.inet.tcp.mss_default", "536", true},
		{"net.inet.tcp.mss_default", "87", false},
		{"net.inet.tcp.tw_reuse", "1", true},
		{"net.inet.ip.ttl", "64", true},
		{"net.inet.ip.ttl", "0", false},
		{"net.inet.ip.ttl", "256", false},
		{"net.inet.ip.forwarding", "0", true},
		{"net.inet6.ip6.hlim", "255", true},
		{"net.inet6.ip6.hlim", " 64", false},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.name] = true
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			err := stack.CheckSysctl(tt.name, tt.value)
			if (err == nil) != tt.ok {
				t.Errorf("CheckSysctl(%q, %q) = %v, want ok=%v", tt.name, tt.value, err, tt.ok)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "expected ") {
				t.Errorf("error %q does not say what was expected", err)
			}
		})
	}
	for _, n := range stack.SysctlNames() {
		if !seen[n] {
			t.Errorf("no test for %s", n)
		}
	}
	if err := stack.CheckSysctl("net.inet.tcp.nosuch", "1"); !errors.Is(err, stack.ErrUnknownSysctl) {
		t.Errorf("unknown name: got %v, want ErrUnknownSysctl", err)
	}
}

func TestConfigCheckHost(t *testing.T) {
	missingNS := fmt.Sprintf("xstack-test-missing-%d", os.Getpid())
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	var cpus unix.CPUSet
	if err := unix.SchedGetaffinity(0, &cpus); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		text string
		want string // exact error, "" for none
	}{
		{"missing netns",
			"[port0]\nifname=xs0\nnetns=" + missingNS + "\naddr=198.18.0.1\n",
			`test.ini:3: netns: network namespace "` + missingNS + `" not found (no /var/run/netns/` + missingNS + `)`},
		{"missing interface here",
			"[port0]\nifname=xsnope0\naddr=198.18.0.1\n",
			`test.ini:2: ifname: interface "xsnope0" not found`},
		{"loopback here", "[port0]\nifname=lo\naddr=198.18.0.1\nmtu=1500\n", ""},
		{"loopback MTU too big", "[port0]\nifname=lo\naddr=198.18.0.1\nmulti_buffer=off\n",
			fmt.Sprintf(`test.ini:4: multi_buffer: interface "lo" has MTU %d, but frame_size 2048 holds at most MTU 1778 with multi_buffer=off: set multi_buffer=auto or on, set mtu, lower the interface's MTU or raise frame_size`, lo.MTU)},
		{"loopback MTU too big for multi-buffer", "[port0]\nifname=lo\naddr=198.18.0.1\n",
			fmt.Sprintf(`test.ini:2: ifname: interface "lo" has MTU %d, more than the 9000 the stack takes even with multi-buffer: set mtu or lower the interface's MTU`, lo.MTU)},
		{"lcore not allowed", "[xstack]\nlcore_mask=8000000000000000\n[port0]\nifname=lo\naddr=198.18.0.1\nmtu=1500\n",
			"test.ini:2: lcore_mask: lcore 63 is not a CPU this process may run on"},
		{"pcap directory missing", "[port0]\nifname=lo\naddr=198.18.0.1\nmtu=1500\n[pcap]\nenable=1\nsavepath=/nonexistent/xstack\n",
			`test.ini:7: savepath: expected an existing directory for capture files, got "/nonexistent/xstack"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if (tt.name == "loopback MTU too big" && lo.MTU <= configMaxMTU(2048)) ||
				(tt.name == "loopback MTU too big for multi-buffer" && lo.MTU <= configMaxJumboMTU) ||
				(tt.name == "lcore not allowed" && cpus.IsSet(63)) {
				t.Skip("this host does not have the condition the case needs")
			}
			c := configParse(t, tt.text)
			err := c.CheckHost()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("CheckHost: %v", err)
			case tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)):
				t.Errorf("CheckHost:\n got  %v\n want %s", err, tt.want)
			}
		})
	}
}

// TestConfigCheckHostRig checks a port inside a real network namespace.
func TestConfigCheckHostRig(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	base := fmt.Sprintf("[port0]\nnetns=%s\naddr=198.18.0.1\n", r.StackNS)

	c := configParse(t, base+"ifname="+r.StackIf+"\n")
	if err := c.CheckHost(); err != nil {
		t.Errorf("CheckHost on the rig: %v", err)
	}

	c = configParse(t, base+"ifname=xs9\n")
	want := fmt.Sprintf(`test.ini:4: ifname: interface "xs9" not found in network namespace %q`, r.StackNS)
	if err := c.CheckHost(); err == nil || err.Error() != want {
		t.Errorf("CheckHost:\n got  %v\n want %s", err, want)
	}
}

func TestParseConfigTestdata(t *testing.T) {
	files, err := filepath.Glob("testdata/config/*.ini")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata/config/*.ini: %v", err)
	}
	for _, name := range files {
		t.Run(filepath.Base(name), func(t *testing.T) {
			c, err := LoadConfig(name)
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			if c.File != name {
				t.Errorf("File = %q, want %q", c.File, name)
			}
		})
	}
	c, err := LoadConfig("testdata/config/full.ini")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Sysctls) != len(stack.SysctlNames()) || len(c.Ports) != 2 || !slices.Equal(c.Ports[1].LcoreList, []int{0, 1}) {
		t.Errorf("full.ini: got %+v", c)
	}
}

func TestConfigMultiBuffer(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		ifMTU int
		want  bool
	}{
		{"default, MTU fits", "", 1500, false},
		{"default, interface MTU 9000", "", 9000, true},
		{"default, largest MTU one frame holds", "", 1778, false},
		{"default, one byte more", "", 1779, true},
		{"default, mtu set over the interface's", "mtu=9000\n", 1500, true},
		{"default, mtu set under the interface's", "mtu=1500\n", 9000, false},
		{"frame_size 4096 holds 3826", "frame_size=4096\nmtu=3826\n", 9000, false},
		{"frame_size 4096, 3827", "frame_size=4096\nmtu=3827\n", 1500, true},
		{"on, MTU fits", "multi_buffer=on\n", 1500, true},
		{"off, mtu fits", "multi_buffer=off\nmtu=1500\n", 9000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := configParse(t, configMinimal+tt.extra)
			if got := c.Ports[0].UseMultiBuffer(tt.ifMTU); got != tt.want {
				t.Errorf("UseMultiBuffer(%d) = %v, want %v", tt.ifMTU, got, tt.want)
			}
		})
	}
}

// TestMultiBufferRefused checks the error of a queue that the kernel or
// driver would not bind with multi-buffer: it points at the key that
// asked for it and says what to set instead.
func TestMultiBufferRefused(t *testing.T) {
	refused := &nic.NotSupportedError{Feature: "AF_XDP multi-buffer (XDP_USE_SG, Linux 6.6)", Hint: "turn multi-buffer off and keep the MTU within one frame"}
	tests := []struct {
		name  string
		extra string
		ifMTU int
		want  string
	}{
		{"auto, interface MTU", "", 9000,
			"test.ini:2: ifname: MTU 9000 does not fit one frame of frame_size 2048, so it needs AF_XDP multi-buffer (multi_buffer=auto), and xs0 refused it: " + refused.Error() + "; lower the MTU to at most 1778, or to 3826 with frame_size=4096"},
		{"auto, mtu", "mtu=9000\nframe_size=4096\n", 1500,
			"test.ini:4: mtu: MTU 9000 does not fit one frame of frame_size 4096, so it needs AF_XDP multi-buffer (multi_buffer=auto), and xs0 refused it: " + refused.Error() + "; lower the MTU to at most 3826"},
		{"on, MTU fits", "multi_buffer=on\n", 1500,
			"test.ini:4: multi_buffer: multi_buffer=on asks for AF_XDP multi-buffer, and xs0 refused it: " + refused.Error() + "; set multi_buffer=auto or off: MTU 1500 fits one frame"},
		{"on, MTU needs it", "multi_buffer=on\nmtu=9000\n", 1500,
			"test.ini:4: multi_buffer: multi_buffer=on asks for AF_XDP multi-buffer, which MTU 9000 needs, and xs0 refused it: " + refused.Error() + "; lower the MTU to at most 1778, which one frame of frame_size 2048 holds, and set multi_buffer=auto or off"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := configParse(t, configMinimal+tt.extra)
			err := multiBufferRefused(c, &c.Ports[0], tt.ifMTU, refused)
			var ce *ConfigError
			if !errors.As(err, &ce) || err.Error() != tt.want {
				t.Errorf("got  %v\nwant %s", err, tt.want)
			}
		})
	}
}
