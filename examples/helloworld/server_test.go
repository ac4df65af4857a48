package main

import (
	"bytes"
	"testing"

	"github.com/xstack/xstack/internal/fuzzcorpus"
)

func TestParseHead(t *testing.T) {
	tests := []struct {
		head      string
		keepAlive bool
		body      int
		ok        bool
	}{
		{"GET / HTTP/1.1\r\nHost: x\r\n", true, 0, true},
		{"GET / HTTP/1.1\r\nConnection: close\r\n", false, 0, true},
		{"GET / HTTP/1.1\r\nconnection: Keep-Alive, Close\r\n", false, 0, true},
		{"GET / HTTP/1.0\r\n", false, 0, true},
		{"GET / HTTP/1.0\r\nConnection: keep-alive\r\n", true, 0, true},
		{"POST / HTTP/1.1\r\nContent-Length: 12\r\n", true, 12, true},
		{"POST / HTTP/1.1\r\nContent-Length: -1\r\n", false, 0, false},
		{"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n", false, 0, false},
		{"GET / HTTP/2.0\r\n", false, 0, false},
		{"GARBAGE\r\n", false, 0, false},
		{"GET / HTTP/1.1\r\nno colon\r\n", false, 0, false},
	}
	for _, tt := range tests {
		keep, body, ok := parseHead([]byte(tt.head))
		if keep != tt.keepAlive || body != tt.body || ok != tt.ok {
			t.Errorf("parseHead(%q) = %v, %d, %v; want %v, %d, %v", tt.head, keep, body, ok, tt.keepAlive, tt.body, tt.ok)
		}
	}
}

// TestHandleSplitsRequests feeds pipelined requests to the parser.
func TestHandleSplitsRequests(t *testing.T) {
	s := &server{}
	c := &conn{}
	c.in = append(c.in, "GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n\r\n"...)
	s.handle(c)
	want := string(respKeepAlive) + string(respKeepAlive) + string(respClose)
	if string(c.out) != want {
		t.Errorf("responses:\n%q\nwant\n%q", c.out, want)
	}
	if !c.closing || s.requests != 3 {
		t.Errorf("closing %v after %d requests; want true after 3 (nothing after Connection: close)", c.closing, s.requests)
	}
}

// FuzzParseHead feeds a byte stream to the request parser as one read and
// as reads of chunk bytes, the way TCP may split it, and checks that the
// two give the same responses and state (the parser does not depend on
// segmentation), that the output is a sequence of whole responses, one per
// request, and that nothing follows a response that closes the connection.
// Seeds: headSeeds, committed in testdata/fuzz/FuzzParseHead.
func FuzzParseHead(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, chunk uint8) {
		stream := append(bytes.Clone(b), "\r\n\r\n"...)
		whole, c1 := &server{}, &conn{in: bytes.Clone(stream)}
		whole.handle(c1)

		split, c2 := &server{}, &conn{}
		step := 1 + int(chunk)
		for off := 0; off < len(stream); off += step {
			c2.in = append(c2.in, stream[off:min(off+step, len(stream))]...)
			split.handle(c2)
		}
		if !bytes.Equal(c1.out, c2.out) || whole.requests != split.requests || c1.closing != c2.closing ||
			(!c1.closing && (c1.body != c2.body || !bytes.Equal(c1.in, c2.in))) {
			t.Fatalf("%q in one read: %d requests, closing %v, body %d, left %q\nin reads of %d: %d requests, closing %v, body %d, left %q",
				stream, whole.requests, c1.closing, c1.body, c1.in, step, split.requests, c2.closing, c2.body, c2.in)
		}
		out, n := c1.out, 0
		for len(out) > 0 {
			var r []byte
			for _, resp := range [][]byte{respKeepAlive, respClose, respBad} {
				if bytes.HasPrefix(out, resp) {
					r = resp
				}
			}
			if r == nil {
				t.Fatalf("output is not a sequence of responses: %q", out)
			}
			out = out[len(r):]
			n++
			if closes := !bytes.Equal(r, respKeepAlive); closes != (len(out) == 0 && c1.closing) {
				t.Fatalf("response %d (%q) closes %v, with %d bytes after it, connection closing %v", n, r[:15], closes, len(out), c1.closing)
			}
		}
		if uint64(n) != whole.requests {
			t.Fatalf("%d responses to %d requests", n, whole.requests)
		}
	})
}

func headSeeds() []fuzzcorpus.Seed {
	return []fuzzcorpus.Seed{
		{Name: "get", Args: []any{[]byte("GET / HTTP/1.1\r\nHost: x\r\n"), uint8(1)}},
		{Name: "post_body", Args: []any{[]byte("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"), uint8(3)}},
		{Name: "pipelined", Args: []any{[]byte("GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.0\r\nConnection: keep-alive\r\n"), uint8(6)}},
		{Name: "connection_close", Args: []any{[]byte("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\nGET / HTTP/1.1\r\n"), uint8(0)}},
		{Name: "bad_requests", Args: []any{[]byte("GET /\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: -1\r\n"), uint8(2)}},
		{Name: "chunked", Args: []any{[]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"), uint8(255)}},
	}
}

func TestParseHeadSeeds(t *testing.T) {
	fuzzcorpus.Sync(t, "FuzzParseHead", headSeeds())
}
