package ctl

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/xstack/xstack/internal/fuzzcorpus"
)

// FuzzReadLine reads a stream of any bytes as the control plane reads
// requests (and the tools replies), with any line limit and any reader
// buffer size, and compares every result with a model that splits the
// stream at newlines: each line that fits the limit with its newline comes
// back without it; the first one that does not, or an unterminated last
// line longer than the limit, gives ErrTooLarge after more than limit and
// at most limit plus the buffer size bytes were consumed; an unterminated
// last line within the limit gives io.ErrUnexpectedEOF; a clean end gives
// io.EOF.
func FuzzReadLine(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, limit16 uint16, buf8 uint8) {
		limit := 1 + int(limit16)%512
		bufSize := 16 + int(buf8) // bufio's smallest buffer is 16 bytes
		src := bytes.NewReader(data)
		br := bufio.NewReaderSize(src, bufSize)
		rest := data
		for {
			got, err := ReadLine(br, limit)
			consumed := len(data) - src.Len() - br.Buffered()
			i := bytes.IndexByte(rest, '\n')
			switch {
			case i >= 0 && i+1 <= limit:
				if err != nil || !bytes.Equal(got, rest[:i]) {
					t.Fatalf("read %q, %v; want line %q", got, err, rest[:i])
				}
				rest = rest[i+1:]
				if consumed != len(data)-len(rest) {
					t.Fatalf("consumed %d bytes after a line, want %d", consumed, len(data)-len(rest))
				}
				continue
			case i >= 0 || len(rest) > limit:
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("read %q, %v; want ErrTooLarge for a line of more than %d bytes", got, err, limit)
				}
				if c := consumed - (len(data) - len(rest)); c <= limit || c > limit+bufSize {
					t.Fatalf("ErrTooLarge after %d bytes of the line, want more than %d and at most %d", c, limit, limit+bufSize)
				}
			case len(rest) == 0:
				if err != io.EOF {
					t.Fatalf("read %q, %v at the end; want io.EOF", got, err)
				}
			default:
				if err != io.ErrUnexpectedEOF {
					t.Fatalf("read %q, %v; want io.ErrUnexpectedEOF for the unterminated %q", got, err, rest)
				}
			}
			return
		}
	})
}

func readLineSeeds() []fuzzcorpus.Seed {
	return []fuzzcorpus.Seed{
		{Name: "requests", Args: []any{[]byte("{\"v\":1,\"op\":\"info\"}\n{\"v\":1,\"op\":\"route.show\"}\n"), uint16(100), uint8(0)}},
		{Name: "exactly_the_limit", Args: []any{[]byte("0123456789\nabcdefghij\n"), uint16(10), uint8(0)}},
		{Name: "one_over_the_limit", Args: []any{[]byte("0123456789a\n"), uint16(10), uint8(0)}},
		{Name: "long_line_small_buffer", Args: []any{bytes.Repeat([]byte("x"), 300), uint16(200), uint8(0)}},
		{Name: "unterminated", Args: []any{[]byte("line\npartial"), uint16(50), uint8(3)}},
		{Name: "empty_lines", Args: []any{[]byte("\n\n\r\n"), uint16(0), uint8(255)}},
	}
}

func TestReadLineSeeds(t *testing.T) {
	fuzzcorpus.Sync(t, "FuzzReadLine", readLineSeeds())
}
