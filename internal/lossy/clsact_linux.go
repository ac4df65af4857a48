package lossy

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The clsact fallback, for kernels without TCX (before 6.6): a clsact qdisc
// on the interface and a direct-action cls_bpf filter on its egress hook,
// made with rtnetlink (vishvananda/netlink). Unlike a TCX link, the filter
// outlives the process that made it; Close removes the qdisc and its
// filters with it, and so does deleting the interface (or its namespace).

const (
	filterPrio       = 1
	clsactFilterName = "xstack_lossy"
)

// clsact is an egress filter attached through a clsact qdisc. The netlink
// handle's socket was made in the interface's namespace and keeps talking
// to it from any thread.
type clsact struct {
	h     *netlink.Handle
	qdisc *netlink.Clsact
}

// attachClsact creates a clsact qdisc on ifindex and attaches progFD to its
// egress hook. Call it on a thread in the interface's namespace. It fails
// with EEXIST if the interface already has a clsact qdisc, which it would
// otherwise remove on Close.
func attachClsact(ifindex, progFD int) (_ *clsact, err error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	c := &clsact{h: h, qdisc: &netlink.Clsact{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: ifindex,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_CLSACT,
	}}}
	if err := h.QdiscAdd(c.qdisc); err != nil { // NLM_F_EXCL: EEXIST if there is one
		h.Close()
		return nil, fmt.Errorf("add clsact qdisc: %w", err)
	}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if err := h.FilterAdd(&netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    netlink.HANDLE_MIN_EGRESS,
			Protocol:  unix.ETH_P_ALL,
			Priority:  filterPrio,
		},
		Fd:           progFD,
		Name:         clsactFilterName,
		DirectAction: true,
	}); err != nil {
		return nil, fmt.Errorf("add egress bpf filter: %w", err)
	}
	return c, nil
}

// close deletes the qdisc (and the filter with it) and the handle.
func (c *clsact) close() error {
	err := c.h.QdiscDel(c.qdisc)
	c.h.Close()
	if errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EINVAL) {
		// The interface, or its qdisc, is already gone.
		err = nil
	}
	if err != nil {
		return fmt.Errorf("delete clsact qdisc: %w", err)
	}
	return nil
}
