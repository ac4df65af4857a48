package stack

import (
	"fmt"
	"strconv"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// SetSysctl applies one sysctl (a FreeBSD-style dotted name, as in
// config.ini's [sysctl]) to the running stack. The value has been checked
// for syntax and range by the caller; SetSysctl reports names and values the
// stack cannot honour.
func (st *Stack) SetSysctl(name, value string) error {
	if err := st.setSysctl(name, value); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", name, value, err)
	}
	return nil
}

func (st *Stack) setSysctl(name, value string) error {
	n, numErr := strconv.Atoi(value)
	num := func() (int, error) {
		if numErr != nil {
			return 0, fmt.Errorf("not a number")
		}
		return n, nil
	}
	setTCP := func(opt tcpip.SettableTransportProtocolOption) error {
		if err := st.s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			return fmt.Errorf("%s", err)
		}
		return nil
	}
	switch name {
	case "net.inet.tcp.sack":
		v, err := num()
		if err != nil {
			return err
		}
		o := tcpip.TCPSACKEnabled(v != 0)
		return setTCP(&o)
	case "net.inet.tcp.cc":
		o := tcpip.CongestionControlOption(value)
		return setTCP(&o)
	case "net.inet.tcp.sendspace", "net.inet.tcp.recvspace":
		v, err := num()
		if err != nil {
			return err
		}
		if name == "net.inet.tcp.sendspace" {
			var o tcpip.TCPSendBufferSizeRangeOption
			st.s.TransportProtocolOption(tcp.ProtocolNumber, &o)
			o.Default = v
			o.Max = max(o.Max, v)
			return setTCP(&o)
		}
		var o tcpip.TCPReceiveBufferSizeRangeOption
		st.s.TransportProtocolOption(tcp.ProtocolNumber, &o)
		o.Default = v
		o.Max = max(o.Max, v)
		return setTCP(&o)
	case "net.inet.tcp.delayed_ack":
		// gVisor acknowledges at once; with delayed_ack=1 the link
		// endpoint drops pure ACKs that a later frame of the same pass
		// supersedes, which is the part of delaying ACKs that saves frames
		// on request/response traffic.
		v, err := num()
		if err != nil {
			return err
		}
		st.ep.txMu.Lock()
		st.ep.elide.disabled = v == 0
		st.ep.txMu.Unlock()
		return nil
	case "net.inet.tcp.nodelay":
		v, err := num()
		if err != nil {
			return err
		}
		st.sockMu.Lock()
		st.sockDefaults.NoDelay = v != 0
		st.sockMu.Unlock()
		o := tcpip.TCPDelayEnabled(v == 0)
		return setTCP(&o)
	case "net.inet.tcp.msl":
		// TIME-WAIT lasts 2*MSL.
		v, err := num()
		if err != nil {
			return err
		}
		o := tcpip.TCPTimeWaitTimeoutOption(2 * time.Duration(v) * time.Millisecond)
		return setTCP(&o)
	case "net.inet.tcp.rexmit_min", "net.inet.tcp.rexmit_max":
		// Bounds of the retransmission timeout. gVisor keeps min <= max
		// and refuses a value that would cross the other bound.
		v, err := num()
		if err != nil {
			return err
		}
		d := time.Duration(v) * time.Millisecond
		var lo tcpip.TCPMinRTOOption
		var hi tcpip.TCPMaxRTOOption
		st.s.TransportProtocolOption(tcp.ProtocolNumber, &lo)
		st.s.TransportProtocolOption(tcp.ProtocolNumber, &hi)
		if name == "net.inet.tcp.rexmit_min" {
			if d > time.Duration(hi) {
				return fmt.Errorf("above net.inet.tcp.rexmit_max (%d ms)", time.Duration(hi)/time.Millisecond)
			}
			o := tcpip.TCPMinRTOOption(d)
			return setTCP(&o)
		}
		if d < time.Duration(lo) {
			return fmt.Errorf("below net.inet.tcp.rexmit_min (%d ms)", time.Duration(lo)/time.Millisecond)
		}
		o := tcpip.TCPMaxRTOOption(d)
		return setTCP(&o)
	case "net.inet.tcp.keepidle", "net.inet.tcp.keepintvl", "net.inet.tcp.keepcnt",
		"net.inet.tcp.always_keepalive", "net.inet.tcp.user_timeout":
		// Per-socket options: the socket layer applies them to every
		// TCP socket made after this (Stack.SocketDefaults).
		v, err := num()
		if err != nil {
			return err
		}
		st.sockMu.Lock()
		defer st.sockMu.Unlock()
		d := &st.sockDefaults
		switch name {
		case "net.inet.tcp.keepidle":
			d.KeepIdle = v
		case "net.inet.tcp.keepintvl":
			d.KeepIntvl = v
		case "net.inet.tcp.keepcnt":
			d.KeepCnt = v
		case "net.inet.tcp.always_keepalive":
			d.AlwaysKeepalive = v != 0
		case "net.inet.tcp.user_timeout":
			d.UserTimeout = time.Duration(v) * time.Millisecond
		}
		return nil
	case "net.inet.tcp.mem_limit":
		// Enforced by the socket layer, which reads it at every
		// reservation (Stack.SocketDefaults). Parsed as an
		// int64: the range reaches past 32-bit ints.
		v, err := strconv.ParseInt(value, 10, 64)
		if err != nil || v < 0 {
			return fmt.Errorf("expected a number of bytes, 0 (no limit) or more")
		}
		st.sockMu.Lock()
		st.sockDefaults.MemLimit = v
		st.sockMu.Unlock()
		return nil
	case "net.inet.tcp.syn_guard":
		v, err := num()
		if err != nil {
			return err
		}
		if v < 0 {
			return fmt.Errorf("negative rate")
		}
		st.ep.guard.limit.Store(uint32(min(v, 1<<31)))
		return nil
	case "net.inet.tcp.syncookies":
		v, err := num()
		if err != nil {
			return err
		}
		switch v {
		case 0:
			return fmt.Errorf("SYN cookies cannot be turned off in gVisor; use 1 (when the accept queue is full) or 2 (always)")
		case 1, 2:
			o := tcpip.TCPAlwaysUseSynCookies(v == 2)
			return setTCP(&o)
		}
		return fmt.Errorf("expected 0, 1 or 2")
	case "net.inet.tcp.moderate_rcvbuf":
		v, err := num()
		if err != nil {
			return err
		}
		o := tcpip.TCPModerateReceiveBufferOption(v != 0)
		return setTCP(&o)
	case "net.inet.tcp.timestamps":
		if value != "1" {
			return fmt.Errorf("gVisor always offers RFC 7323 timestamps; only 1 is supported")
		}
		return nil
	case "net.inet.tcp.mss_default":
		return fmt.Errorf("gVisor fixes the MSS used when the peer sends none; the name is not supported")
	case "net.inet.tcp.tw_reuse":
		v, err := num()
		if err != nil {
			return err
		}
		o := tcpip.TCPTimeWaitReuseDisabled
		if v != 0 {
			o = tcpip.TCPTimeWaitReuseGlobal
		}
		return setTCP(&o)
	case "net.inet.ip.ttl":
		v, err := num()
		if err != nil {
			return err
		}
		o := tcpip.DefaultTTLOption(v)
		if err := st.s.SetNetworkProtocolOption(ipv4.ProtocolNumber, &o); err != nil {
			return fmt.Errorf("%s", err)
		}
		return nil
	case "net.inet6.ip6.hlim":
		v, err := num()
		if err != nil {
			return err
		}
		o := tcpip.DefaultTTLOption(v)
		if err := st.s.SetNetworkProtocolOption(ipv6.ProtocolNumber, &o); err != nil {
			return fmt.Errorf("%s", err)
		}
		return nil
	case "net.inet.ip.forwarding":
		v, err := num()
		if err != nil {
			return err
		}
		if err := st.s.SetForwardingDefaultAndAllNICs(ipv4.ProtocolNumber, v != 0); err != nil {
			return fmt.Errorf("%s", err)
		}
		return nil
	}
	return fmt.Errorf("unknown sysctl")
}
