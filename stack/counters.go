package stack

import (
	"reflect"
	"strings"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// Counter is one named counter of a stack.
type Counter struct {
	Name  string // dotted, e.g. "tcp.checksum_errors", "link.rx_malformed"
	Value uint64
}

// Counters returns every counter of the stack: the link endpoint's and all
// of gVisor's protocol counters, by dotted lower-case name, in a stable
// order. It walks gVisor's Stats with reflection, so it is for tools and
// tests, not for the data path.
func (st *Stack) Counters() []Counter {
	ls := st.ep.stats()
	out := []Counter{
		{"link.rx_frames", ls.RxFrames},
		{"link.rx_malformed", ls.RxMalformed},
		{"link.rx_not_for_us", ls.RxNotForUs},
		{"link.rx_unknown_ethertype", ls.RxUnknown},
		{"link.rx_syn_fin", ls.RxSynFin},
		{"link.rx_bad_checksum", ls.RxBadChecksum},
		{"link.gro_merged", ls.GROMerged},
		{"link.syn_guard_engaged", ls.SynGuardEngaged},
		{"link.syn_guard_dropped", ls.SynGuardDropped},
		{"link.syn_guard_passed", ls.SynGuardPassed},
		{"link.tx_frames", ls.TxFrames},
		{"link.tx_dropped", ls.TxDropped},
		{"link.acks_elided", ls.AcksElided},
		{"link.fins_joined", ls.FinsJoined},
		{"link.gso_packets", ls.GSOPackets},
		{"link.gso_frames", ls.GSOFrames},
		{"link.zero_window_acks", ls.ZeroWindowAcks},
		{"link.tw_entered", ls.TimeWaitEntered},
		{"link.tw_acks", ls.TimeWaitAcks},
		{"link.tw_evicted", ls.TimeWaitEvicted},
		{"link.tw_held", ls.TimeWaitHeld},
		{"connect.rss_picked", st.active.steered.Value()},
		{"connect.rss_fallback", st.active.fallback.Value()},
	}
	s := st.s.Stats()
	return walkStats(reflect.ValueOf(s), "", out)
}

var statCounterType = reflect.TypeOf((*tcpip.StatCounter)(nil))

func walkStats(v reflect.Value, prefix string, out []Counter) []Counter {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := prefix + snake(f.Name)
		if f.Anonymous {
			// Embedded structs' counters belong to the outer group.
			name = strings.TrimSuffix(prefix, ".")
		}
		fv := v.Field(i)
		switch {
		case f.Type == statCounterType:
			if !fv.IsNil() {
				out = append(out, Counter{name, fv.Interface().(*tcpip.StatCounter).Value()})
			}
		case f.Type.Kind() == reflect.Struct:
			out = walkStats(fv, joinName(name), out)
		case f.Type.Kind() == reflect.Pointer && f.Type.Elem().Kind() == reflect.Struct && !fv.IsNil():
			out = walkStats(fv.Elem(), joinName(name), out)
		}
	}
	return out
}

func joinName(name string) string {
	if name == "" {
		return ""
	}
	return name + "."
}

// acronyms are rewritten as words before a Go field name is split.
var acronyms = strings.NewReplacer(
	"ICMPv4", "Icmpv4", "ICMPv6", "Icmpv6", "IPv4", "Ipv4", "IPv6", "Ipv6",
	"NICs", "Nics", "ICMP", "Icmp", "IGMP", "Igmp", "TCP", "Tcp", "UDP", "Udp",
	"ARP", "Arp", "NIC", "Nic", "IP", "Ip", "SYN", "Syn", "ACK", "Ack",
	"RST", "Rst", "DAD", "Dad", "RTO", "Rto", "MLD", "Mld", "NDP", "Ndp",
)

// snake turns a Go field name into lower_snake_case ("TCP" → "tcp",
// "ChecksumErrors" → "checksum_errors", "IPv4" → "ipv4").
func snake(s string) string {
	s = acronyms.Replace(s)
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				p := s[i-1]
				if (p >= 'a' && p <= 'z') || (p >= '0' && p <= '9') {
					b.WriteByte('_')
				}
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
