package main

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseSrcs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string // nil: an error
		errWant string
	}{
		{in: "198.18.1.1", want: []string{"198.18.1.1"}},
		{in: "198.18.1.1-198.18.1.3,198.18.2.1", want: []string{"198.18.1.1", "198.18.1.2", "198.18.1.3", "198.18.2.1"}},
		{in: "2001:2::100", want: []string{"2001:2::100"}},
		{in: "2001:2::fe-2001:2::101", want: []string{"2001:2::fe", "2001:2::ff", "2001:2::100", "2001:2::101"}},
		{in: "2001:2::100-2001:2::10f,2001:2::200", want: func() []string {
			var s []string
			for a := netip.MustParseAddr("2001:2::100"); a != netip.MustParseAddr("2001:2::110"); a = a.Next() {
				s = append(s, a.String())
			}
			return append(s, "2001:2::200")
		}()},
		{in: "198.18.1.1,2001:2::100", errWant: "different families"},
		{in: "2001:2::100-198.18.1.1", errWant: "not an IPv6 address at or above"},
		{in: "2001:2::101-2001:2::100", errWant: "at or above"},
		{in: "2001:2::1-2001:2::ff", errWant: "more than 64"},
		{in: "fe80::1%eth0", errWant: "not an IPv4 or IPv6 address"},
		{in: "::ffff:198.18.1.1", errWant: "not an IPv4 or IPv6 address"},
		{in: "ff02::1", errWant: "not a unicast address"},
		{in: "::", errWant: "not a unicast address"},
		{in: "host", errWant: "not an IPv4 or IPv6 address"},
	}
	for _, tt := range tests {
		got, err := parseSrcs(tt.in)
		if tt.want == nil {
			if err == nil || !strings.Contains(err.Error(), tt.errWant) {
				t.Errorf("parseSrcs(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.errWant)
			}
			continue
		}
		var s []string
		for _, a := range got {
			s = append(s, a.String())
		}
		if err != nil || strings.Join(s, ",") != strings.Join(tt.want, ",") {
			t.Errorf("parseSrcs(%q) = %v, %v; want %v", tt.in, s, err, tt.want)
		}
	}
}

// A run is one family: the flags are checked before anything is opened.
func TestRunFamilies(t *testing.T) {
	tests := []struct{ srcs, server, errWant string }{
		{"198.18.1.1", "[2001:2::1]:80", "-src is IPv4 and -server IPv6: one run is one family"},
		{"2001:2::100-2001:2::10f", "198.18.0.1:80", "-src is IPv6 and -server IPv4: one run is one family"},
		{"2001:2::100", "2001:2::1:80", "-server: want an address:port"},
		{"2001:2::100", "[ff02::1]:80", "-server: want an address:port"},
		{"2001:2::100", "[2001:2::1]:0", "-server: want an address:port"},
	}
	for _, tt := range tests {
		_, err := run(options{ifname: "xp0", srcs: tt.srcs, server: tt.server, portLo: 1, portHi: 2, conns: 1})
		if err == nil || !strings.Contains(err.Error(), tt.errWant) {
			t.Errorf("-src %s -server %s: %v; want an error with %q", tt.srcs, tt.server, err, tt.errWant)
		}
	}
}
