package main

import (
	"fmt"
	"log"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xstack/xstack/internal/lossy"
)

// The loss scenario: TCP throughput of one flow in each direction (the bulk
// scenario's upload to discard and download from chargen) while the peer's
// veth end drops a share of the TCP and UDP frames both ways
// (internal/lossy: XDP for what the peer receives, tc egress for what it
// sends; ARP and ND always pass). The stack side's veth end keeps only
// xstack's own XDP program. TSO, GSO and GRO are off on both ends for the
// whole scenario, so that each dropped frame is one MTU-sized segment for
// both targets, and both servers send with Reno (see loss).

// lossSettle is how long after a flow starts the dropper starts dropping:
// connections are made on a clean link (a lost SYN would cost a one-second
// retransmission, or the connect), and the loss is on well before the
// measurement window opens.
const lossSettle = 200 * time.Millisecond

func (b *bench) loss() error {
	r := b.r
	d, err := lossy.Attach(r.PeerNS, r.PeerIf)
	if err != nil {
		return err
	}
	defer d.Close()
	// Like with like: both servers send with Reno. The host's default
	// congestion control (often bbr, which hardly slows down for
	// random loss) would compare algorithms, not stacks; and a network
	// namespace may only choose among the host's allowed algorithms,
	// which always include Reno but not always cubic (xstack's default).
	const ccKey = "net.ipv4.tcp_congestion_control"
	cc, err := r.Run(r.StackNS, "sysctl", "-n", ccKey)
	if err != nil {
		return err
	}
	cc = strings.TrimSpace(cc)
	if _, err := r.Run(r.StackNS, "sysctl", "-qw", ccKey+"=reno"); err != nil {
		return err
	}
	defer r.Run(r.StackNS, "sysctl", "-qw", ccKey+"="+cc)
	conf, err := os.ReadFile(b.conf)
	if err != nil {
		return err
	}
	renoConf := filepath.Join(filepath.Dir(b.conf), "config-reno.ini")
	if err := os.WriteFile(renoConf, append(conf, "net.inet.tcp.cc=reno\n"...), 0o644); err != nil {
		return err
	}
	defer func(c string) { b.conf = c }(b.conf)
	b.conf = renoConf
	peerCC, err := r.Run(r.PeerNS, "sysctl", "-n", ccKey)
	if err != nil {
		return err
	}
	warm := 2 * time.Second
	if b.o.quick {
		warm = 500 * time.Millisecond
	}
	err = b.withOffloadsOff(func() error {
		return b.eachRound(streamServer, bothTargets, func(round int, tg string, addr netip.AddrPort) error {
			for _, rate := range b.o.lossRates {
				for _, dir := range []string{upload, download} {
					if err := b.lossRound(d, round, tg, addr, rate, dir, warm); err != nil {
						return err
					}
				}
			}
			return d.SetLoss(0, 0)
		})
	})
	if err != nil {
		return err
	}
	c, err := d.Counts()
	if err != nil {
		return err
	}
	b.res.Notes = append(b.res.Notes, fmt.Sprintf("loss, rig "+b.mode+": MiB/s of payload over the window after a %v warm-up, one flow; "+
		"the share is dropped each way by BPF programs on the peer's veth end (frames to the stack side: tc egress, %s; from it: XDP); "+
		"offloads %s on both ends (TSO, GSO and, but in the nic rig mode, GRO); congestion control: Reno for both servers (xstack's net.inet.tcp.cc=reno; the stack side kernel's set from %s for the scenario), %s for the peer (the upload's sender, the same for both targets); the dropper dropped %d of %d TCP/UDP frames to the stack side and %d of %d from it over the scenario",
		warm, d.EgressHook(), b.offloadsOffName(), cc, strings.TrimSpace(peerCC), c.Egress.Dropped, c.Egress.Dropped+c.Egress.Passed, c.Ingress.Dropped, c.Ingress.Dropped+c.Ingress.Passed))
	return nil
}

// lossRound measures one direction at one loss rate. A window in which
// no byte moved is a measurement too (0 MiB/s), not a failure: at high
// loss a stack can sit out a whole window in retransmission back-off.
func (b *bench) lossRound(d *lossy.Dropper, round int, tg string, addr netip.AddrPort, rate float64, dir string, warm time.Duration) error {
	port := uint16(discardPort)
	if dir == download {
		port = chargenPort
	}
	if err := d.SetLoss(0, 0); err != nil {
		return err
	}
	lossOn := time.AfterFunc(lossSettle, func() {
		if err := d.SetLoss(rate, rate); err != nil {
			log.Printf("loss: %v", err)
		}
	})
	before, err := d.Counts()
	if err != nil {
		lossOn.Stop()
		return err
	}
	br, err := runBulk(b.ctx, b.r.PeerNS, netip.AddrPortFrom(addr.Addr(), port), dir, 1, warm, b.o.duration, nil)
	lossOn.Stop()
	// Clean up on a clean link: the client's reset must reach the
	// server, or its chargen would go on sending into the next round.
	if serr := d.SetLoss(0, 0); serr != nil {
		return serr
	}
	stalled := err != nil && br.errors == 0 && strings.Contains(err.Error(), "no byte moved")
	if err != nil && !stalled {
		return fmt.Errorf("loss %s at %g%%: %w", dir, math.Round(rate*1000)/10, err)
	}
	after, err := d.Counts()
	if err != nil {
		return err
	}
	mibps := 0.0
	if !stalled {
		mibps = float64(br.bytes) / (1 << 20) / br.elapsed.Seconds()
	} else {
		br.elapsed = b.o.duration
		b.res.Notes = append(b.res.Notes, fmt.Sprintf("loss: %s round %d, %s at %g%% loss: no byte moved in the window", tg, round, dir, math.Round(rate*1000)/10))
	}
	pct := math.Round(rate*1000) / 10
	label := fmt.Sprintf("%s, %g%% loss", dir, pct)
	pt := b.point("loss", clientGo, label, int(pct), "throughput", "MiB/s", false)
	pt.Samples = append(pt.Samples, &Sample{Target: tg, Round: round, Value: mibps, Detail: map[string]float64{
		"bytes": float64(br.bytes), "seconds": br.elapsed.Seconds(), "loss": rate,
		"dropped_to_stack":   float64(after.Egress.Dropped - before.Egress.Dropped),
		"passed_to_stack":    float64(after.Egress.Passed - before.Egress.Passed),
		"dropped_from_stack": float64(after.Ingress.Dropped - before.Ingress.Dropped),
		"passed_from_stack":  float64(after.Ingress.Passed - before.Ingress.Passed),
	}})
	log.Printf("  loss %s round %d %s: %.2f MiB/s", tg, round, label, mibps)
	return nil
}
