package rigtest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// HTTPGet sends one GET for path on c, with Connection: close when close
// is set, and reads one response through br, all within timeout. It returns
// the response whole (status line, header, and the body of Content-Length
// bytes), also what it read of it when it fails. The servers under test
// (helloworld, nethttp) always send a Content-Length.
func HTTPGet(c net.Conn, br *bufio.Reader, path string, close bool, timeout time.Duration) ([]byte, error) {
	req := "GET " + path + " HTTP/1.1\r\nHost: xstack\r\n\r\n"
	if close {
		req = "GET " + path + " HTTP/1.1\r\nHost: xstack\r\nConnection: close\r\n\r\n"
	}
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, req); err != nil {
		return nil, err
	}
	var resp bytes.Buffer
	length := -1
	for {
		line, err := br.ReadString('\n')
		resp.WriteString(line)
		if err != nil {
			return resp.Bytes(), fmt.Errorf("reading head: %w", err)
		}
		if line == "\r\n" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "Content-Length") {
			length, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	if length < 0 {
		return resp.Bytes(), fmt.Errorf("no Content-Length in %q", resp.String())
	}
	if _, err := io.CopyN(&resp, br, int64(length)); err != nil {
		return resp.Bytes(), fmt.Errorf("reading body: %w", err)
	}
	return resp.Bytes(), nil
}
