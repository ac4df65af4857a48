package main

import "testing"

func TestRespParser(t *testing.T) {
	tests := []struct {
		name, in string
		want     int
		used     int // -1: all
		status   uint16
		close    bool
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", respDone, -1, 200, false},
		{"length short", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", respMore, -1, 200, false},
		{"zero length", "HTTP/1.1 404 Not Found\r\ncontent-length:0\r\n\r\n", respDone, -1, 404, false},
		{"close", "HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 2\r\n\r\nhi", respDone, -1, 200, true},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\na;x=y\r\n0123456789\r\n0\r\nT: v\r\n\r\n", respDone, -1, 200, false},
		{"interim", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", respDone, -1, 204, false},
		{"until close", "HTTP/1.0 200 OK\r\n\r\nbody", respMore, -1, 200, false},
		{"extra bytes", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxy", respDone, 39, 200, false},
		{"garbage", "GARBAGE\r\n\r\n", respMalformed, 0, 0, false},
		{"bad code", "HTTP/1.1 2x0 OK\r\n\r\n", respMalformed, 10, 2, false},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", respMalformed, 34, 200, false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", respMalformed, 50, 200, false},
		{"bad chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", respMalformed, 47, 200, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Whole, then a byte at a time: the outcome must not depend
			// on how the segments cut the response.
			var p respParser
			used, got := p.feed([]byte(tt.in))
			want := tt.used
			if want < 0 {
				want = len(tt.in)
			}
			if got != tt.want || used != want || p.status != tt.status || !p.keepAlive() != tt.close {
				t.Errorf("feed = (%d, %d), status %d, close %v; want (%d, %d), %d, %v",
					used, got, p.status, !p.keepAlive(), want, tt.want, tt.status, tt.close)
			}
			p.reset()
			total, r := 0, respMore
			for i := 0; i < len(tt.in) && r == respMore; i++ {
				var n int
				n, r = p.feed([]byte{tt.in[i]})
				total += n
			}
			if r != tt.want || total != want {
				t.Errorf("byte by byte = (%d, %d), want (%d, %d)", total, r, want, tt.want)
			}
		})
	}
}

func TestRespParserAllocs(t *testing.T) {
	in := []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
	var p respParser
	if n := testing.AllocsPerRun(100, func() { p.reset(); p.feed(in) }); n != 0 {
		t.Errorf("feed allocates %v times per response, want 0", n)
	}
}

// FuzzRespParser: any bytes, cut anywhere, give the same outcome as the
// whole, never panic and never claim more bytes than given.
func FuzzRespParser(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), uint8(7))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), uint8(3))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 304 x\r\n\r\n"), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, cut uint8) {
		var p respParser
		n, r := p.feed(b)
		if n < 0 || n > len(b) {
			t.Fatalf("used %d of %d bytes", n, len(b))
		}
		var q respParser
		k := int(cut)
		if k > len(b) {
			k = len(b)
		}
		n1, r1 := q.feed(b[:k])
		if r1 != respMore {
			if r1 != r || n1 != n {
				t.Fatalf("cut at %d: (%d, %d), whole (%d, %d)", k, n1, r1, n, r)
			}
			return
		}
		n2, r2 := q.feed(b[k:])
		if r2 != r || n1+n2 != n {
			t.Fatalf("cut at %d: (%d, %d), whole (%d, %d)", k, n1+n2, r2, n, r)
		}
	})
}
