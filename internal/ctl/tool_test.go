package ctl

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// serve answers every request on runDir/<id>.sock with a result holding
// the proc-id, until the test ends. hangUp makes it close each connection
// as soon as it has read a request instead: a process that dies while a
// tool talks to it.
func serve(t *testing.T, runDir string, id int, hangUp bool) {
	t.Helper()
	ln, err := net.Listen("unix", SocketPath(runDir, id))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					if _, err := ReadLine(br, MaxRequest); err != nil || hangUp {
						return
					}
					if _, err := c.Write([]byte(`{"v":1,"result":{"proc_id":` + strconv.Itoa(id) + `}}` + "\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// stale leaves runDir/<id>.sock as a process killed with SIGKILL leaves
// it: a socket file nothing listens on.
func stale(t *testing.T, runDir string, id int) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: SocketPath(runDir, id), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
}

func TestEachSkipsDeadProcesses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		live   []int // serving
		dead   []int // stale sockets
		hangUp []int // accept, then close at the first request
		procID int   // -p
		want   []int // proc-ids that answered, in order
		lines  int   // lines on stderr
		fails  error // nil: Each succeeds
	}{
		{name: "all live", live: []int{0, 1}, procID: -1, want: []int{0, 1}},
		{name: "one dead", live: []int{0, 2}, dead: []int{1}, procID: -1, want: []int{0, 2}, lines: 1},
		{name: "dies during the request", live: []int{0}, hangUp: []int{1}, procID: -1, want: []int{0}, lines: 1},
		{name: "all dead", dead: []int{0, 1}, procID: -1, lines: 2, fails: ErrNoProcess},
		{name: "all hang up", hangUp: []int{0}, procID: -1, lines: 1, fails: ErrNoProcess},
		{name: "-p dead", live: []int{0}, dead: []int{1}, procID: 1, fails: ErrNotAnswering},
		{name: "-p hangs up", live: []int{0}, hangUp: []int{1}, procID: 1, fails: ErrNotAnswering},
		{name: "-p live", live: []int{0}, dead: []int{1}, procID: 0, want: []int{0}},
		{name: "-p absent", live: []int{0}, procID: 7, fails: ErrNoProcess},
		{name: "empty run dir", procID: -1, fails: ErrNoProcess},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runDir := t.TempDir()
			for _, id := range tc.live {
				serve(t, runDir, id, false)
			}
			for _, id := range tc.hangUp {
				serve(t, runDir, id, true)
			}
			for _, id := range tc.dead {
				stale(t, runDir, id)
			}
			var stderr bytes.Buffer
			tool := NewTool("tool", "usage")
			tool.Stderr = &stderr
			tool.Opts.RunDir, tool.Opts.ProcID = runDir, tc.procID
			var got []int
			err := tool.Each(func(c *Client) error {
				var r struct {
					ProcID int `json:"proc_id"`
				}
				if err := c.Call(OpInfo, nil, &r); err != nil {
					return err
				}
				got = append(got, r.ProcID)
				return nil
			})
			if tc.fails != nil {
				if !errors.Is(err, tc.fails) {
					t.Fatalf("Each: %v; want an error matching %v", err, tc.fails)
				}
			} else if err != nil {
				t.Fatalf("Each: %v", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("answered: %v, want %v", got, tc.want)
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if stderr.Len() == 0 {
				lines = nil
			}
			if len(lines) != tc.lines {
				t.Fatalf("stderr has %d lines, want %d:\n%s", len(lines), tc.lines, stderr.String())
			}
			for _, l := range lines {
				if !strings.HasPrefix(l, "tool: proc-id ") || !strings.Contains(l, "not answering") {
					t.Errorf("stderr line %q; want \"tool: proc-id N: not answering ...\"", l)
				}
			}
		})
	}
}

func TestDialStaleSocket(t *testing.T) {
	runDir := t.TempDir()
	stale(t, runDir, 3)
	_, err := Dial(runDir, 3)
	if !errors.Is(err, ErrNotAnswering) {
		t.Fatalf("Dial of a stale socket: %v, want ErrNotAnswering", err)
	}
	want := "proc-id 3: not answering: connection refused (stale socket " + filepath.Join(runDir, "3.sock") + " of a process that died?)"
	if err.Error() != want {
		t.Fatalf("Dial of a stale socket: %q, want %q", err, want)
	}
	if _, err := Dial(runDir, 4); !errors.Is(err, ErrNoProcess) || errors.Is(err, ErrNotAnswering) {
		t.Fatalf("Dial without a socket: %v, want ErrNoProcess only", err)
	}
	if err := os.Remove(SocketPath(runDir, 3)); err != nil {
		t.Fatal(err)
	}
}
