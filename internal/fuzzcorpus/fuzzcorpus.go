// Package fuzzcorpus keeps the committed seed corpora of the fuzz targets
// (testdata/fuzz/<Target>/<name>, the file format `go test` reads) in step
// with the Go code that builds them.
//
// A package's seed test builds its seeds and calls Sync. Normally Sync
// checks that every seed is committed with exactly the bytes the code
// builds, so a change to a frame builder cannot leave a stale corpus
// behind; with XSTACK_WRITE_FUZZ_SEEDS=1 in the environment it writes the
// files instead. Files in the directory that the code does not build
// (crashers the fuzzer found, kept as regression inputs) are left alone.
// It is used by tests only.
package fuzzcorpus

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// WriteEnv names the environment variable that makes Sync write the files.
const WriteEnv = "XSTACK_WRITE_FUZZ_SEEDS"

// Seed is one corpus entry: a file name and the fuzz function's arguments
// after the *testing.T, in order.
type Seed struct {
	Name string
	Args []any
}

// Marshal encodes values in the corpus file format of `go test` ("go test
// fuzz v1", then one Go expression per line). It supports the argument
// types the project's fuzz targets take: []byte, string, bool, uint8,
// uint16, uint32, uint64, int and int64.
func Marshal(values ...any) []byte {
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, v := range values {
		switch v := v.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case string:
			fmt.Fprintf(&b, "string(%q)\n", v)
		case byte:
			fmt.Fprintf(&b, "byte(%q)\n", v)
		case bool, uint16, uint32, uint64, int, int64:
			fmt.Fprintf(&b, "%T(%v)\n", v, v)
		default:
			panic(fmt.Sprintf("fuzzcorpus: unsupported type %T", v))
		}
	}
	return b.Bytes()
}

// Sync checks (or, with WriteEnv=1, writes) testdata/fuzz/<target>/<name>
// for every seed, relative to the package directory the test runs in.
func Sync(t *testing.T, target string, seeds []Seed) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	write := os.Getenv(WriteEnv) == "1"
	if write {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for _, s := range seeds {
		if seen[s.Name] || s.Name == "" || filepath.Base(s.Name) != s.Name {
			t.Fatalf("seed name %q: empty, a path or used twice", s.Name)
		}
		seen[s.Name] = true
		path := filepath.Join(dir, s.Name)
		want := Marshal(s.Args...)
		if write {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is missing or stale (%v): regenerate with %s=1 go test -run '%s' .", path, err, WriteEnv, t.Name())
		}
	}
}
