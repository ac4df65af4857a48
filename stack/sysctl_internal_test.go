package stack

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/xstack/xstack/nic/nictest"
)

var updateReference = flag.Bool("update", false, "rewrite the [sysctl] reference of README.md and core/config.go from the sysctl table")

// newSysctlStack is a stack over an in-memory queue, nothing else: the
// sysctls need no peer.
func newSysctlStack(t *testing.T) *Stack {
	t.Helper()
	q := nictest.New(1500)
	st, err := New(q, Config{Name: "sysctl"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		st.Close()
		q.Close()
	})
	return st
}

// validValues are values of the entry's check: each word, or the ends of
// the range (and 0 where 0 turns the feature off).
func validValues(v sysctlValues) []string {
	if v.words != nil {
		return v.words
	}
	vals := []string{strconv.FormatUint(v.lo, 10), strconv.FormatUint(v.hi, 10)}
	if v.lo < v.hi-1 {
		vals = append(vals, strconv.FormatUint(v.lo+(v.hi-v.lo)/2, 10))
	}
	if v.orZero {
		vals = append(vals, "0")
	}
	return vals
}

// invalidValues are values the entry's check must refuse.
func invalidValues(v sysctlValues) []string {
	vals := []string{"", "x", " 1", "1 "}
	if v.words != nil {
		return append(vals, v.words[0]+"x", strings.ToUpper(v.words[len(v.words)-1])+"X", "-"+v.words[0])
	}
	vals = append(vals, strconv.FormatUint(v.hi+1, 10), "+"+strconv.FormatUint(v.lo+1, 10), "-1", "1e3", "0x10")
	if v.lo > 0 {
		vals = append(vals, strconv.FormatUint(v.lo-1, 10))
	}
	if v.orZero {
		vals = append(vals, "00")
	}
	return vals
}

// TestSysctlTable runs every entry of the table on a real stack: the value
// a fresh stack reads back is one the check accepts and sets again; each
// valid value either reads back as set or is refused with a reason and
// changes nothing; invalid values are refused, by the check and by
// SetSysctl, saying what was expected; the doc names the values and the
// default the stack has.
func TestSysctlTable(t *testing.T) {
	if len(sysctlTable) != 28 {
		t.Errorf("%d sysctls, want 28", len(sysctlTable))
	}
	defaultRE := regexp.MustCompile(`\bdefault (\d+)\b`)
	for _, s := range sysctlTable {
		t.Run(s.name, func(t *testing.T) {
			st := newSysctlStack(t)
			def, err := st.Sysctl(s.name)
			if err != nil {
				t.Fatalf("read on a fresh stack: %v", err)
			}
			if err := CheckSysctl(s.name, def); err != nil {
				t.Errorf("the fresh stack's value %q fails the check: %v", def, err)
			}
			roundTrips := 0
			if err := st.SetSysctl(s.name, def); err != nil {
				t.Errorf("setting the fresh stack's value %q: %v", def, err)
			} else if got, err := st.Sysctl(s.name); err != nil || got != def {
				t.Errorf("set the fresh stack's value %q, read back %q, %v", def, got, err)
			} else {
				roundTrips++
			}
			for _, v := range validValues(s.values) {
				if err := CheckSysctl(s.name, v); err != nil {
					t.Errorf("CheckSysctl(%q) = %v, want ok", v, err)
					continue
				}
				before, _ := st.Sysctl(s.name)
				err := st.SetSysctl(s.name, v)
				got, gerr := st.Sysctl(s.name)
				switch {
				case gerr != nil:
					t.Errorf("read back after setting %q: %v", v, gerr)
				case err == nil && got != v:
					t.Errorf("set %q, read back %q", v, got)
				case err == nil:
					roundTrips++
				case !strings.HasPrefix(err.Error(), fmt.Sprintf("sysctl %s=%s: ", s.name, v)) || strings.HasSuffix(err.Error(), ": "):
					t.Errorf("refusal of %q does not say which sysctl and why: %q", v, err)
				case got != before:
					t.Errorf("refused %q (%v) but the value changed from %q to %q", v, err, before, got)
				}
			}
			if roundTrips == 0 {
				t.Errorf("no value of %v round-trips", validValues(s.values))
			}

			for _, v := range invalidValues(s.values) {
				err := CheckSysctl(s.name, v)
				if err == nil {
					t.Errorf("CheckSysctl(%q) accepted it", v)
					continue
				}
				if want := fmt.Sprintf("got %q", v); !strings.HasPrefix(err.Error(), "expected ") || !strings.HasSuffix(err.Error(), want) {
					t.Errorf("CheckSysctl(%q) = %q, want \"expected ..., %s\"", v, err, want)
				}
				before, _ := st.Sysctl(s.name)
				serr := st.SetSysctl(s.name, v)
				if serr == nil || !strings.Contains(serr.Error(), err.Error()) {
					t.Errorf("SetSysctl(%q) = %v, want the check's %q", v, serr, err)
				}
				if got, _ := st.Sysctl(s.name); got != before {
					t.Errorf("SetSysctl(%q) changed the value from %q to %q", v, before, got)
				}
			}

			doc := strings.Join(s.doc, " ")
			if doc == "" {
				t.Fatal("no doc")
			}
			if w := s.values.words; w != nil {
				if !strings.Contains(doc, strings.Join(w, "|")) {
					t.Errorf("doc %q does not give the values %s", doc, strings.Join(w, "|"))
				}
			} else {
				lo, hi := strconv.FormatUint(s.values.lo, 10), ".."+strconv.FormatUint(s.values.hi, 10)
				if i := strings.Index(doc, lo); i < 0 || !strings.Contains(doc[i:], hi) {
					t.Errorf("doc %q does not give the range %d..%d", doc, s.values.lo, s.values.hi)
				}
			}
			if m := defaultRE.FindStringSubmatch(doc); m != nil && m[1] != def {
				t.Errorf("doc says default %s, a fresh stack reads %s", m[1], def)
			}
		})
	}
}

func TestSysctlUnknown(t *testing.T) {
	st := newSysctlStack(t)
	for _, err := range []error{CheckSysctl("net.inet.tcp.nosuch", "1"), st.SetSysctl("net.inet.tcp.nosuch", "1"), func() error {
		_, err := st.Sysctl("net.inet.tcp.nosuch")
		return err
	}()} {
		if !errors.Is(err, ErrUnknownSysctl) || !strings.Contains(err.Error(), "expected one of net.inet.ip.forwarding, ") {
			t.Errorf("got %v, want ErrUnknownSysctl listing the names", err)
		}
	}
	names := SysctlNames()
	if len(names) != len(sysctlTable) {
		t.Fatalf("SysctlNames() has %d names, the table %d", len(names), len(sysctlTable))
	}
	names[0] = "x"
	if SysctlNames()[0] == "x" {
		t.Error("SysctlNames returned shared storage")
	}
}

// TestSysctlReference holds the configuration reference to the table: the
// [sysctl] block of README's config.ini reference and of core.Config's doc
// are the table's SysctlReference, line for line. go test -run
// TestSysctlReference -update rewrites them from the table.
func TestSysctlReference(t *testing.T) {
	for _, f := range []struct{ path, prefix string }{
		{"../README.md", ""},
		{"../core/config.go", "//\t"},
	} {
		t.Run(f.path, func(t *testing.T) {
			b, err := os.ReadFile(f.path)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(b), "\n")
			start, end, err := sysctlBlock(lines, f.prefix)
			if err != nil {
				t.Fatal(err)
			}
			want := SysctlReference()
			for i := range want {
				want[i] = strings.TrimRight(f.prefix+want[i], " ")
			}
			got := lines[start:end]
			if d := lineDiff(want, got, start+1); d != "" {
				if !*updateReference {
					t.Fatalf("%s: the [sysctl] reference disagrees with stack's sysctl table (-want +got):\n%s\nrun go test ./stack -run TestSysctlReference -update to rewrite it", f.path, d)
				}
				out := append(append(append([]string{}, lines[:start]...), want...), lines[end:]...)
				if err := os.WriteFile(f.path, []byte(strings.Join(out, "\n")), 0o644); err != nil {
					t.Fatal(err)
				}
				t.Logf("%s: rewrote the [sysctl] reference", f.path)
			}
		})
	}
}

// sysctlBlock finds the [sysctl] block among lines, each line prefixed by
// prefix: its header line, then the lines of a name ("net.") or continuing
// one (indented).
func sysctlBlock(lines []string, prefix string) (start, end int, err error) {
	start = -1
	for i, l := range lines {
		if strings.HasPrefix(l, prefix+"[sysctl] ") {
			if start >= 0 {
				return 0, 0, fmt.Errorf("lines %d and %d both start a [sysctl] block", start+1, i+1)
			}
			start = i
		}
	}
	if start < 0 {
		return 0, 0, errors.New("no [sysctl] block")
	}
	end = start + 1
	for end < len(lines) {
		l, ok := strings.CutPrefix(lines[end], prefix)
		if !ok || !(strings.HasPrefix(l, "net.") || strings.HasPrefix(l, " ")) {
			break
		}
		end++
	}
	return start, end, nil
}

// lineDiff lists the lines that differ between want and got, by their
// line number counted from first; "" if none.
func lineDiff(want, got []string, first int) string {
	at := func(lines []string, i int) string {
		if i < len(lines) {
			return lines[i]
		}
		return "(no line)"
	}
	var b strings.Builder
	for i := range max(len(want), len(got)) {
		if w, g := at(want, i), at(got, i); w != g {
			fmt.Fprintf(&b, "line %d:\n-%s\n+%s\n", first+i, w, g)
		}
	}
	return b.String()
}
