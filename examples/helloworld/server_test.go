package main

import "testing"

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

func FuzzParseHead(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 5\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s := &server{}
		c := &conn{in: append(b, "\r\n\r\n"...)}
		s.handle(c) // must not panic
	})
}
