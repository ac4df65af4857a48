package difftest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/xstack/xstack/internal/netns"
	"github.com/xstack/xstack/internal/rig"
	"github.com/xstack/xstack/internal/rigtest"
)

// TestNetHTTPExample runs examples/nethttp (net/http on posix's adapters)
// on a rig of its own and talks to it with net/http from the kernel peer,
// over IPv4 and IPv6: keep-alive requests and a 1 MiB echoed body.
func TestNetHTTPExample(t *testing.T) {
	r := rigtest.New(t, rig.Options{})
	bin := rigtest.Build(t, "./examples/nethttp")
	rigtest.Start(t, "serving on port", bin, "-c", rigtest.Config(t, r), "-port", "8080")

	// The client's sockets are made in the peer namespace.
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := netns.Do(r.PeerNS, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 20 * time.Second}
	body := make([]byte, 1<<20)
	rand.Read(body)
	for _, host := range []string{r.StackAddr4.String(), "[" + r.StackAddr6.String() + "]"} {
		base := fmt.Sprintf("http://%s:8080", host)
		for i := range 20 {
			resp, err := cl.Get(base + "/")
			if err != nil {
				t.Fatalf("GET %d from %s: %v", i, host, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), "from net/http on xstack") {
				t.Fatalf("GET %s: %d %q", host, resp.StatusCode, b)
			}
		}
		resp, err := cl.Post(base+"/echo", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("POST /echo to %s: %v", host, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("POST /echo to %s: %d bytes back (%v), want the %d sent", host, len(got), err, len(body))
		}
	}
}
