package main

import (
	"testing"

	"github.com/xstack/xstack/stack/packet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// A server that closes with the response's last bytes, as helloworld
// does (one segment with the data and FIN), gets a FIN that acknowledges
// its own, and no more frames: three from the client per connection
// (SYN, request, FIN), as from a kernel client.
func TestEngineFinWithResponse(t *testing.T) {
	e, tx := testEngine(true)
	e.cfg.Conns = 1
	s := &fakeServer{iss: 5000}
	var sent []packet.Parsed
	take := func() {
		for _, f := range tx.out {
			var p packet.Parsed
			packet.Parse(f, &p)
			sent = append(sent, p)
		}
		tx.out = tx.out[:0]
	}
	e.Poll(0)
	take()
	syn := sent[0]
	e.Input(s.frame(syn.SrcPort, s.iss, syn.Seq+1, header.TCPFlagSyn|header.TCPFlagAck, nil), 1000)
	take()
	if len(sent) != 2 || sent[1].TCPPayloadLen() == 0 {
		t.Fatalf("want the SYN and the request, got %d frames", len(sent))
	}
	req := sent[1]
	srvSeq := s.iss + 1
	e.Input(s.frame(syn.SrcPort, srvSeq, req.Seq+uint32(req.TCPPayloadLen()),
		header.TCPFlagAck|header.TCPFlagPsh|header.TCPFlagFin, response), 2000)
	e.Poll(2000)
	take()
	if len(sent) != 3 {
		t.Fatalf("want one frame after the response with FIN, got %d", len(sent)-2)
	}
	fin := sent[2]
	srvEnd := srvSeq + uint32(len(response)) + 1
	if fin.TCPFlags != header.TCPFlagFin|header.TCPFlagAck || fin.Ack != srvEnd {
		t.Fatalf("want FIN+ACK of the server's FIN (ack %d), got flags %v ack %d", srvEnd, fin.TCPFlags, fin.Ack)
	}
	// The server acknowledges the FIN: the connection is done, with
	// nothing more to send on it (Poll opens the next one).
	e.Input(s.frame(syn.SrcPort, srvEnd, fin.Seq+1, header.TCPFlagAck, nil), 3000)
	e.Poll(3000)
	take()
	for _, p := range sent[3:] {
		if p.SrcPort == syn.SrcPort || p.TCPFlags != header.TCPFlagSyn {
			t.Errorf("after the close, a frame with flags %v from port %d", p.TCPFlags, p.SrcPort)
		}
	}
	if e.Counts.ConnsDone != 1 || e.Counts.OK != 1 || e.Counts.Errors() != 0 {
		t.Errorf("want the connection done cleanly, got %+v", e.Counts)
	}
}
