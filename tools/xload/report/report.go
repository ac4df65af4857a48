// Package report holds what tools/xload reports, as it prints it with
// -json, for the programs that run it and read that report back.
package report

import (
	"fmt"
	"strings"
)

// Result is what a run reports, and xload -json prints.
type Result struct {
	Mode    string  `json:"mode"`
	Conns   int     `json:"conns"`
	Seconds float64 `json:"seconds"`
	Rate    float64 `json:"rate"` // requests/s, or connections/s with -short
	// OfferedRate is -rate, the schedule of an open loop; 0 for a closed
	// loop.
	OfferedRate float64 `json:"offered_rate,omitempty"`
	RateUnit    string  `json:"rate_unit"`
	P50us       float64 `json:"p50_us"`
	P90us       float64 `json:"p90_us"`
	P99us       float64 `json:"p99_us"`
	P999us      float64 `json:"p999_us"`
	CPUBusyPct  float64 `json:"cpu_busy_pct"`
	CPUusPer    float64 `json:"cpu_us_per_unit"`
	XDPMode     string  `json:"xdp_mode"`
	Counts      Counts  `json:"counts"`
}

// Text is the report as xload prints it without -json.
func (r *Result) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s, %d connections, %.2f s (xdp %s)\n", r.Mode, r.Conns, r.Seconds, r.XDPMode)
	if r.OfferedRate > 0 {
		fmt.Fprintf(&b, "  %.0f %s of %.0f offered (open loop)\n", r.Rate, r.RateUnit, r.OfferedRate)
	} else {
		fmt.Fprintf(&b, "  %.0f %s\n", r.Rate, r.RateUnit)
	}
	fmt.Fprintf(&b, "  latency p50 %.0f µs  p90 %.0f µs  p99 %.0f µs  p99.9 %.0f µs\n", r.P50us, r.P90us, r.P99us, r.P999us)
	c := &r.Counts
	fmt.Fprintf(&b, "  responses ok %d; errors: bad status %d, malformed %d, short %d, reset %d, timeout %d\n",
		c.OK, c.BadStatus, c.Malformed, c.Short, c.Reset, c.Timeout)
	fmt.Fprintf(&b, "  connections opened %d, closed cleanly %d; retransmits %d\n", c.ConnsOpened, c.ConnsDone, c.Retransmits)
	if r.OfferedRate > 0 {
		fmt.Fprintf(&b, "  scheduled %d, late %d, never sent %d\n", c.Scheduled, c.Late, c.Unsent)
		if c.Unsent > 0 {
			fmt.Fprintf(&b, "  the offered rate was not kept: %d scheduled requests never found a free connection (raise -c)\n", c.Unsent)
		}
	}
	fmt.Fprintf(&b, "  generator CPU busy %.1f%%, %.2f µs CPU per %s\n", r.CPUBusyPct, r.CPUusPer, strings.TrimSuffix(r.RateUnit, "/s"))
	return b.String()
}

// Counts are the generator's totals.
type Counts struct {
	ConnsOpened   uint64 `json:"conns_opened"`
	ConnsDone     uint64 `json:"conns_done"`
	OK            uint64 `json:"ok"`
	BadStatus     uint64 `json:"bad_status"`
	Malformed     uint64 `json:"malformed"`
	Short         uint64 `json:"short"`
	Reset         uint64 `json:"reset"`
	Timeout       uint64 `json:"timeout"`
	RxFrames      uint64 `json:"rx_frames"`
	RxBadChecksum uint64 `json:"rx_bad_checksum"`
	// RxPartialChecksum counts frames whose TCP checksum field held the
	// pseudo-header sum of a sender that offloaded its checksum.
	RxPartialChecksum uint64 `json:"rx_partial_checksum"`
	RxStray           uint64 `json:"rx_stray"`
	// RxBadND counts IPv6 Neighbor Solicitations and Advertisements that
	// failed RFC 4861's checks (7.1.1, 7.1.2) and were dropped.
	RxBadND     uint64 `json:"rx_bad_nd"`
	Retransmits uint64 `json:"retransmits"`
	TxNoBuffer  uint64 `json:"tx_no_buffer"`
	RespBytes   uint64 `json:"resp_bytes"`
	// Open loop (Config.Rate): requests that fell due before the run
	// stopped, those sent in a later pass than the one they fell due in
	// (no connection was free), and those never sent.
	Scheduled uint64 `json:"scheduled,omitempty"`
	Late      uint64 `json:"late,omitempty"`
	Unsent    uint64 `json:"unsent,omitempty"`
}

// Errors sums the errors of every kind.
func (c *Counts) Errors() uint64 {
	return c.BadStatus + c.Malformed + c.Short + c.Reset + c.Timeout
}

// Done is the responses that completed, ok or with a bad status: the
// units of work the server did.
func (r *Result) Done() uint64 { return r.Counts.OK + r.Counts.BadStatus }
