package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The two targets every scenario measures.
const (
	kernel = "kernel"
	xstack = "xstack"
)

// Results is everything one run measured; it is what -out holds.
type Results struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Host     Host      `json:"host"`
	Settings Settings  `json:"settings"`
	Points   []*Point  `json:"points"`
	Notes    []string  `json:"notes,omitempty"`
}

// Host describes the machine, so that figures can be told apart later.
type Host struct {
	Kernel string `json:"kernel"`
	CPU    string `json:"cpu"`
	CPUs   int    `json:"cpus"`
	Go     string `json:"go"`
}

// Settings are the flags that shaped the run.
type Settings struct {
	Scenarios []string      `json:"scenarios"`
	Rounds    int           `json:"rounds"`
	Duration  time.Duration `json:"duration_ns"`
	Quick     bool          `json:"quick"`
	Steer     bool          `json:"steer"`
	// RigModes are the rig's receive modes the scenarios ran in, in
	// order: veth (receive work on the sender's CPU) and nic (threaded
	// NAPI on the receiver's CPU).
	RigModes  []string `json:"rig_modes"`
	ServerCPU int      `json:"server_cpu"`
	ClientCPU int      `json:"client_cpu"`
	Rig       string   `json:"rig"`
}

// Point is one measured quantity of a scenario at one setting (e.g. rps at
// 64 connections), with every sample of every target.
type Point struct {
	Scenario string `json:"scenario"`
	// Rig is the rig's receive mode (veth or nic), Client the program
	// that made the load (wrk, or the bench's Go client).
	Rig    string `json:"rig,omitempty"`
	Client string `json:"client,omitempty"`
	Label  string `json:"label"` // e.g. "64 conns"
	Param  int    `json:"param"` // the swept parameter (connections, workers, ...)
	Metric string `json:"metric"`
	Unit   string `json:"unit"`
	// Lower is true for metrics where smaller is better (latency, cost).
	Lower bool `json:"lower_is_better,omitempty"`
	// NoRatio is true where xstack/kernel means nothing (the client's
	// CPU utilisation).
	NoRatio bool      `json:"no_ratio,omitempty"`
	Samples []*Sample `json:"samples"`
}

// sameRun reports whether p and q are figures of the same measurements
// (scenario, rig mode, client and point).
func (p *Point) sameRun(q *Point) bool {
	return p.Scenario == q.Scenario && p.Rig == q.Rig && p.Client == q.Client && p.Label == q.Label
}

// Sample is one measurement of one target in one round.
type Sample struct {
	Target string  `json:"target"`
	Round  int     `json:"round"`
	Value  float64 `json:"value"`
	// Errors counts failed operations (socket errors, timeouts, bad
	// responses) during the sample.
	Errors uint64 `json:"errors,omitempty"`
	// Detail holds secondary figures (wrk's percentiles, bytes, ...).
	Detail map[string]float64 `json:"detail,omitempty"`
	// CDF is a latency distribution: Quantiles[i] of the samples were at
	// most LatencyUs[i] microseconds.
	CDF *CDF `json:"cdf,omitempty"`
	// CPU is the CPU time the measurement took (cpu.go), on the sample of
	// the rate it measured.
	CPU *CPUWindow `json:"cpu,omitempty"`
}

// CDF is a sampled cumulative distribution.
type CDF struct {
	LatencyUs []float64 `json:"latency_us"`
	Quantiles []float64 `json:"quantiles"`
	Count     int       `json:"count"`
}

// point returns the point with want's identity (scenario, rig, client,
// label, metric), adding want if new.
func (r *Results) point(want Point) *Point {
	for _, p := range r.Points {
		if p.sameRun(&want) && p.Metric == want.Metric {
			return p
		}
	}
	p := &want
	r.Points = append(r.Points, p)
	return p
}

// Cost metrics: the rows each rate measurement adds (addCost).
const (
	metricClientCPU = "client CPU"
	procStatSuffix  = ", whole CPU (/proc/stat)"
)

// addCost adds the cost rows of one measurement of like (a point of the
// rate it measured) by target in round: the server's CPU per unit (the
// loop's busy time for xstack, the server CPU's non-idle time for the
// kernel), the server CPU's non-idle time per unit for both (/proc/stat),
// the client CPU's utilisation and its non-idle time per unit. perUnit names the unit ("request");
// bytes are costed in CPU-seconds per GB (10^9 bytes), everything else in
// µs.
func (r *Results) addCost(like *Point, target string, round int, w CPUWindow, perUnit string) {
	server, procStat := w.costPer() // ns per unit
	metric, unit, scale := "server CPU/"+perUnit, "µs", 1e-3
	if perUnit == "byte" {
		// ns per byte is CPU-seconds per 10^9 bytes.
		metric, unit, scale = "server CPU", "CPU-s/GB", 1
	}
	row := func(metric, unit string, v float64, lower, noRatio bool) {
		p := r.point(Point{Scenario: like.Scenario, Rig: like.Rig, Client: like.Client, Label: like.Label, Param: like.Param,
			Metric: metric, Unit: unit, Lower: lower, NoRatio: noRatio})
		p.Samples = append(p.Samples, &Sample{Target: target, Round: round, Value: v})
	}
	row(metric, unit, server*scale, true, false)
	row(metric+procStatSuffix, unit, procStat*scale, true, false)
	row(metricClientCPU, "%", 100*w.Client.util(), false, true)
	// The client's cost per unit, from the client CPU's non-idle time:
	// what one unit of work costs the load generator, kernel's receive
	// work on its CPU included, so that clients can be compared.
	if w.Units > 0 {
		cm := "client CPU/" + perUnit
		if perUnit == "byte" {
			cm = "client CPU/GB"
		}
		row(cm, unit, float64(w.Client.busy())/w.Units*scale, true, true)
	}
}

// clientBound reports whether target's median client CPU utilisation at
// the measurements of p reached clientBoundUtil.
func (r *Results) clientBound(p *Point, target string) bool {
	for _, q := range r.Points {
		if q.Metric == metricClientCPU && q.sameRun(p) {
			s, ok := q.summary(target)
			return ok && s.median >= 100*clientBoundUtil
		}
	}
	return false
}

// note adds a note unless it is there already (a scenario run in both rig
// modes explains itself once).
func (r *Results) note(s string) {
	if !slices.Contains(r.Notes, s) {
		r.Notes = append(r.Notes, s)
	}
}

// values returns the sample values of target.
func (p *Point) values(target string) []float64 {
	var v []float64
	for _, s := range p.Samples {
		if s.Target == target {
			v = append(v, s.Value)
		}
	}
	return v
}

func (p *Point) errors(target string) uint64 {
	var n uint64
	for _, s := range p.Samples {
		if s.Target == target {
			n += s.Errors
		}
	}
	return n
}

// median returns the median of v (the mean of the middle two for an even
// count) and false if v is empty.
func median(v []float64) (float64, bool) {
	if len(v) == 0 {
		return 0, false
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2], true
	}
	return (s[n/2-1] + s[n/2]) / 2, true
}

// quantile returns the q-quantile (0..1) of sorted (nearest rank).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

// cdfOf samples the distribution of sorted at quantiles spaced so that the
// tail is kept: uniform to 0.9, then 0.99, 0.999, ... resolution.
func cdfOf(sorted []float64) *CDF {
	c := &CDF{Count: len(sorted)}
	if len(sorted) == 0 {
		return c
	}
	add := func(q float64) {
		c.Quantiles = append(c.Quantiles, q)
		c.LatencyUs = append(c.LatencyUs, quantile(sorted, q))
	}
	for i := 0; i < 90; i++ {
		add(float64(i) / 100)
	}
	for _, base := range []float64{0.9, 0.99, 0.999, 0.9999} {
		step := (1 - base) / 10
		for i := 0; i < 9; i++ {
			add(base + float64(i)*step)
		}
	}
	add(1)
	return c
}

// formatValue prints v with a unit-appropriate precision.
func formatValue(v float64, unit string) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case unit == "CPU-s/GB":
		return strconv.FormatFloat(v, 'f', 2, 64)
	case unit == "%":
		// One decimal: a client CPU at 89.7% is not client-bound, and
		// must not read as 90.
		return strconv.FormatFloat(v, 'f', 1, 64)
	case unit == "µs" || unit == "Gbit/s" || unit == "KiB":
		if v >= 100 {
			return strconv.FormatFloat(v, 'f', 0, 64)
		}
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', 1, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
}

// summary is one target's figures at one point.
type summary struct {
	median, min, max float64
	n                int
	errors           uint64
}

func (p *Point) summary(target string) (summary, bool) {
	v := p.values(target)
	m, ok := median(v)
	if !ok {
		return summary{}, false
	}
	return summary{median: m, min: slices.Min(v), max: slices.Max(v), n: len(v), errors: p.errors(target)}, true
}

// writeTable prints the results as a Markdown table: per target median and
// spread (min–max over rounds), and the ratio xstack/kernel of the medians.
// A target's median is marked client-bound where its client CPU was at
// least 90% busy (the median over rounds), on every row of that
// measurement but its cost rows.
func (r *Results) writeTable(w io.Writer) {
	fmt.Fprintln(w, "| scenario | rig | client | point | metric | kernel median | kernel min–max | xstack median | xstack min–max | xstack/kernel |")
	fmt.Fprintln(w, "|---|---|---|---|---|---:|---:|---:|---:|---:|")
	for _, p := range r.Points {
		cells := []string{p.Scenario, orDash(p.Rig), orDash(p.Client), p.Label, p.Metric + " (" + p.Unit + ")"}
		isCost := strings.HasPrefix(p.Metric, "server CPU")
		var med [2]float64
		for i, tg := range []string{kernel, xstack} {
			s, ok := p.summary(tg)
			if !ok {
				cells = append(cells, "—", "—")
				med[i] = math.NaN()
				continue
			}
			m := formatValue(s.median, p.Unit)
			if s.errors > 0 {
				m += fmt.Sprintf(" (%d err)", s.errors)
			}
			if !isCost && r.clientBound(p, tg) {
				m += " client-bound"
			}
			cells = append(cells, m, formatValue(s.min, p.Unit)+"–"+formatValue(s.max, p.Unit))
			med[i] = s.median
		}
		ratio := "—"
		if !p.NoRatio && !math.IsNaN(med[0]) && !math.IsNaN(med[1]) && med[0] > 0 {
			ratio = strconv.FormatFloat(med[1]/med[0], 'f', 2, 64)
			if p.Lower {
				ratio += " (lower is better)"
			}
		}
		cells = append(cells, ratio)
		fmt.Fprintln(w, "| "+strings.Join(cells, " | ")+" |")
	}
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// writeJSON writes r to path, creating its directory.
func (r *Results) writeJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
