package rig

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/genl"
	"github.com/xstack/xstack/internal/netns"
)

// RxCPU says on which CPU each side's receive work runs.
type RxCPU string

const (
	// RxSender is veth as it comes: a frame's receive path runs in the
	// sender's context, on the sending CPU (veth_xmit hands it to the
	// peer's backlog or NAPI on the current CPU).
	RxSender RxCPU = "sender"
	// RxReceiver is NIC-like: each veth end's receive work runs in a NAPI
	// kthread pinned to its own side's CPU at SCHED_FIFO, as a NIC's
	// interrupt or busy polling sits on the receiving queue's core. Threaded NAPI on both
	// ends, GRO on both receivers, and TSO off on the stack side's end:
	// veth passes a frame to the peer's NAPI only when the sender has no
	// TSO (veth_skb_is_eligible_for_gro in drivers/net/veth.c).
	RxReceiver RxCPU = "receiver"
)

// ParseRxCPU reads a -rx-cpu flag value.
func ParseRxCPU(s string) (RxCPU, error) {
	switch RxCPU(s) {
	case RxSender, RxReceiver:
		return RxCPU(s), nil
	case "":
		return RxSender, nil
	}
	return "", fmt.Errorf("rig: unknown -rx-cpu %q (have %s, %s)", s, RxSender, RxReceiver)
}

// NAPIThread is the kthread of one NAPI instance of a rig interface.
type NAPIThread struct {
	Ifname string `json:"ifname"`
	ID     uint32 `json:"napi_id"`
	PID    int    `json:"pid"`
	CPU    int    `json:"cpu"` // the CPU it is pinned to
}

// receiverRx switches the rig to RxReceiver: GRO on both ends, TSO off on
// the stack side's end, threaded NAPI on both, each kthread pinned to its
// side's CPU. GRO comes first: veth has a NAPI (and so accepts threaded
// mode) only once GRO is on or an XDP program is attached, and with GRO on
// the NAPI stays when xstack attaches or detaches its program.
func (r *Rig) receiverRx() error {
	if err := r.ethtool(r.PeerNS, r.PeerIf, "gro", "on"); err != nil {
		return err
	}
	if err := r.ethtool(r.StackNS, r.StackIf, "gro", "on", "tso", "off"); err != nil {
		return err
	}
	// Any TCP segmentation feature left on (recent kernels have more than
	// the four "tso" names) makes veth bypass the peer's NAPI as well.
	if err := r.tsoOff(r.StackNS, r.StackIf); err != nil {
		return err
	}
	for _, e := range []struct{ ns, ifname string }{{r.StackNS, r.StackIf}, {r.PeerNS, r.PeerIf}} {
		path := "/sys/class/net/" + e.ifname + "/threaded"
		if _, err := r.Run(e.ns, "sh", "-c", "echo 1 > "+path); err != nil {
			return fmt.Errorf("rig %s: threaded NAPI on %s: %w", r.Name, e.ifname, err)
		}
	}
	_, err := r.PinNAPI()
	return err
}

func (r *Rig) ethtool(ns, ifname string, kv ...string) error {
	_, err := r.Run(ns, "ethtool", append([]string{"-K", ifname}, kv...)...)
	return err
}

// tsoOff turns off every TCP segmentation offload ethtool lists on ifname
// that is on and not fixed.
func (r *Rig) tsoOff(ns, ifname string) error {
	out, err := r.Run(ns, "ethtool", "-k", ifname)
	if err != nil {
		return err
	}
	var kv []string
	for l := range strings.SplitSeq(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		v = strings.TrimSpace(v)
		if ok && strings.HasPrefix(k, "tx-tcp") && strings.HasSuffix(k, "segmentation") && v == "on" {
			kv = append(kv, k, "off")
		}
	}
	if len(kv) == 0 {
		return nil
	}
	return r.ethtool(ns, ifname, kv...)
}

// PinNAPI pins the NAPI kthreads of both veth ends to their side's CPU
// (StackCPU, PeerCPU), at SCHED_FIFO priority 50, and returns them. In RxReceiver mode a kthread is
// created when its NAPI is (re)enabled, so callers pin again after
// anything that may recreate it (an XDP program attached with GRO off).
// It waits up to a second for the kthreads to appear.
func (r *Rig) PinNAPI() ([]NAPIThread, error) {
	if r.RxCPU != RxReceiver {
		return nil, nil
	}
	var all []NAPIThread
	for _, e := range []struct {
		ns, ifname string
		cpu        int
	}{{r.StackNS, r.StackIf, r.StackCPU}, {r.PeerNS, r.PeerIf, r.PeerCPU}} {
		var ts []NAPIThread
		deadline := time.Now().Add(time.Second)
		for {
			var err error
			ts, err = napiThreads(e.ns, e.ifname)
			if err != nil {
				return nil, fmt.Errorf("rig %s: %w", r.Name, err)
			}
			if len(ts) >= r.Queues || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(ts) < r.Queues {
			return nil, fmt.Errorf("rig %s: %s has %d NAPI kthreads, want %d (is threaded NAPI on? cat /sys/class/net/%s/threaded in %s)",
				r.Name, e.ifname, len(ts), r.Queues, e.ifname, e.ns)
		}
		for i := range ts {
			var set unix.CPUSet
			set.Set(e.cpu)
			if err := unix.SchedSetaffinity(ts[i].PID, &set); err != nil {
				return nil, fmt.Errorf("rig %s: pin napi kthread %d of %s to CPU %d: %w", r.Name, ts[i].PID, e.ifname, e.cpu, err)
			}
			var got unix.CPUSet
			if err := unix.SchedGetaffinity(ts[i].PID, &got); err != nil || got.Count() != 1 || !got.IsSet(e.cpu) {
				return nil, fmt.Errorf("rig %s: napi kthread %d of %s is not pinned to CPU %d (%v)", r.Name, ts[i].PID, e.ifname, e.cpu, err)
			}
			// A NIC's receive work runs in hard and soft interrupt
			// context, ahead of every task on its core; a NAPI kthread
			// at the normal policy waits its turn behind the server or
			// client, veth's 256-frame ring overflows meanwhile and TCP
			// collapses into retransmissions. Run it as the kernel runs
			// threaded interrupt handlers: SCHED_FIFO, priority 50.
			if err := unix.SchedSetAttr(ts[i].PID, &unix.SchedAttr{Policy: unix.SCHED_FIFO, Priority: napiPriority}, 0); err != nil {
				return nil, fmt.Errorf("rig %s: napi kthread %d of %s: SCHED_FIFO %d: %w", r.Name, ts[i].PID, e.ifname, napiPriority, err)
			}
			ts[i].CPU = e.cpu
		}
		all = append(all, ts...)
	}
	return all, nil
}

// napiPriority is the real-time priority of the NAPI kthreads in
// RxReceiver mode, that of the kernel's threaded interrupt handlers.
const napiPriority = 50

// Generic netlink constants of the kernel's "netdev" family
// (include/uapi/linux/netdev.h).
const (
	netdevCmdNAPIGet = 11 // NETDEV_CMD_NAPI_GET
	netdevANAPIIfidx = 1  // NETDEV_A_NAPI_IFINDEX
	netdevANAPIID    = 2  // NETDEV_A_NAPI_ID
	netdevANAPIPID   = 4  // NETDEV_A_NAPI_PID
)

// napiThreads lists the NAPI instances of ifname in namespace ns that have
// a kthread, from the netdev generic netlink family. The kthreads of every
// rig share names (napi/xs0-<id>), so the name alone would not say which
// rig's they are; the netlink socket opened in the namespace does.
func napiThreads(ns, ifname string) ([]NAPIThread, error) {
	var out []NAPIThread
	err := netns.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := genl.Open()
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		fam, err := genl.Family(fd, "netdev")
		if err != nil {
			return err
		}
		req := genl.Request(fam, netdevCmdNAPIGet, unix.NLM_F_REQUEST|unix.NLM_F_DUMP, 2,
			genl.Attr(netdevANAPIIfidx, binary.NativeEndian.AppendUint32(nil, uint32(ifi.Index))))
		return genl.Dump(fd, req, func(attrs map[uint16][]byte) {
			idx, id, pid := attrs[netdevANAPIIfidx], attrs[netdevANAPIID], attrs[netdevANAPIPID]
			if len(idx) < 4 || int(binary.NativeEndian.Uint32(idx)) != ifi.Index || len(id) < 4 || len(pid) < 4 {
				return
			}
			if p := int(int32(binary.NativeEndian.Uint32(pid))); p > 0 {
				out = append(out, NAPIThread{Ifname: ifname, ID: binary.NativeEndian.Uint32(id), PID: p, CPU: -1})
			}
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list NAPI kthreads of %s in %s (netdev netlink): %w", ifname, ns, err)
	}
	return out, nil
}
