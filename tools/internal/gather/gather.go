// Package gather asks every xstack process a tool reaches the same
// question: the tools that show a table (netstat, route, pcap) run one
// control call per process and then merge or list the answers.
package gather

import (
	"slices"

	"github.com/xstack/xstack/internal/ctl"
	"github.com/xstack/xstack/stack/stackinfo"
)

// Answer is one process's reply.
type Answer[T any] struct {
	ProcID int
	Value  T
}

// All calls op with args on every process t reaches, as t.Each does (a
// process that does not answer is reported and skipped unless -p named
// it), and returns the replies in process order.
func All[T any](t *ctl.Tool, op string, args any) ([]Answer[T], error) {
	var out []Answer[T]
	err := t.Each(func(c *ctl.Client) error {
		var v T
		if err := c.Call(op, args, &v); err != nil {
			return err
		}
		out = append(out, Answer[T]{c.ProcID, v})
		return nil
	})
	return out, err
}

// Values returns the replies without their process ids.
func Values[T any](answers []Answer[T]) []T {
	vs := make([]T, len(answers))
	for i, a := range answers {
		vs[i] = a.Value
	}
	return vs
}

// Routes is the route table of the processes t reaches, as netstat -r and
// route show print it: every process's routes, each once, in the order
// first seen. The tables are the same unless one was changed with -p.
func Routes(t *ctl.Tool) ([]stackinfo.Route, error) {
	answers, err := All[[]stackinfo.Route](t, ctl.OpRoutes, nil)
	if err != nil {
		return nil, err
	}
	var routes []stackinfo.Route
	for _, a := range answers {
		for _, r := range a.Value {
			if !slices.Contains(routes, r) {
				routes = append(routes, r)
			}
		}
	}
	return routes, nil
}
