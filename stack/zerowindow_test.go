package stack_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/xstack/xstack/nic/nictest"
	"github.com/xstack/xstack/stack"
	"github.com/xstack/xstack/stack/stacktest"
)

// wirePeer plays the far end of one TCP connection to a stack over an
// unconnected nictest queue: it builds the frames itself, so that a test
// can send what a real peer sends only after loss.
type wirePeer struct {
	t      testing.TB
	st     *stack.Stack
	q      *nictest.Queue
	v6     bool
	mac    net.HardwareAddr
	local  tcpip.Address // the peer's
	remote tcpip.Address // the stack's
	port   uint16        // the peer's port; the stack listens on 80
	frames [][]byte

	sndNxt uint32 // next sequence number the peer sends
	rcvNxt uint32 // next sequence number the peer expects from the stack
	// The stack's latest acknowledgment and window, and whether it has sent
	// anything since the last look (seen).
	ack  uint32
	win  uint16
	seen bool
	// onFrame, if set, sees every frame the stack sends, before pump
	// reads it.
	onFrame func(f []byte)
	// mss is the MSS option of the peer's SYN; 0 means 1460.
	mss uint16
	// sackOK has the peer's SYN permit SACK (RFC 2018).
	sackOK bool
	// ts has the peer send timestamps (RFC 7323) on every segment:
	// TSval tsVal, counting up, and TSecr the stack's latest TSval, which
	// pump keeps in tsEcr.
	ts           bool
	tsVal, tsEcr uint32
	// bufs and segs receive a multi-buffer queue's frames (RxPackets).
	bufs [][]byte
	segs []int
}

// pump runs the stack once, as the lcore loop does, and reads what it sent.
func (p *wirePeer) pump() {
	if p.q.MultiBuffer() {
		if p.bufs == nil {
			p.bufs, p.segs = make([][]byte, 256), make([]int, 64)
		}
		n, _ := p.q.RxPackets(p.bufs, p.segs)
		p.st.DeliverPackets(p.bufs, p.segs[:n])
	} else {
		n, _ := p.q.Rx(p.frames)
		p.st.Deliver(p.frames[:n])
	}
	p.st.Flush()
	for _, f := range p.q.Sent() {
		if p.onFrame != nil {
			p.onFrame(f)
		}
		var t header.TCP
		switch header.Ethernet(f).Type() {
		case header.IPv4ProtocolNumber:
			ip := header.IPv4(f[header.EthernetMinimumSize:])
			if ip.TransportProtocol() != header.TCPProtocolNumber {
				continue
			}
			t = header.TCP(ip.Payload())
		case header.IPv6ProtocolNumber:
			ip := header.IPv6(f[header.EthernetMinimumSize:])
			if ip.TransportProtocol() != header.TCPProtocolNumber {
				continue
			}
			t = header.TCP(ip.Payload())
		default:
			continue
		}
		if t.Flags().Contains(header.TCPFlagSyn) {
			p.rcvNxt = t.SequenceNumber() + 1
		}
		if end := t.SequenceNumber() + uint32(len(t.Payload())); int32(end-p.rcvNxt) > 0 {
			p.rcvNxt = end
		}
		p.ack, p.win, p.seen = t.AckNumber(), t.WindowSize(), true
		if o := header.ParseTCPOptions(t.Options()); o.TS {
			p.tsEcr = o.TSVal
		}
	}
}

// until pumps the stack until cond holds, and fails the test after 10 s.
func (p *wirePeer) until(what string, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out waiting for %s", what)
		}
		p.pump()
		time.Sleep(time.Millisecond)
	}
}

// send injects a segment from the peer at sequence number seq.
func (p *wirePeer) send(seq uint32, flags header.TCPFlags, ack uint32, win uint16, data []byte) {
	p.t.Helper()
	if !p.q.Inject(p.frame(seq, flags, ack, win, data)) {
		p.t.Fatal("inject: the queue is full")
	}
}

// frame is the frame of a segment from the peer at sequence number seq.
func (p *wirePeer) frame(seq uint32, flags header.TCPFlags, ack uint32, win uint16, data []byte) []byte {
	var opts []byte
	if flags.Contains(header.TCPFlagSyn) {
		mss := p.mss
		if mss == 0 {
			mss = 1460
		}
		opts = []byte{2, 4, byte(mss >> 8), byte(mss)}
		if p.sackOK {
			opts = append(opts, 1, 1, 4, 2)
		}
	}
	if p.ts {
		p.tsVal++
		opts = append(opts, 1, 1, 8, 10)
		opts = binary.BigEndian.AppendUint32(opts, p.tsVal)
		opts = binary.BigEndian.AppendUint32(opts, p.tsEcr)
	}
	tcpLen := header.TCPMinimumSize + len(opts) + len(data)
	ipLen := header.IPv4MinimumSize
	ethType := header.IPv4ProtocolNumber
	if p.v6 {
		ipLen, ethType = header.IPv6MinimumSize, header.IPv6ProtocolNumber
	}
	f := make([]byte, header.EthernetMinimumSize+ipLen+tcpLen)
	header.Ethernet(f).Encode(&header.EthernetFields{
		SrcAddr: tcpip.LinkAddress(p.mac), DstAddr: tcpip.LinkAddress(p.st.HardwareAddr()), Type: ethType,
	})
	ip := f[header.EthernetMinimumSize:]
	if p.v6 {
		header.IPv6(ip).Encode(&header.IPv6Fields{
			PayloadLength: uint16(tcpLen), TransportProtocol: header.TCPProtocolNumber, HopLimit: 64,
			SrcAddr: p.local, DstAddr: p.remote,
		})
	} else {
		v4 := header.IPv4(ip)
		v4.Encode(&header.IPv4Fields{
			TotalLength: uint16(ipLen + tcpLen), TTL: 64, Protocol: uint8(header.TCPProtocolNumber),
			SrcAddr: p.local, DstAddr: p.remote,
		})
		v4.SetChecksum(^v4.CalculateChecksum())
	}
	t := header.TCP(ip[ipLen:])
	t.Encode(&header.TCPFields{
		SrcPort: p.port, DstPort: 80, SeqNum: seq, AckNum: ack,
		DataOffset: uint8(header.TCPMinimumSize + len(opts)), Flags: flags, WindowSize: win,
	})
	copy(t[header.TCPMinimumSize:], opts)
	copy(t[header.TCPMinimumSize+len(opts):], data)
	xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, p.local, p.remote, uint16(tcpLen))
	t.SetChecksum(^checksum.Checksum(t, xsum)) // header and data
	return f
}

// TestZeroWindowAck builds the state in which gVisor alone wedges a
// connection: the application does not read and cannot write (its send
// buffer is full), the stack advertises a zero window, and the peer's
// segments start past the stack's RCV.NXT (it sent bytes the stack did not
// take). The peer's acknowledgment of everything the stack sent must still
// free the send buffer, the segment must still be answered, and the stack
// must go back to plain delivery once its window opens.
func TestZeroWindowAck(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "v4"
		if v6 {
			name = "v6"
		}
		t.Run(name, func(t *testing.T) { testZeroWindowAck(t, v6) })
	}
}

// wireConn makes a stack whose listener on port 80 (set up first by
// setup, when not nil) has accepted a connection from a wirePeer, and
// returns the peer and the accepted endpoint.
func wireConn(t testing.TB, v6 bool, setup func(st *stack.Stack, l tcpip.Endpoint)) (*wirePeer, tcpip.Endpoint) {
	t.Helper()
	return wireConnOn(t, nictest.New(stacktest.MTU), v6, setup)
}

// wireConnOn is wireConn over q, an unconnected queue. Each of peer, if
// any, sets the peer up before it sends its SYN (its MSS, SACK).
func wireConnOn(t testing.TB, q *nictest.Queue, v6 bool, setup func(st *stack.Stack, l tcpip.Endpoint), peer ...func(p *wirePeer)) (*wirePeer, tcpip.Endpoint) {
	t.Helper()
	st, q := stacktest.NewStackOn(t, q, stack.Config{Name: "zw",
		Addr4: netip.MustParsePrefix("198.18.0.1/16"), Addr6: netip.MustParsePrefix("2001:2::1/64")})
	p := &wirePeer{t: t, st: st, q: q, v6: v6, port: 40000, frames: make([][]byte, 64),
		mac: net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}, sndNxt: 1000}
	for _, f := range peer {
		f(p)
	}
	netProto := header.IPv4ProtocolNumber
	p.local, p.remote = tcpip.AddrFrom4([4]byte{198, 18, 0, 2}), tcpip.AddrFrom4([4]byte{198, 18, 0, 1})
	if v6 {
		netProto = header.IPv6ProtocolNumber
		p.local = tcpip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: 2})
		p.remote = tcpip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 15: 1})
	}
	if err := st.Gvisor().AddStaticNeighbor(stack.NICID, netProto, p.local, tcpip.LinkAddress(p.mac)); err != nil {
		t.Fatal(err)
	}

	var wq waiter.Queue
	l, terr := st.Gvisor().NewEndpoint(tcp.ProtocolNumber, netProto, &wq)
	if terr != nil {
		t.Fatal(terr)
	}
	t.Cleanup(l.Close)
	if setup != nil {
		setup(st, l)
	}
	if err := l.Bind(tcpip.FullAddress{Port: 80}); err != nil {
		t.Fatal(err)
	}
	backlog := 1
	if p.mss > 1460 || p.sackOK {
		// With a backlog of 1 gVisor answers with a SYN cookie, which
		// encodes an MSS of at most 1460 and no SACK.
		backlog = 8
	}
	if err := l.Listen(backlog); err != nil {
		t.Fatal(err)
	}

	// Handshake.
	p.send(p.sndNxt, header.TCPFlagSyn, 0, 65535, nil)
	p.sndNxt++
	p.until("the SYN-ACK", func() bool { return p.seen })
	p.send(p.sndNxt, header.TCPFlagAck, p.rcvNxt, 65535, nil)
	var ep tcpip.Endpoint
	p.until("the connection to be accepted", func() bool {
		ep, _, terr = l.Accept(nil)
		return terr == nil
	})
	t.Cleanup(ep.Close)
	return p, ep
}

func testZeroWindowAck(t *testing.T, v6 bool) {
	p, ep := wireConn(t, v6, func(_ *stack.Stack, l tcpip.Endpoint) {
		// Small buffers fill in a few segments; a zero window scale
		// keeps the window's arithmetic plain.
		l.SocketOptions().SetReceiveBufferSize(8192, true)
		l.SocketOptions().SetSendBufferSize(8192, true)
	})
	st := p.st
	synAcked := p.rcvNxt // acknowledges the SYN-ACK and none of the data

	// The application writes until its send buffer is full; the peer
	// acknowledges none of it.
	chunk := make([]byte, 1024)
	for {
		_, werr := ep.Write(bytes.NewReader(chunk), tcpip.WriteOptions{})
		if werr != nil {
			if _, ok := werr.(*tcpip.ErrWouldBlock); !ok {
				t.Fatalf("write: %v", werr)
			}
			break
		}
	}
	writable := func() bool { return ep.Readiness(waiter.WritableEvents) != 0 }

	// The peer fills the stack's receive window; the application does not
	// read.
	data := make([]byte, 1000)
	for p.seen = false; !(p.seen && p.win == 0 && p.ack == p.sndNxt); {
		if room := int(p.ack + uint32(p.win) - p.sndNxt); p.seen && room > 0 {
			n := min(room, len(data))
			p.send(p.sndNxt, header.TCPFlagAck, synAcked, 65535, data[:n])
			p.sndNxt += uint32(n)
		}
		p.seen = false
		p.until("an acknowledgment of the peer's data", func() bool { return p.seen })
	}
	if writable() {
		t.Fatal("the send buffer has room before the peer acknowledged anything")
	}

	// The peer then sent 100 bytes the stack did not take, and
	// acknowledges everything the stack sent from its SND.NXT, past the
	// zero window.
	p.sndNxt += 100
	stackNxt := p.rcvNxt
	p.seen = false
	p.send(p.sndNxt, header.TCPFlagAck, stackNxt, 65535, nil)
	p.until("the send buffer to be freed", writable)
	if got := counter(st, "link.zero_window_acks"); got != 1 {
		t.Errorf("link.zero_window_acks = %d, want 1", got)
	}
	// gVisor still answers the segment itself, with its zero window.
	p.until("the answer to the out-of-window segment", func() bool { return p.seen })
	if p.win != 0 || p.ack != p.sndNxt-100 {
		t.Errorf("answer: ack %d window %d; want ack %d window 0", p.ack, p.win, p.sndNxt-100)
	}

	// The same acknowledgment again, as a zero-window probe with data,
	// makes no second pure ACK: it would be a duplicate ACK.
	p.send(p.sndNxt-100, header.TCPFlagAck, stackNxt, 65535, data[:1])
	p.send(p.sndNxt, header.TCPFlagAck, stackNxt, 65535, nil)
	for range 20 {
		p.pump()
		time.Sleep(time.Millisecond)
	}
	if got := counter(st, "link.zero_window_acks"); got != 1 {
		t.Errorf("link.zero_window_acks = %d after repeated segments, want 1", got)
	}

	// Once the application reads, the window opens and the stack's
	// segments are delivered as they are.
	buf := make([]byte, 64<<10)
	var w tcpip.SliceWriter = buf
	if _, rerr := ep.Read(&w, tcpip.ReadOptions{}); rerr != nil {
		t.Fatalf("read: %v", rerr)
	}
	p.until("the window to open", func() bool { return p.seen && p.win > 0 })
	before := counter(st, "link.zero_window_acks")
	p.send(p.sndNxt, header.TCPFlagAck, p.rcvNxt, 65535, nil)
	for range 20 {
		p.pump()
		time.Sleep(time.Millisecond)
	}
	if got := counter(st, "link.zero_window_acks"); got != before {
		t.Errorf("link.zero_window_acks went from %d to %d with the window open", before, got)
	}
}
