package core

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xstack/xstack/stack"
)

// FuzzParseConfig checks that ParseConfig never panics, that every error is a
// *ConfigError with a file and a line inside the input, and that every
// accepted configuration keeps the invariants the rest of core relies on.
// Seeds: the shipped config.ini, the committed corpus in
// testdata/fuzz/FuzzParseConfig, and the valid files in testdata/config.
func FuzzParseConfig(f *testing.F) {
	for _, glob := range []string{"../config.ini", "testdata/config/*.ini"} {
		files, _ := filepath.Glob(glob)
		for _, name := range files {
			b, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("fuzz.ini", strings.NewReader(string(data)))
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is %T, want *ConfigError", err, err)
			}
			lines := strings.Count(string(data), "\n") + 1
			if ce.File != "fuzz.ini" || ce.Line < 1 || ce.Line > lines || ce.Key == "" || ce.Msg == "" {
				t.Fatalf("bad error fields %+v (input has %d lines)", ce, lines)
			}
			return
		}
		if c.LcoreMask == 0 || len(c.Ports) == 0 {
			t.Fatalf("accepted config without lcores or ports: %+v", c)
		}
		lcores := len(c.Lcores())
		for i, p := range c.Ports {
			if p.Index != i || p.Ifname == "" || (!p.Addr.IsValid() && !p.Addr6.IsValid()) ||
				len(p.LcoreList) != lcores || p.RxRing > p.Frames || p.TxRing > p.Frames {
				t.Fatalf("accepted bad port %+v", p)
			}
			if p.Addr.IsValid() && !p.Prefix().IsValid() {
				t.Fatalf("port %d: invalid prefix from %s/%s", i, p.Addr, p.Netmask)
			}
		}
		for _, s := range c.Sysctls {
			if err := stack.CheckSysctl(s.Name, s.Value); err != nil {
				t.Fatalf("accepted bad sysctl %+v: %v", s, err)
			}
		}
	})
}
