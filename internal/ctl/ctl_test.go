package ctl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		op       string // "" = an error containing want
		want     string
	}{
		{"info", `{"v":1,"op":"info"}`, "info", ""},
		{"args", `{"v":1,"op":"sysctl.set","args":{"name":"a","value":"1"}}`, "sysctl.set", ""},
		{"null args", `{"v":1,"op":"info","args":null}`, "info", ""},
		{"garbage", `garbage`, "", "malformed request"},
		{"empty", ``, "", "malformed request"},
		{"version", `{"v":2,"op":"info"}`, "", "unsupported protocol version 2"},
		{"no version", `{"op":"info"}`, "", "unsupported protocol version 0"},
		{"unknown field", `{"v":1,"op":"info","x":1}`, "", `unknown field "x"`},
		{"trailing", `{"v":1,"op":"info"} {}`, "", "data after"},
		{"array", `[1,2]`, "", "malformed request"},
		{"bad op", `{"v":1,"op":"Info!"}`, "", "op \"Info!\""},
		{"no op", `{"v":1}`, "", "op \"\""},
		{"args not object", `{"v":1,"op":"info","args":[1]}`, "", "args must be an object"},
		{"args string", `{"v":1,"op":"info","args":"x"}`, "", "args must be an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRequest([]byte(tc.in))
			if tc.op == "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("ParseRequest(%q) = %+v, %v; want an error with %q", tc.in, r, err, tc.want)
				}
				return
			}
			if err != nil || r.Op != tc.op {
				t.Fatalf("ParseRequest(%q) = %+v, %v; want op %q", tc.in, r, err, tc.op)
			}
		})
	}
}

func TestDecodeArgs(t *testing.T) {
	var a SysctlValue
	if err := DecodeArgs([]byte(`{"name":"n","value":"v"}`), &a); err != nil || a.Name != "n" || a.Value != "v" {
		t.Fatalf("got %+v, %v", a, err)
	}
	if err := DecodeArgs([]byte(`{"name":"n","bogus":1}`), &a); err == nil {
		t.Fatal("unknown field accepted")
	}
	if err := DecodeArgs([]byte(`{"name":5}`), &a); err == nil {
		t.Fatal("wrong type accepted")
	}
	if err := DecodeArgs(nil, &a); err != nil {
		t.Fatalf("absent args: %v", err)
	}
}

func TestReadLine(t *testing.T) {
	long := strings.Repeat("x", MaxRequest)
	br := bufio.NewReaderSize(strings.NewReader("one\n"+strings.Repeat("y", MaxRequest-1)+"\n"+long+"\nafter\n"), 4096)
	if b, err := ReadLine(br, MaxRequest); err != nil || string(b) != "one" {
		t.Fatalf("first line: %q, %v", b, err)
	}
	if b, err := ReadLine(br, MaxRequest); err != nil || len(b) != MaxRequest-1 {
		t.Fatalf("line of the limit: %d bytes, %v", len(b), err)
	}
	if _, err := ReadLine(br, MaxRequest); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over-long line: %v, want ErrTooLarge", err)
	}
	if _, err := ReadLine(bufio.NewReader(strings.NewReader("")), 10); err != io.EOF {
		t.Fatalf("empty stream: %v, want io.EOF", err)
	}
	if _, err := ReadLine(bufio.NewReader(strings.NewReader("partial")), 10); err != io.ErrUnexpectedEOF {
		t.Fatalf("unterminated line: %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestExpandFlags(t *testing.T) {
	tool := NewTool("netstat", "usage")
	tool.FS.Bool("a", false, "")
	tool.FS.Bool("n", false, "")
	tool.Bools = "an"
	got := strings.Join(tool.expand([]string{"-p", "0", "-an", "--json", "-x", "op", "-an"}), " ")
	if want := "-p 0 -a -n --json -x op -an"; got != want {
		t.Fatalf("expand: got %q, want %q", got, want)
	}
}

// FuzzParseRequest checks that no input makes the parser panic, that what
// it accepts is a well-formed request (version, an op of lower-case letters
// and dots, args absent, null or an object), and that an accepted request
// survives a round trip: encoded as the client encodes it and parsed again,
// it is the same request.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		`{"v":1,"op":"info"}`,
		`{"v":1,"op":"sysctl.set","args":{"name":"net.inet.tcp.sack","value":"1"}}`,
		`{"v":1,"op":"route.add","args":{"dst":"198.19.0.0/24","gateway":"198.18.0.2"}}`,
		`{"v":2,"op":"info"}`,
		`{"v":1,"op":"info","args":[]}`,
		`{"v":1e400}`,
		`[]`,
		"\x00\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		if r.V != Version || r.Op == "" || len(r.Op) > 64 || strings.Trim(r.Op, "abcdefghijklmnopqrstuvwxyz.") != "" {
			t.Fatalf("accepted %q as %+v", b, r)
		}
		if len(r.Args) > 0 && string(r.Args) != "null" && (!json.Valid(r.Args) || bytes.TrimSpace(r.Args)[0] != '{') {
			t.Fatalf("accepted %q with args %q", b, r.Args)
		}
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("encode %+v: %v", r, err)
		}
		r2, err := ParseRequest(line)
		if err != nil {
			t.Fatalf("accepted %q, but not its encoding %q: %v", b, line, err)
		}
		// The encoder may escape differently (HTML characters): compare
		// the args as values.
		var a1, a2 any
		json.Unmarshal(r.Args, &a1)
		json.Unmarshal(r2.Args, &a2)
		if r2.V != r.V || r2.Op != r.Op || !reflect.DeepEqual(a1, a2) {
			t.Fatalf("round trip of %q: %+v, then %+v", b, r, r2)
		}
		var a SysctlValue
		_ = DecodeArgs(r.Args, &a)
	})
}
