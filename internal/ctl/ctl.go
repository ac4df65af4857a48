// Package ctl is the control protocol between running lcore processes and
// the tools (ifconfig, sysctl, netstat, route, arp, ndp, top, pcap): its
// messages, the run directory where processes serve it, and the client the
// tools use. The server side is core's control plane.
//
// Each lcore process serves a Unix stream socket <run dir>/<proc-id>.sock.
// The run directory is, in order of precedence, the tools' --run-dir flag,
// $XSTACK_RUN_DIR, or /run/xstack/<instance> with <instance> from
// $XSTACK_INSTANCE (default "default"). The directory is 0700 and the socket
// 0600: only its owner (root, as a rule) may talk to a stack.
//
// A message is one line of JSON. A request is {"v":1,"op":"...","args":{...}}
// of at most MaxRequest bytes including its newline; a reply is
// {"v":1,"result":...} or {"v":1,"error":"..."}. A connection carries any
// number of request/reply pairs, in order. A request that is too long, is
// not JSON, has another version, an unknown op or unknown argument fields
// gets an error reply; after an over-long request the server closes the
// connection, since it cannot find where the next request starts.
//
// The results are this package's types (Info, Stats, Interface, ...) and
// those of the leaf package stack/stackinfo, which the stack fills in;
// neither imports gVisor, so a tool links no stack. The tools' common
// frame (Tool) goes on past a process that died: see Tool.
package ctl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Version is the protocol version this package speaks.
const Version = 1

// MaxRequest bounds a request line, newline included.
const MaxRequest = 64 << 10

// MaxReply bounds a reply line the client accepts (a socket table can be
// large).
const MaxReply = 64 << 20

// Request is one request.
type Request struct {
	V    int             `json:"v"`
	Op   string          `json:"op"`
	Args json.RawMessage `json:"args,omitempty"`
}

// Reply is the answer to one request: Error is set, or Result is.
type Reply struct {
	V      int             `json:"v"`
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// ErrTooLarge is returned by ReadLine for a line longer than its limit.
var ErrTooLarge = errors.New("message too large")

// ReadLine reads one newline-terminated message of at most limit bytes
// (newline included) and returns it without the newline. It returns io.EOF
// at a clean end of stream, and ErrTooLarge for a longer line, having
// consumed more than limit bytes of it (at most limit plus br's buffer
// size).
func ReadLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > limit {
			return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// ParseRequest decodes and checks one request line: valid JSON, one object
// with no unknown fields and nothing after it, version Version, an op made
// of lower-case letters and dots, and args (if any) a JSON object.
func ParseRequest(b []byte) (Request, error) {
	var r Request
	if err := decodeStrict(b, &r); err != nil {
		return Request{}, fmt.Errorf("malformed request: %w", err)
	}
	if r.V != Version {
		return Request{}, fmt.Errorf("unsupported protocol version %d, this process speaks %d", r.V, Version)
	}
	if r.Op == "" || len(r.Op) > 64 || strings.Trim(r.Op, "abcdefghijklmnopqrstuvwxyz.") != "" {
		return Request{}, fmt.Errorf("malformed request: op %q: expected lower-case letters and dots", r.Op)
	}
	if len(r.Args) > 0 && !bytes.Equal(r.Args, []byte("null")) && bytes.TrimSpace(r.Args)[0] != '{' {
		return Request{}, fmt.Errorf("malformed request: args must be an object")
	}
	return r, nil
}

// DecodeArgs decodes a request's args into v, rejecting unknown fields.
// Absent args leave v as it is.
func DecodeArgs(args json.RawMessage, v any) error {
	if len(args) == 0 || bytes.Equal(args, []byte("null")) {
		return nil
	}
	if err := decodeStrict(args, v); err != nil {
		return fmt.Errorf("bad args: %w", err)
	}
	return nil
}

func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON value")
	}
	return nil
}

// DefaultRunDir returns $XSTACK_RUN_DIR, or /run/xstack/<$XSTACK_INSTANCE>,
// or /run/xstack/default.
func DefaultRunDir() string {
	if d := os.Getenv("XSTACK_RUN_DIR"); d != "" {
		return d
	}
	inst := os.Getenv("XSTACK_INSTANCE")
	if inst == "" || strings.ContainsAny(inst, "/\x00") || inst == "." || inst == ".." {
		inst = "default"
	}
	return filepath.Join("/run/xstack", inst)
}

// SocketPath is the control socket of proc-id procID in runDir.
func SocketPath(runDir string, procID int) string {
	return filepath.Join(runDir, strconv.Itoa(procID)+".sock")
}

// Procs lists the proc-ids that have a socket in runDir, ascending.
func Procs(runDir string) ([]int, error) {
	ents, err := os.ReadDir(runDir)
	if err != nil {
		return nil, err
	}
	var ids []int
	for _, e := range ents {
		s, ok := strings.CutSuffix(e.Name(), ".sock")
		if !ok || e.Type()&os.ModeSocket == 0 {
			continue
		}
		if n, err := strconv.Atoi(s); err == nil && n >= 0 && strconv.Itoa(n) == s {
			ids = append(ids, n)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// Ops. Each takes the args type named beside it (or none) and returns the
// result type named.
const (
	OpInfo        = "info"            // -> Info
	OpCounters    = "counters"        // -> map[string]uint64
	OpStats       = "stats"           // -> Stats
	OpIfconfig    = "ifconfig"        // -> Interface
	OpIfconfigSet = "ifconfig.set"    // IfconfigArgs -> Interface
	OpSysctlGet   = "sysctl.get"      // SysctlGetArgs -> []SysctlValue
	OpSysctlSet   = "sysctl.set"      // SysctlValue -> SysctlValue (the value read back)
	OpSysctlCheck = "sysctl.check"    // SysctlValue: checks name and value as config.ini does; changes nothing
	OpSockets     = "netstat.sockets" // -> []stackinfo.Socket
	OpRoutes      = "route.show"      // -> []stackinfo.Route
	OpRouteAdd    = "route.add"       // RouteArgs
	OpRouteDelete = "route.delete"    // RouteArgs
	OpRouteGet    = "route.get"       // RouteArgs (Dst an address) -> stackinfo.RouteLookup
	OpNeighbors   = "neigh.show"      // NeighArgs -> []stackinfo.Neighbor
	OpNeighAdd    = "neigh.add"       // NeighArgs
	OpNeighDelete = "neigh.delete"    // NeighArgs
	OpPcapOn      = "pcap.on"         // PcapArgs -> stackinfo.PcapStatus
	OpPcapOff     = "pcap.off"        // -> stackinfo.PcapStatus
	OpPcapStatus  = "pcap.status"     // -> stackinfo.PcapStatus
)
