package core

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/xstack/xstack/internal/fuzzcorpus"
	"github.com/xstack/xstack/internal/testframe"
	"github.com/xstack/xstack/nic/nictest"
	"github.com/xstack/xstack/stack"
)

// The receive path under fuzzing: two lcores as in thread mode, each with
// an in-memory queue, a stack with the same addresses and MAC address, a
// TCP listener on port 80 and a UDP socket on port 53 (IPv4 and IPv6), the
// real steering with the production port split, and hand-off rings between
// them. Frames are injected into one lcore's queue and both loops run
// passes, so every frame takes exactly the lcore loop's way: Rx, Classify,
// the hand-off ring for frames the other lcore owns, and the link
// endpoint's deliver into gVisor.

// The fuzz input is flags and a byte string of frames, each a big-endian
// uint16 length and that many bytes (the last one takes what is left).
const (
	// rxFixSums recomputes the IPv4 header checksum and the TCP, UDP,
	// ICMPv4 and ICMPv6 checksums of every frame whose headers say where
	// they are, so that mutated frames get past gVisor's checks and reach
	// the protocol code.
	rxFixSums uint8 = 1 << iota
	// rxConns opens two IPv4 connections before the frames: a passive one
	// from the peer's port rxPassivePort to port 80 on the receiving
	// lcore, and an active one from lcore 1 to the peer's port
	// rxActivePort. A frame's TCP segment from either peer port carries
	// sequence and acknowledgment numbers relative to that connection's
	// initial ones, and a segment from rxActivePort is addressed to the
	// active connection's port, whatever port the frame names.
	rxConns
	// rxOnLcore1 makes the frames arrive on lcore 1's queue instead of
	// lcore 0's.
	rxOnLcore1
	// rxBurst queues all the frames before the loops run, so that they
	// arrive as one burst (and GRO may merge them), instead of one frame
	// per pass.
	rxBurst
	// rxMultiBuffer makes the queues emulate AF_XDP multi-buffer queues
	// with buffers of rxSegSize bytes, so that nearly every frame arrives
	// as a chain the loop joins for steering, and the stacks send theirs
	// in chains too.
	rxMultiBuffer
)

// rxSegSize is the buffer size of rxMultiBuffer's queues: small, so that
// frames of every size span several.
const rxSegSize = 128

const (
	rxMaxFrames    = 16
	rxMaxFrame     = 1514 // the in-memory queue's MTU of 1500 plus the Ethernet header
	rxListenPort   = 80
	rxUDPPort      = 53
	rxPassivePort  = 40000 // below the ephemeral ranges: steered as a listening port
	rxActivePort   = 9
	rxPassiveISS   = 1000000
	rxActiveISS    = 5000000
	rxRingSlots    = 64
	rxRingSlotSize = 2048
)

var (
	rxMAC     = net.HardwareAddr(testframe.MACUs)
	rxPeerMAC = net.HardwareAddr(testframe.MACPeer)
	rxV4Us    = netip.MustParseAddr("198.18.0.1")
	rxV4Peer  = netip.MustParseAddr("198.18.0.2")
	rxV6Us    = netip.MustParseAddr("2001:2::1")
	rxV6Peer  = netip.MustParseAddr("2001:2::2")
)

// rxSplitFrames decodes the frames of a fuzz input: at most rxMaxFrames,
// each cut to rxMaxFrame bytes.
func rxSplitFrames(data []byte) [][]byte {
	var frames [][]byte
	for len(data) >= 2 && len(frames) < rxMaxFrames {
		n := int(binary.BigEndian.Uint16(data))
		data = data[2:]
		n = min(n, len(data))
		frames = append(frames, bytes.Clone(data[:min(n, rxMaxFrame)]))
		data = data[n:]
	}
	return frames
}

// rxJoinFrames encodes frames as rxSplitFrames reads them.
func rxJoinFrames(frames ...[]byte) []byte {
	var b []byte
	for _, f := range frames {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	return b
}

// rxLcore is one lcore of the world.
type rxLcore struct {
	q    *nictest.Queue
	st   *stack.Stack
	h    *Handoff
	loop *Loop
	eps  []tcpip.Endpoint // closed with the world
	udp  [2]tcpip.Endpoint
	sent [][]byte // frames it transmitted since the last take
}

type rxWorld struct {
	lc    [2]*rxLcore
	rings []*HandoffRing

	// The connections of rxConns: the port lcore 1 connected from and the
	// initial sequence numbers the stacks chose.
	activePort            uint16
	passiveISS, activeISS uint32
}

func rxAddr(a netip.Addr) tcpip.Address { return tcpip.AddrFromSlice(a.AsSlice()) }

func newRXWorld(t *testing.T, multiBuffer bool) *rxWorld {
	t.Helper()
	w := &rxWorld{}
	t.Cleanup(w.close)
	const n = 2
	var rings [n][n]*HandoffRing
	for i := range n {
		for j := range n {
			if i == j {
				continue
			}
			r, err := NewHandoffRing(rxRingSlots, rxRingSlotSize)
			if err != nil {
				t.Fatal(err)
			}
			rings[i][j] = r
			w.rings = append(w.rings, r)
		}
	}
	for i := range n {
		q := nictest.New(1500)
		q.SetHardwareAddr(rxMAC)
		if multiBuffer {
			if err := q.SetMultiBuffer(rxSegSize, 18); err != nil {
				t.Fatal(err)
			}
		}
		steer := newLcoreSteer(n, i)
		lo, hi := steer.PortRange(i)
		st, err := stack.New(q, stack.Config{
			Name:   "fuzz0",
			Addr4:  netip.PrefixFrom(rxV4Us, 16),
			Addr6:  netip.PrefixFrom(rxV6Us, 64),
			PortLo: lo, PortHi: hi,
		})
		if err != nil {
			q.Close()
			t.Fatal(err)
		}
		lc := &rxLcore{q: q, st: st}
		w.lc[i] = lc
		for _, a := range []netip.Addr{rxV4Peer, rxV6Peer} {
			if err := st.AddStaticNeighbor(a, rxPeerMAC); err != nil {
				t.Fatal(err)
			}
		}
		lc.h = newHandoff(i, n, steer, DefaultBurst)
		for j := range n {
			lc.h.in[j], lc.h.out[j] = rings[j][i], rings[i][j]
		}
		lc.loop = NewLoop(q, st, LoopConfig{BusyPoll: true, Handoff: lc.h})
		for k, netProto := range []tcpip.NetworkProtocolNumber{ipv4.ProtocolNumber, ipv6.ProtocolNumber} {
			l := lc.endpoint(t, tcp.ProtocolNumber, netProto, rxListenPort)
			if err := l.Listen(64); err != nil {
				t.Fatalf("listen: %s", err)
			}
			lc.udp[k] = lc.endpoint(t, udp.ProtocolNumber, netProto, rxUDPPort)
		}
	}
	return w
}

// endpoint makes a socket bound to port on every address of one family.
func (lc *rxLcore) endpoint(t *testing.T, proto tcpip.TransportProtocolNumber, netProto tcpip.NetworkProtocolNumber, port uint16) tcpip.Endpoint {
	t.Helper()
	ep, err := lc.st.Gvisor().NewEndpoint(proto, netProto, &waiter.Queue{})
	if err != nil {
		t.Fatalf("endpoint: %s", err)
	}
	lc.eps = append(lc.eps, ep)
	if netProto == ipv6.ProtocolNumber {
		ep.SocketOptions().SetV6Only(true)
	}
	if err := ep.Bind(tcpip.FullAddress{Port: port}); err != nil {
		t.Fatalf("bind %d: %s", port, err)
	}
	return ep
}

func (w *rxWorld) close() {
	for _, lc := range w.lc {
		if lc == nil {
			continue
		}
		for _, ep := range lc.eps {
			ep.Close()
		}
		lc.st.Close()
		lc.q.Close()
	}
	for _, r := range w.rings {
		r.Close()
	}
}

// pass runs one pass of lcore first, then of the other, which delivers
// what first handed over, and keeps what both transmitted.
func (w *rxWorld) pass(t *testing.T, first int) {
	t.Helper()
	for _, i := range []int{first, 1 - first} {
		lc := w.lc[i]
		if _, err := lc.loop.Pass(nil); err != nil {
			t.Fatalf("lcore %d: pass: %v", i, err)
		}
		lc.sent = append(lc.sent, lc.q.Sent()...)
	}
}

// await runs passes until find returns true for a frame lcore i sent, for
// at most a few seconds (gVisor answers a SYN from its own goroutines).
func (w *rxWorld) await(t *testing.T, i int, find func(f []byte) bool) bool {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		w.pass(t, i)
		for _, f := range w.lc[i].sent {
			if find(f) {
				return true
			}
		}
		runtime.Gosched()
		time.Sleep(20 * time.Microsecond)
	}
	return false
}

// rxTCP4 parses f as an Ethernet frame with an IPv4 TCP segment.
func rxTCP4(f []byte) (header.IPv4, header.TCP, bool) {
	if len(f) < header.EthernetMinimumSize+header.IPv4MinimumSize+header.TCPMinimumSize ||
		header.Ethernet(f).Type() != header.IPv4ProtocolNumber {
		return nil, nil, false
	}
	ip := header.IPv4(f[header.EthernetMinimumSize:])
	if !ip.IsValid(len(ip)) || ip.TransportProtocol() != header.TCPProtocolNumber {
		return nil, nil, false
	}
	seg := header.TCP(ip.Payload())
	if len(seg) < header.TCPMinimumSize {
		return nil, nil, false
	}
	return ip, seg, true
}

// rxSegment is a TCP segment from the peer, in an Ethernet frame to us.
type rxSegment struct {
	v6           bool
	sport, dport uint16
	seq, ack     uint32
	flags        header.TCPFlags
	win          uint16
	opts         []byte // a multiple of 4 bytes
	data         []byte
}

func (s rxSegment) frame() []byte {
	win := s.win
	if win == 0 && s.flags&header.TCPFlagRst == 0 {
		win = 65535
	}
	seg := testframe.TCP{SrcPort: s.sport, DstPort: s.dport, Seq: s.seq, Ack: s.ack, Flags: s.flags, Window: win, Options: s.opts}
	return rxL4Frame(s.v6, uint8(header.TCPProtocolNumber), seg.Segment(s.data))
}

// rxL4Frame wraps a transport payload from the peer to us in IPv4 or IPv6
// and Ethernet, with every checksum right.
func rxL4Frame(v6 bool, proto uint8, l4 []byte) []byte {
	var f []byte
	if v6 {
		f = rxIP6(proto, rxAddr(rxV6Peer), rxAddr(rxV6Us)).Frame(l4)
	} else {
		f = testframe.IPv4{Proto: tcpip.TransportProtocolNumber(proto)}.Frame(l4)
	}
	testframe.Checksums(f)
	return f
}

// rxIP6 is the IPv6 header of the seeds, with hop limit 255 as neighbour
// discovery requires (RFC 4861 section 7.1).
func rxIP6(next uint8, src, dst tcpip.Address) testframe.IPv6 {
	return testframe.IPv6{Src: src, Dst: dst, Next: tcpip.TransportProtocolNumber(next), HopLimit: 255}
}

// rxSynOpts are the options of a Linux SYN: MSS 1460, SACK permitted,
// timestamps, window scale 7.
var rxSynOpts = []byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}

// rxConnOpts are the options of the connections' SYN and SYN-ACK: those
// of rxSynOpts but timestamps, so that the seeds' segments need none.
var rxConnOpts = []byte{2, 4, 0x05, 0xb4, 4, 2, 1, 1, 1, 3, 3, 7}

// openConns makes the connections of rxConns, the passive one on lcore
// recv.
func (w *rxWorld) openConns(t *testing.T, recv int) {
	t.Helper()
	// Passive: SYN, SYN-ACK, ACK, on the receiving lcore.
	lc := w.lc[recv]
	syn := rxSegment{sport: rxPassivePort, dport: rxListenPort, seq: rxPassiveISS, flags: header.TCPFlagSyn, opts: rxConnOpts}
	lc.q.Inject(syn.frame())
	ok := w.await(t, recv, func(f []byte) bool {
		_, seg, ok := rxTCP4(f)
		if ok && seg.SourcePort() == rxListenPort && seg.DestinationPort() == rxPassivePort &&
			seg.Flags() == header.TCPFlagSyn|header.TCPFlagAck && seg.AckNumber() == rxPassiveISS+1 {
			w.passiveISS = seg.SequenceNumber()
			return true
		}
		return false
	})
	if !ok {
		t.Fatal("no SYN-ACK to the passive connection's SYN")
	}
	ack := rxSegment{sport: rxPassivePort, dport: rxListenPort, seq: rxPassiveISS + 1, ack: w.passiveISS + 1, flags: header.TCPFlagAck}
	lc.q.Inject(ack.frame())
	w.pass(t, recv)

	// Active: lcore 1 connects; the peer's SYN-ACK arrives on the
	// receiving queue and is steered to lcore 1 by its port.
	a := w.lc[1]
	ep, err := a.st.Gvisor().NewEndpoint(tcp.ProtocolNumber, ipv4.ProtocolNumber, &waiter.Queue{})
	if err != nil {
		t.Fatalf("endpoint: %s", err)
	}
	a.eps = append(a.eps, ep)
	if err := ep.Connect(tcpip.FullAddress{Addr: rxAddr(rxV4Peer), Port: rxActivePort}); err != nil {
		if _, started := err.(*tcpip.ErrConnectStarted); !started {
			t.Fatalf("connect: %s", err)
		}
	}
	ok = w.await(t, 1, func(f []byte) bool {
		_, seg, ok := rxTCP4(f)
		if ok && seg.DestinationPort() == rxActivePort && seg.Flags() == header.TCPFlagSyn {
			w.activePort, w.activeISS = seg.SourcePort(), seg.SequenceNumber()
			return true
		}
		return false
	})
	if !ok {
		t.Fatal("no SYN from the active connection")
	}
	synAck := rxSegment{sport: rxActivePort, dport: w.activePort, seq: rxActiveISS, ack: w.activeISS + 1,
		flags: header.TCPFlagSyn | header.TCPFlagAck, opts: rxConnOpts}
	w.lc[recv].q.Inject(synAck.frame())
	ok = w.await(t, 1, func(f []byte) bool {
		_, seg, ok := rxTCP4(f)
		return ok && seg.SourcePort() == w.activePort && seg.Flags() == header.TCPFlagAck && seg.AckNumber() == rxActiveISS+1
	})
	if !ok {
		t.Fatal("no ACK of the SYN-ACK from the active connection")
	}
	for _, lc := range w.lc {
		lc.sent = lc.sent[:0]
	}
}

// rewriteConnSegment makes a fuzzed segment of one of the connections
// absolute: see rxConns.
func (w *rxWorld) rewriteConnSegment(f []byte) {
	_, seg, ok := rxTCP4(f)
	if !ok {
		return
	}
	switch seg.SourcePort() {
	case rxPassivePort:
		seg.SetSequenceNumber(seg.SequenceNumber() + rxPassiveISS)
		seg.SetAckNumber(seg.AckNumber() + w.passiveISS)
	case rxActivePort:
		seg.SetDestinationPort(w.activePort)
		seg.SetSequenceNumber(seg.SequenceNumber() + rxActiveISS)
		seg.SetAckNumber(seg.AckNumber() + w.activeISS)
	}
}

// rxCounts are the counters the accounting check reads, for one lcore.
type rxCounts struct {
	rx                                  uint64 // taken off the queue
	local, out, in, broadcasts, dropped uint64 // steering (Handoff)
	link                                uint64 // link endpoint: to gVisor, or dropped and counted
	toGvisor                            uint64 // link endpoint: packets handed to gVisor, after GRO
	ip, arp                             uint64 // gVisor: received by the network protocols
}

func (lc *rxLcore) counts() rxCounts {
	hs := lc.h.Stats()
	ls := lc.st.LinkStats()
	gs := lc.st.Stats()
	// Every Rx counter of the link endpoint, the frames it hands to gVisor
	// and each kind it drops, whichever kinds it has.
	var link uint64
	lv := reflect.ValueOf(ls)
	for i := range lv.NumField() {
		if strings.HasPrefix(lv.Type().Field(i).Name, "Rx") {
			link += lv.Field(i).Uint()
		}
	}
	return rxCounts{
		rx:    lc.q.Stats().RxFrames,
		local: hs.Local, out: hs.HandedOut, in: hs.HandedIn, broadcasts: hs.Broadcasts, dropped: hs.Dropped,
		link:     link,
		toGvisor: ls.RxFrames - ls.GROMerged,
		ip:       gs.IP.PacketsReceived.Value(),
		arp:      gs.ARP.PacketsReceived.Value(),
	}
}

func (c rxCounts) minus(o rxCounts) rxCounts {
	return rxCounts{
		rx: c.rx - o.rx, local: c.local - o.local, out: c.out - o.out, in: c.in - o.in,
		broadcasts: c.broadcasts - o.broadcasts, dropped: c.dropped - o.dropped,
		link: c.link - o.link, toGvisor: c.toGvisor - o.toGvisor, ip: c.ip - o.ip, arp: c.arp - o.arp,
	}
}

// checkAccounting checks that the n frames lcore recv received between
// the two snapshots were processed by exactly the lcores steering chose
// and counted at each step.
func checkAccounting(t *testing.T, recv int, before, after [2]rxCounts, n uint64, frame []byte) {
	t.Helper()
	r, o := after[recv].minus(before[recv]), after[1-recv].minus(before[1-recv])
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("frame % x on lcore %d: %s\nreceiving lcore %+v\nother lcore %+v", frame, recv, fmt.Sprintf(format, args...), r, o)
	}
	if r.rx != n || o.rx != 0 {
		fail("taken off the queues %d and %d times, want %d times off the receiving one", r.rx, o.rx, n)
	}
	// Each copy for another lcore is handed out or dropped; a broadcast
	// frame is processed here and copied to the one other lcore.
	if r.local+r.out+r.dropped-r.broadcasts != n || r.local > n || r.broadcasts > r.local {
		fail("steering counted it %d local, %d handed out, %d dropped, %d broadcasts", r.local, r.out, r.dropped, r.broadcasts)
	}
	if r.dropped != 0 {
		fail("dropped by the hand-off with an empty ring")
	}
	if r.in != 0 || o.out != 0 || o.local != 0 || o.in != r.out {
		fail("handed over %d, the other lcore took in %d", r.out, o.in)
	}
	for i, d := range []rxCounts{r, o} {
		want := d.local + d.in
		if d.link != want {
			fail("lcore side %d: the link endpoint accounted for %d frames, want %d", i, d.link, want)
		}
		if d.ip+d.arp != d.toGvisor {
			fail("lcore side %d: %d frames handed to gVisor, its IP and ARP received %d and %d", i, d.toGvisor, d.ip, d.arp)
		}
	}
}

// checkAlive checks that each lcore still answers a SYN to its listener
// with a SYN-ACK and still delivers a datagram to its UDP socket. The
// client port is one whose bytes occur nowhere in the fuzz input, so no
// fuzzed frame can have opened that connection first.
func (w *rxWorld) checkAlive(t *testing.T, input []byte) {
	t.Helper()
	port := uint16(1024)
	for ; bytes.Contains(input, binary.BigEndian.AppendUint16(nil, port)); port++ {
	}
	for i, lc := range w.lc {
		for _, ep := range lc.udp {
			var b bytes.Buffer
			for {
				if _, err := ep.Read(&b, tcpip.ReadOptions{}); err != nil {
					break
				}
			}
		}
		const iss = 77777
		syn := rxSegment{sport: port, dport: rxListenPort, seq: iss, flags: header.TCPFlagSyn, opts: rxSynOpts}
		lc.q.Inject(syn.frame())
		ok := w.await(t, i, func(f []byte) bool {
			_, seg, ok := rxTCP4(f)
			return ok && seg.SourcePort() == rxListenPort && seg.DestinationPort() == port &&
				seg.Flags() == header.TCPFlagSyn|header.TCPFlagAck && seg.AckNumber() == iss+1
		})
		if !ok {
			t.Fatalf("lcore %d sent no SYN-ACK to a SYN after the fuzzed frames; it sent:\n% x", i, lc.sent)
		}
		payload := []byte("still alive")
		u := make([]byte, header.UDPMinimumSize+len(payload))
		header.UDP(u).Encode(&header.UDPFields{SrcPort: port, DstPort: rxUDPPort, Length: uint16(len(u))})
		copy(u[header.UDPMinimumSize:], payload)
		lc.q.Inject(rxL4Frame(false, uint8(header.UDPProtocolNumber), u))
		w.pass(t, i)
		var b bytes.Buffer
		if _, err := lc.udp[0].Read(&b, tcpip.ReadOptions{}); err != nil || !bytes.Equal(b.Bytes(), payload) {
			t.Fatalf("lcore %d: UDP socket read %q, %v after the fuzzed frames; want %q", i, b.Bytes(), err, payload)
		}
	}
}

// FuzzRxPath feeds arbitrary Ethernet frames through what the lcore loop
// does with a received frame (see the comment at the top of the file) and
// checks that nothing panics; that each frame is taken off the queue once,
// processed by the lcore steering chose (or by both, for neighbour
// traffic), handed over the ring when that is the other lcore, and then
// either handed to gVisor's network protocols or dropped and counted by
// the link endpoint; and that afterwards both lcores still answer a SYN
// to the listener and deliver a datagram to the UDP socket. Seeds: every
// kind of frame the stack meets (rxSeeds, committed in
// testdata/fuzz/FuzzRxPath, checked against rxSeeds by TestRxPathSeeds).
func FuzzRxPath(f *testing.F) {
	f.Fuzz(func(t *testing.T, flags uint8, data []byte) {
		w := newRXWorld(t, flags&rxMultiBuffer != 0)
		recv := 0
		if flags&rxOnLcore1 != 0 {
			recv = 1
		}
		if flags&rxConns != 0 {
			w.openConns(t, recv)
		}
		frames := rxSplitFrames(data)
		for _, frame := range frames {
			if flags&rxConns != 0 {
				w.rewriteConnSegment(frame)
			}
			if flags&rxFixSums != 0 {
				testframe.Checksums(frame)
			}
		}
		burst := 1
		if flags&rxBurst != 0 {
			burst = len(frames)
		}
		for len(frames) > 0 {
			b := frames[:min(burst, len(frames))]
			frames = frames[len(b):]
			before := [2]rxCounts{w.lc[0].counts(), w.lc[1].counts()}
			for _, frame := range b {
				if !w.lc[recv].q.Inject(frame) {
					t.Fatalf("queue refused a %d-byte frame", len(frame))
				}
			}
			w.pass(t, recv)
			after := [2]rxCounts{w.lc[0].counts(), w.lc[1].counts()}
			checkAccounting(t, recv, before, after, uint64(len(b)), rxJoinFrames(b...))
		}
		w.checkAlive(t, data)
	})
}

func TestRxPathSeeds(t *testing.T) {
	fuzzcorpus.Sync(t, "FuzzRxPath", rxSeeds())
}

// Seed frames. Each seed is a frame sequence with the flags it needs; the
// builders set every checksum right, and seeds with rxFixSums keep them
// right under mutation.

func rxUDP(v6 bool, sport, dport uint16, payload []byte) []byte {
	return rxL4Frame(v6, uint8(header.UDPProtocolNumber), testframe.UDP{SrcPort: sport, DstPort: dport}.Datagram(payload))
}

func rxICMP4(typ header.ICMPv4Type, code header.ICMPv4Code, rest uint32, body []byte) []byte {
	return rxL4Frame(false, uint8(header.ICMPv4ProtocolNumber), testframe.ICMP(typ, uint8(code), rest, body))
}

func rxICMP6(typ header.ICMPv6Type, code header.ICMPv6Code, rest uint32, body []byte) []byte {
	return rxL4Frame(true, uint8(header.ICMPv6ProtocolNumber), testframe.ICMP(typ, uint8(code), rest, body))
}

// rxIP6Frame is an IPv6 packet from src to dst in a frame to dstMAC, with
// the checksum of a transport header that directly follows set.
func rxIP6Frame(dstMAC tcpip.LinkAddress, nh uint8, src, dst netip.Addr, payload []byte) []byte {
	f := testframe.Eth{Src: testframe.MACPeer, Dst: dstMAC}.Frame(header.IPv6ProtocolNumber, rxIP6(nh, rxAddr(src), rxAddr(dst)).Packet(payload))
	testframe.Checksums(f)
	return f
}

func rxARP(dstMAC tcpip.LinkAddress, op header.ARPOp, spa, tpa netip.Addr) []byte {
	return testframe.Eth{Src: testframe.MACPeer, Dst: dstMAC}.Frame(header.ARPProtocolNumber,
		testframe.ARP(op, testframe.MACPeer, rxAddr(spa), rxAddr(tpa)))
}

// rxOurIP4 is a datagram we sent to the peer, as an ICMP error quotes it.
func rxOurIP4(proto uint8, l4 []byte) []byte {
	return testframe.IPv4{Src: rxAddr(rxV4Us), Dst: rxAddr(rxV4Peer), Proto: tcpip.TransportProtocolNumber(proto), Flags: header.IPv4FlagDontFragment}.Packet(l4)
}

func rxRawTCP(sport, dport uint16, seq, ack uint32, flags header.TCPFlags) []byte {
	return testframe.TCP{SrcPort: sport, DstPort: dport, Seq: seq, Ack: ack, Flags: flags, Window: 65535}.Segment(nil)
}

func rxRawUDP(sport, dport uint16, n int) []byte {
	return testframe.UDP{SrcPort: sport, DstPort: dport}.Datagram(make([]byte, n))
}

// rxFragments splits a UDP datagram from the peer to us into IPv4 or IPv6
// fragments (in IPv6 a Fragment header first) of the given payload sizes,
// multiples of 8 but the last.
func rxFragments(v6 bool, id uint32, payload []byte, sizes []int) [][]byte {
	src, dst := rxAddr(rxV4Peer), rxAddr(rxV4Us)
	if v6 {
		src, dst = rxAddr(rxV6Peer), rxAddr(rxV6Us)
	}
	u := testframe.UDP{SrcPort: 5353, DstPort: rxUDPPort}.Datagram(payload)
	testframe.L4Checksum(header.UDPProtocolNumber, src, dst, u)
	var frags [][]byte
	off := 0
	for i, n := range sizes {
		end := min(off+n, len(u))
		more := i < len(sizes)-1
		if v6 {
			fh := testframe.FragmentHeader(header.UDPProtocolNumber, id, off, more, u[off:end])
			frags = append(frags, rxIP6(uint8(header.IPv6FragmentHeader), src, dst).Frame(fh))
		} else {
			var flags uint8
			if more {
				flags = header.IPv4FlagMoreFragments
			}
			f := testframe.IPv4{Src: src, Dst: dst, Proto: header.UDPProtocolNumber, ID: uint16(id), Flags: flags, FragOff: uint16(off)}.Frame(u[off:end])
			testframe.Checksums(f) // the header's: a fragment carries the datagram's UDP checksum
			frags = append(frags, f)
		}
		off = end
	}
	return frags
}

// rxFragments4 is rxFragments over IPv4, in the order given by order.
func rxFragments4(id uint16, payload []byte, sizes []int, order []int) [][]byte {
	frags := rxFragments(false, uint32(id), payload, sizes)
	out := make([][]byte, len(order))
	for i, j := range order {
		out[i] = frags[j]
	}
	return out
}

// rxNDP builds an NS or NA: the target, then one link-layer address
// option (type 1 source, 2 target) with the peer's MAC address.
func rxNDP(target netip.Addr, optType byte) []byte {
	body := append(target.AsSlice(), optType, 1)
	return append(body, rxPeerMAC...)
}

// zeroUDPSum clears the checksum of the UDP header at offset off of a
// copy of f.
func zeroUDPSum(f []byte, off int) []byte {
	c := bytes.Clone(f)
	c[off+6], c[off+7] = 0, 0
	return c
}

func rxSeeds() []fuzzcorpus.Seed {
	const (
		fix   = rxFixSums
		conns = rxFixSums | rxConns
		tcpP  = uint8(header.TCPProtocolNumber)
		udpP  = uint8(header.UDPProtocolNumber)
		icmpP = uint8(header.ICMPv4ProtocolNumber)
		syn   = header.TCPFlagSyn
		ack   = header.TCPFlagAck
		psh   = header.TCPFlagPsh | header.TCPFlagAck
		fin   = header.TCPFlagFin | header.TCPFlagAck
		rst   = header.TCPFlagRst
	)
	bcast := header.EthernetBroadcastAddress
	us := testframe.MACUs
	llPeer := netip.MustParseAddr("fe80::2")
	solicited := netip.MustParseAddr("ff02::1:ff00:1")
	solicitedMAC := tcpip.LinkAddress("\x33\x33\xff\x00\x00\x01")
	allNodesMAC := tcpip.LinkAddress("\x33\x33\x00\x00\x00\x01")
	seg := func(s rxSegment) []byte { return s.frame() }
	get := []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	block := bytes.Repeat([]byte("0123456789"), 10)
	sackOpt := []byte{1, 1, 5, 10, 0, 0, 0, 101, 0, 0, 0, 201} // NOP NOP SACK 101-201

	ourTCP4 := rxOurIP4(tcpP, rxRawTCP(rxListenPort, rxPassivePort, 1, 1, psh))
	ourUDP4 := rxOurIP4(udpP, rxRawUDP(rxUDPPort, 1234, 12))
	ourPing4 := rxOurIP4(icmpP, []byte{8, 0, 0, 0, 0xb0, 0x01, 0, 1})
	ourTCP6 := rxIP6(tcpP, rxAddr(rxV6Us), rxAddr(rxV6Peer)).Packet(rxRawTCP(rxListenPort, rxPassivePort, 1, 1, psh))
	ourUDP6 := rxIP6(udpP, rxAddr(rxV6Us), rxAddr(rxV6Peer)).Packet(rxRawUDP(rxUDPPort, 1234, 12))

	hbhUDP := rxRawUDP(5353, rxUDPPort, 8)
	testframe.L4Checksum(header.UDPProtocolNumber, rxAddr(rxV6Peer), rxAddr(rxV6Us), hbhUDP)
	hbh := testframe.OptionsHeader(header.UDPProtocolNumber, 0, hbhUDP)
	withOpts := testframe.IPv4{Proto: header.TCPProtocolNumber, Options: testframe.NOPs(8)}.Frame(rxRawTCP(41000, rxListenPort, 7, 0, syn))
	testframe.Checksums(withOpts)
	allHosts := testframe.IPv4{Src: rxAddr(rxV4Peer), Dst: tcpip.AddrFrom4([4]byte{224, 0, 0, 1}), Proto: header.IGMPProtocolNumber, TTL: 1} // RFC 2236: TTL 1
	igmpQuery := testframe.Eth{Src: testframe.MACPeer, Dst: "\x01\x00\x5e\x00\x00\x01"}.Frame(header.IPv4ProtocolNumber,
		allHosts.Packet([]byte{0x11, 100, 0, 0, 0, 0, 0, 0}))
	testframe.Checksums(igmpQuery)
	mldQuery := rxIP6Frame(allNodesMAC, uint8(header.ICMPv6ProtocolNumber), llPeer, netip.MustParseAddr("ff02::1"),
		testframe.ICMP(header.ICMPv6MulticastListenerQuery, 0, 1000<<16, make([]byte, 16)))
	mldQuery[14+7] = 1 // RFC 2710: hop limit 1

	badSum := seg(rxSegment{sport: 41001, dport: rxListenPort, seq: 1, flags: syn})
	badSum[len(badSum)-3] ^= 0xff
	notForUs := seg(rxSegment{sport: 41002, dport: rxListenPort, seq: 1, flags: syn})
	copy(notForUs, []byte{2, 0, 0, 0, 0, 9})
	badIHL := seg(rxSegment{sport: 41003, dport: rxListenPort, seq: 1, flags: syn})
	badIHL[14] = 0x4f
	totalPast := seg(rxSegment{sport: 41004, dport: rxListenPort, seq: 1, flags: syn})
	binary.BigEndian.PutUint16(totalPast[16:], 1400)
	v6PayloadPast := seg(rxSegment{v6: true, sport: 41005, dport: rxListenPort, seq: 1, flags: syn})
	binary.BigEndian.PutUint16(v6PayloadPast[18:], 1400)
	udpZeroSum := rxUDP(false, 5353, rxUDPPort, []byte("no checksum"))
	udpZeroSum[14+20+6], udpZeroSum[14+20+7] = 0, 0

	// spoil flips a bit at offset off of a copy of f, whose checksums are
	// then wrong: seeds with it go without rxFixSums.
	spoil := func(f []byte, off int) []byte { c := bytes.Clone(f); c[off] ^= 1; return c }
	synTo := func(v6 bool, sport uint16) []byte {
		return seg(rxSegment{v6: v6, sport: sport, dport: rxListenPort, seq: 7, flags: syn, opts: rxSynOpts})
	}
	// Data segments of the passive connection, from stream offset 1.
	data := func(seqs ...uint32) [][]byte {
		var fs [][]byte
		for _, sq := range seqs {
			fs = append(fs, seg(rxSegment{sport: rxPassivePort, dport: rxListenPort, seq: sq, ack: 1, flags: ack, data: block}))
		}
		return fs
	}

	var flood [][]byte
	for i := range rxMaxFrames {
		flood = append(flood, seg(rxSegment{sport: uint16(42000 + i), dport: rxListenPort, seq: uint32(i) << 20, flags: syn, opts: rxSynOpts}))
	}

	seeds := []struct {
		name   string
		flags  uint8
		frames [][]byte
	}{
		{"arp_request", fix, [][]byte{rxARP(bcast, header.ARPRequest, rxV4Peer, rxV4Us)}},
		{"arp_reply", fix, [][]byte{rxARP(us, header.ARPReply, rxV4Peer, rxV4Us)}},
		{"arp_gratuitous", fix, [][]byte{rxARP(bcast, header.ARPRequest, rxV4Peer, rxV4Peer), rxARP(bcast, header.ARPReply, rxV4Peer, rxV4Peer)}},
		{"arp_probe_on_lcore1", fix | rxOnLcore1, [][]byte{rxARP(bcast, header.ARPRequest, netip.IPv4Unspecified(), rxV4Us)}},
		{"tcp4_syn", fix, [][]byte{seg(rxSegment{sport: 41000, dport: rxListenPort, seq: 7, flags: syn, opts: rxSynOpts})}},
		{"tcp4_syn_closed_port", fix, [][]byte{seg(rxSegment{sport: 41000, dport: 81, seq: 7, flags: syn})}},
		{"tcp4_syn_then_guessed_ack", fix, [][]byte{
			seg(rxSegment{sport: 41000, dport: rxListenPort, seq: 7, flags: syn, opts: rxSynOpts}),
			seg(rxSegment{sport: 41000, dport: rxListenPort, seq: 8, ack: 1, flags: ack}),
			seg(rxSegment{sport: 41000, dport: rxListenPort, seq: 8, ack: 1, flags: psh, data: get}),
			seg(rxSegment{sport: 41000, dport: rxListenPort, seq: 8, flags: rst}),
		}},
		{"tcp4_syn_flood", fix, flood},
		{"tcp4_conn_data_fin", conns, [][]byte{
			seg(rxSegment{sport: rxPassivePort, dport: rxListenPort, seq: 1, ack: 1, flags: psh, data: get}),
			seg(rxSegment{sport: rxPassivePort, dport: rxListenPort, seq: 1 + uint32(len(get)), ack: 1, flags: fin}),
		}},
		{"tcp4_conn_out_of_order_sack", conns, [][]byte{
			seg(rxSegment{sport: rxPassivePort, dport: rxListenPort, seq: 101, ack: 1, flags: psh, data: block}),
			seg(rxSegment{sport: rxPassivePort, dport: rxListenPort, seq: 1, ack: 1, flags: psh, data: block}),
			seg(rxSegment{sport: rxPassivePort, dport: rxListenPort, seq: 201, ack: 1, flags: ack, opts: sackOpt}),
			seg(rxSegment{sport: rxPassivePort, dport: rxListenPort, seq: 1, ack: 1, flags: ack, win: 1}),
		}},
		{"tcp4_conn_burst", conns | rxBurst, data(1, 101, 201, 301, 401)},
		{"tcp4_conn_burst_reordered", conns | rxBurst, data(1, 201, 101, 301, 501, 401)},
		{"tcp4_conn_burst_fin", conns | rxBurst, append(data(1, 101),
			seg(rxSegment{sport: rxPassivePort, dport: rxListenPort, seq: 201, ack: 1, flags: fin}))},
		{"tcp4_burst_bad_checksum_between", rxBurst, [][]byte{synTo(false, 41010), spoil(synTo(false, 41011), 14+20+16), synTo(false, 41012)}},
		{"multibuf_tcp4_conn_burst", conns | rxBurst | rxMultiBuffer, data(1, 101, 201, 301, 401)},
		{"multibuf_tcp4_handed_to_lcore0", fix | rxOnLcore1 | rxMultiBuffer, [][]byte{seg(rxSegment{sport: 80, dport: 33000, seq: 1, ack: 1, flags: psh, data: block})}},
		{"multibuf_tcp4_burst_bad_checksum_between", rxBurst | rxMultiBuffer, [][]byte{synTo(false, 41010), spoil(synTo(false, 41011), 14+20+16), synTo(false, 41012)}},
		{"multibuf_arp_request", fix | rxMultiBuffer, [][]byte{rxARP(bcast, header.ARPRequest, rxV4Peer, rxV4Us)}},
		{"tcp4_bad_checksum", 0, [][]byte{spoil(synTo(false, 41013), 14+20+16)}},
		{"tcp6_bad_checksum", 0, [][]byte{spoil(synTo(true, 41014), 14+40+16)}},
		{"ipv4_bad_header_checksum", 0, [][]byte{spoil(synTo(false, 41015), 14+10)}},
		{"tcp4_conn_rst", conns, [][]byte{seg(rxSegment{sport: rxPassivePort, dport: rxListenPort, seq: 1, flags: rst})}},
		{"tcp4_conn_rst_on_lcore1", conns | rxOnLcore1, [][]byte{seg(rxSegment{sport: rxPassivePort, dport: rxListenPort, seq: 1, flags: rst})}},
		{"tcp4_active_data_fin", conns, [][]byte{
			seg(rxSegment{sport: rxActivePort, seq: 1, ack: 1, flags: psh, data: block}),
			seg(rxSegment{sport: rxActivePort, seq: 101, ack: 1, flags: fin}),
		}},
		{"tcp4_active_rst", conns, [][]byte{seg(rxSegment{sport: rxActivePort, seq: 1, ack: 1, flags: rst | ack})}},
		{"tcp4_handed_to_lcore1", fix, [][]byte{seg(rxSegment{sport: 80, dport: 50000, seq: 1, ack: 1, flags: ack})}},
		{"tcp4_handed_to_lcore0", fix | rxOnLcore1, [][]byte{seg(rxSegment{sport: 80, dport: 33000, seq: 1, ack: 1, flags: psh, data: get})}},
		{"tcp4_ip_options", fix, [][]byte{withOpts}},
		{"tcp6_syn", fix, [][]byte{seg(rxSegment{v6: true, sport: 41000, dport: rxListenPort, seq: 7, flags: syn, opts: rxSynOpts})}},
		{"tcp6_syn_closed_port", fix, [][]byte{seg(rxSegment{v6: true, sport: 41000, dport: 81, seq: 7, flags: syn})}},
		{"tcp6_handed_to_lcore1", fix, [][]byte{seg(rxSegment{v6: true, sport: 443, dport: 60000, seq: 1, ack: 1, flags: fin})}},
		{"udp4", fix, [][]byte{rxUDP(false, 5353, rxUDPPort, []byte("query"))}},
		{"udp4_closed_port", fix, [][]byte{rxUDP(false, 5353, 54, []byte("query"))}},
		{"udp4_zero_checksum", 0, [][]byte{udpZeroSum}},
		{"udp4_bad_checksum", 0, [][]byte{spoil(rxUDP(false, 5353, rxUDPPort, []byte("query")), 14+20+6)}},
		{"udp6_bad_checksum", 0, [][]byte{spoil(rxUDP(true, 5353, rxUDPPort, []byte("query")), 14+40+6)}},
		{"udp6_zero_checksum", 0, [][]byte{zeroUDPSum(rxUDP(true, 5353, rxUDPPort, []byte("query")), 14+40)}},
		{"udp4_handed_to_lcore1", fix, [][]byte{rxUDP(false, 53, 47000, []byte("answer"))}},
		{"udp6", fix, [][]byte{rxUDP(true, 5353, rxUDPPort, []byte("query"))}},
		{"udp6_closed_port", fix, [][]byte{rxUDP(true, 5353, 54, []byte("query"))}},
		{"icmp4_echo", fix, [][]byte{rxICMP4(header.ICMPv4Echo, 0, 0x12340001, []byte("ping"))}},
		{"icmp4_echo_reply_handed_to_lcore1", fix, [][]byte{rxICMP4(header.ICMPv4EchoReply, 0, 50000<<16|1, []byte("pong"))}},
		{"icmp4_frag_needed_conn", conns, [][]byte{rxICMP4(header.ICMPv4DstUnreachable, header.ICMPv4FragmentationNeeded, 1280, ourTCP4[:28])}},
		{"icmp4_port_unreachable_udp", fix, [][]byte{rxICMP4(header.ICMPv4DstUnreachable, header.ICMPv4PortUnreachable, 0, ourUDP4)}},
		{"icmp4_time_exceeded_ping", fix, [][]byte{rxICMP4(header.ICMPv4TimeExceeded, 0, 0, ourPing4)}},
		{"icmp4_param_problem_tcp", conns, [][]byte{rxICMP4(header.ICMPv4ParamProblem, 0, 20<<24, ourTCP4)}},
		{"icmp6_echo", fix, [][]byte{rxICMP6(header.ICMPv6EchoRequest, 0, 0x12340001, []byte("ping"))}},
		{"icmp6_packet_too_big_tcp", fix, [][]byte{rxICMP6(header.ICMPv6PacketTooBig, 0, 1280, ourTCP6)}},
		{"icmp6_unreachable_udp", fix, [][]byte{rxICMP6(header.ICMPv6DstUnreachable, header.ICMPv6PortUnreachable, 0, ourUDP6)}},
		{"ndp_ns", fix, [][]byte{rxIP6Frame(solicitedMAC, uint8(header.ICMPv6ProtocolNumber), rxV6Peer, solicited,
			testframe.ICMP(header.ICMPv6NeighborSolicit, 0, 0, rxNDP(rxV6Us, 1)))}},
		{"ndp_ns_dad", fix, [][]byte{rxIP6Frame(solicitedMAC, uint8(header.ICMPv6ProtocolNumber), netip.IPv6Unspecified(), solicited,
			testframe.ICMP(header.ICMPv6NeighborSolicit, 0, 0, rxV6Us.AsSlice()))}},
		{"ndp_na", fix, [][]byte{rxIP6Frame(us, uint8(header.ICMPv6ProtocolNumber), rxV6Peer, rxV6Us,
			testframe.ICMP(header.ICMPv6NeighborAdvert, 0, 0x60000000, rxNDP(rxV6Peer, 2)))}},
		{"ndp_ra", fix | rxOnLcore1, [][]byte{rxIP6Frame(allNodesMAC, uint8(header.ICMPv6ProtocolNumber), llPeer, netip.MustParseAddr("ff02::1"),
			testframe.ICMP(header.ICMPv6RouterAdvert, 0, 64<<24|1800, append(make([]byte, 8),
				3, 4, 64, 0xc0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0x20, 0x01, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)))}},
		{"mld_query", fix, [][]byte{mldQuery}},
		{"igmp_query", fix, [][]byte{igmpQuery}},
		{"ipv4_fragments", fix, rxFragments4(77, block, []int{64, 64}, []int{0, 1})},
		{"ipv4_fragments_reversed_on_lcore1", fix | rxOnLcore1, rxFragments4(78, block, []int{32, 32, 64}, []int{2, 1, 0})},
		{"ipv4_fragments_overlap", fix, append(rxFragments4(79, block, []int{64, 64}, []int{0, 1}), rxFragments4(79, block, []int{32, 96}, []int{1})...)},
		{"ipv6_fragments", fix, rxFragments(true, 80, block, []int{64, 64})},
		{"ipv6_hop_by_hop_udp", fix, [][]byte{rxIP6(0, rxAddr(rxV6Peer), rxAddr(rxV6Us)).Frame(hbh)}},
		{"malformed", 0, [][]byte{
			nil, {1, 2, 3}, testframe.Frame(header.IPv4ProtocolNumber, nil), badIHL, totalPast, v6PayloadPast,
			testframe.Frame(0x8100, make([]byte, 64)), testframe.Frame(0x88cc, make([]byte, 64)), notForUs, badSum,
			seg(rxSegment{sport: 41006, dport: rxListenPort, seq: 1, flags: syn})[:14+20+10],
		}},
	}
	out := make([]fuzzcorpus.Seed, 0, len(seeds))
	for _, s := range seeds {
		out = append(out, fuzzcorpus.Seed{Name: s.name, Args: []any{s.flags, rxJoinFrames(s.frames...)}})
	}
	return out
}
