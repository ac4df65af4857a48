package ctl_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/internal/ctl/ctltest"
)

// info answers with the proc-id of the fake process.
func info(id int) ctltest.Handler {
	return func(int, ctl.Request) (any, error) { return ctl.Info{ProcID: id}, nil }
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
		{name: "all dead", dead: []int{0, 1}, procID: -1, lines: 2, fails: ctl.ErrNoProcess},
		{name: "all hang up", hangUp: []int{0}, procID: -1, lines: 1, fails: ctl.ErrNoProcess},
		{name: "-p dead", live: []int{0}, dead: []int{1}, procID: 1, fails: ctl.ErrNotAnswering},
		{name: "-p hangs up", live: []int{0}, hangUp: []int{1}, procID: 1, fails: ctl.ErrNotAnswering},
		{name: "-p live", live: []int{0}, dead: []int{1}, procID: 0, want: []int{0}},
		{name: "-p absent", live: []int{0}, procID: 7, fails: ctl.ErrNoProcess},
		{name: "empty run dir", procID: -1, fails: ctl.ErrNoProcess},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runDir := t.TempDir()
			for _, id := range tc.live {
				ctltest.Serve(t, runDir, id, ctltest.Forever, info(id))
			}
			for _, id := range tc.hangUp {
				ctltest.Serve(t, runDir, id, 0, info(id))
			}
			for _, id := range tc.dead {
				ctltest.Stale(t, runDir, id)
			}
			var stderr bytes.Buffer
			tool := ctl.NewTool("tool", "usage")
			tool.Stderr = &stderr
			tool.Opts.RunDir, tool.Opts.ProcID = runDir, tc.procID
			var got []int
			err := tool.Each(func(c *ctl.Client) error {
				var r ctl.Info
				if err := c.Call(ctl.OpInfo, nil, &r); err != nil {
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
	ctltest.Stale(t, runDir, 3)
	_, err := ctl.Dial(runDir, 3)
	if !errors.Is(err, ctl.ErrNotAnswering) {
		t.Fatalf("Dial of a stale socket: %v, want ErrNotAnswering", err)
	}
	want := "proc-id 3: not answering: connection refused (stale socket " + filepath.Join(runDir, "3.sock") + " of a process that died?)"
	if err.Error() != want {
		t.Fatalf("Dial of a stale socket: %q, want %q", err, want)
	}
	if _, err := ctl.Dial(runDir, 4); !errors.Is(err, ctl.ErrNoProcess) || errors.Is(err, ctl.ErrNotAnswering) {
		t.Fatalf("Dial without a socket: %v, want ErrNoProcess only", err)
	}
}
