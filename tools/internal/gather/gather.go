// Package gather asks every xstack process a tool reaches the same
// question: the tools that show a table (netstat, route, pcap) run one
// control call per process and then merge or list the answers.
package gather

import "github.com/xstack/xstack/internal/ctl"

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
