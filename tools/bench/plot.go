package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"slices"
	"strconv"
	"unicode"
)

// The plots are drawn with the standard library only: a canvas with lines,
// rectangles and a 5×7 bitmap font (font.go).

var (
	colBackground = color.RGBA{255, 255, 255, 255}
	colAxis       = color.RGBA{40, 40, 40, 255}
	colGrid       = color.RGBA{225, 225, 225, 255}
	colTarget     = map[string]color.RGBA{
		kernel: {31, 119, 180, 255}, // blue
		xstack: {230, 110, 20, 255}, // orange
	}
)

type canvas struct {
	img *image.RGBA
}

func newCanvas(w, h int) *canvas {
	c := &canvas{img: image.NewRGBA(image.Rect(0, 0, w, h))}
	c.rect(0, 0, w, h, colBackground)
	return c
}

func (c *canvas) rect(x0, y0, x1, y1 int, col color.RGBA) {
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			c.img.SetRGBA(x, y, col)
		}
	}
}

// line draws a line w pixels thick.
func (c *canvas) line(x0, y0, x1, y1 float64, w int, col color.RGBA) {
	n := int(math.Max(math.Abs(x1-x0), math.Abs(y1-y0))) + 1
	for i := 0; i <= n; i++ {
		t := float64(i) / float64(n)
		x := int(math.Round(x0 + t*(x1-x0)))
		y := int(math.Round(y0 + t*(y1-y0)))
		c.rect(x-w/2, y-w/2, x-w/2+w, y-w/2+w, col)
	}
}

// text draws s with its top left corner at (x, y), each font pixel scale
// pixels wide.
func (c *canvas) text(x, y int, s string, scale int, col color.RGBA) {
	for _, r := range s {
		g, ok := glyphs[unicode.ToUpper(r)]
		if !ok {
			g, ok = glyphs[r]
		}
		if ok {
			for gy, row := range g {
				for gx, px := range row {
					if px == '#' {
						c.rect(x+gx*scale, y+gy*scale, x+(gx+1)*scale, y+(gy+1)*scale, col)
					}
				}
			}
		}
		x += 6 * scale
	}
}

func textWidth(s string, scale int) int { return len([]rune(s)) * 6 * scale }

func (c *canvas) save(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, c.img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// chart is a plot area with axes mapped to pixels.
type chart struct {
	*canvas
	left, top, right, bottom int     // plot area in pixels
	xmin, xmax, ymin, ymax   float64 // data range (log10 values when logX)
	logX                     bool
}

func newChart(title, xlabel, ylabel string) *chart {
	const w, h = 960, 600
	ch := &chart{canvas: newCanvas(w, h), left: 110, top: 85, right: w - 40, bottom: h - 90}
	ch.text((w-textWidth(title, 3))/2, 12, title, 3, colAxis)
	ch.text((ch.left+ch.right-textWidth(xlabel, 2))/2, h-35, xlabel, 2, colAxis)
	ch.text(10, ch.top-32, ylabel, 2, colAxis)
	return ch
}

func (ch *chart) px(x, y float64) (float64, float64) {
	if ch.logX {
		x = math.Log10(x)
	}
	fx := float64(ch.left) + (x-ch.xmin)/(ch.xmax-ch.xmin)*float64(ch.right-ch.left)
	fy := float64(ch.bottom) - (y-ch.ymin)/(ch.ymax-ch.ymin)*float64(ch.bottom-ch.top)
	return fx, fy
}

// axes draws the frame, horizontal grid lines with labels at yticks and
// vertical ones at xticks (data values) labelled with xlabels.
func (ch *chart) axes(xticks []float64, xlabels []string, yticks []float64, ylabel func(float64) string) {
	for _, y := range yticks {
		_, py := ch.px(ch.xminData(), y)
		ch.line(float64(ch.left), py, float64(ch.right), py, 1, colGrid)
		l := ylabel(y)
		ch.text(ch.left-10-textWidth(l, 2), int(py)-7, l, 2, colAxis)
	}
	for i, x := range xticks {
		px, _ := ch.px(x, ch.ymin)
		ch.line(px, float64(ch.top), px, float64(ch.bottom), 1, colGrid)
		ch.text(int(px)-textWidth(xlabels[i], 2)/2, ch.bottom+12, xlabels[i], 2, colAxis)
	}
	ch.line(float64(ch.left), float64(ch.bottom), float64(ch.right), float64(ch.bottom), 2, colAxis)
	ch.line(float64(ch.left), float64(ch.top), float64(ch.left), float64(ch.bottom), 2, colAxis)
}

func (ch *chart) xminData() float64 {
	if ch.logX {
		return math.Pow(10, ch.xmin)
	}
	return ch.xmin
}

func (ch *chart) legend(targets []string) {
	x := ch.left + 20
	for _, tg := range targets {
		ch.rect(x, ch.top+12, x+30, ch.top+18, colTarget[tg])
		ch.text(x+40, ch.top+8, tg, 2, colAxis)
		x += 40 + textWidth(tg, 2) + 40
	}
}

// niceTicks returns about n round tick values from 0 to at least max.
func niceTicks(hi float64, n int) []float64 {
	if hi <= 0 {
		hi = 1
	}
	raw := hi / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var t []float64
	for v := 0.0; v <= hi+step/2; v += step {
		t = append(t, v)
	}
	if t[len(t)-1] < hi {
		t = append(t, t[len(t)-1]+step)
	}
	return t
}

func shortNumber(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
}

// plotRPS draws requests/s against connections, the median of each target
// with a bar from the minimum to the maximum round.
func plotRPS(res *Results, path string) (bool, error) {
	var pts []*Point
	for _, p := range res.Points {
		if p.Scenario == "rps" && p.Metric == "requests/s" {
			pts = append(pts, p)
		}
	}
	if len(pts) == 0 {
		return false, nil
	}
	slices.SortFunc(pts, func(a, b *Point) int { return a.Param - b.Param })
	hi := 0.0
	for _, p := range pts {
		for _, s := range p.Samples {
			hi = math.Max(hi, s.Value)
		}
	}
	yt := niceTicks(hi, 6)
	ch := newChart("HTTP KEEP-ALIVE REQUESTS/S (ONE SERVER CORE)", "CONNECTIONS", "REQUESTS/S")
	ch.logX = true
	ch.xmin = math.Log10(float64(pts[0].Param)) - 0.15
	ch.xmax = math.Log10(float64(pts[len(pts)-1].Param)) + 0.15
	ch.ymin, ch.ymax = 0, yt[len(yt)-1]
	var xt []float64
	var xl []string
	for _, p := range pts {
		xt = append(xt, float64(max(p.Param, 1)))
		xl = append(xl, strconv.Itoa(p.Param))
	}
	ch.axes(xt, xl, yt, shortNumber)
	targets := []string{kernel, xstack}
	for ti, tg := range targets {
		var prevX, prevY float64
		first := true
		for _, p := range pts {
			s, ok := p.summary(tg)
			if !ok {
				continue
			}
			x, y := ch.px(float64(max(p.Param, 1)), s.median)
			x += float64(ti*6 - 3) // keep the error bars apart
			_, ylo := ch.px(1, s.min)
			_, yhi := ch.px(1, s.max)
			ch.line(x, ylo, x, yhi, 2, colTarget[tg])
			ch.line(x-6, ylo, x+6, ylo, 2, colTarget[tg])
			ch.line(x-6, yhi, x+6, yhi, 2, colTarget[tg])
			ch.rect(int(x)-5, int(y)-5, int(x)+5, int(y)+5, colTarget[tg])
			if !first {
				ch.line(prevX, prevY, x, y, 3, colTarget[tg])
			}
			prevX, prevY, first = x, y, false
		}
	}
	ch.legend(targets)
	return true, ch.save(path)
}

// plotLatencyCDF draws the latency distributions of the latency scenario,
// one line per target and round, on a logarithmic latency axis. The
// vertical axis is the percentile on a "nines" scale, -log10(1-q), so that
// the tail (99%, 99.9%) gets as much room as the body.
func plotLatencyCDF(res *Results, path string) (bool, error) {
	var cdfs []*Sample
	lo, hi := math.Inf(1), 0.0
	for _, p := range res.Points {
		if p.Scenario != "latency" {
			continue
		}
		for _, s := range p.Samples {
			if s.CDF == nil || s.CDF.Count == 0 {
				continue
			}
			cdfs = append(cdfs, s)
			for _, v := range s.CDF.LatencyUs {
				if v > 0 {
					lo, hi = math.Min(lo, v), math.Max(hi, v)
				}
			}
		}
	}
	if len(cdfs) == 0 {
		return false, nil
	}
	rate := ""
	for _, p := range res.Points {
		if p.Scenario == "latency" {
			rate = " AT " + p.Label
			break
		}
	}
	ch := newChart("LATENCY CDF"+rate, "LATENCY (µS, LOG SCALE)", "PERCENTILE")
	ch.logX = true
	ch.xmin = math.Floor(math.Log10(lo))
	ch.xmax = math.Ceil(math.Log10(hi))
	if ch.xmax <= ch.xmin {
		ch.xmax = ch.xmin + 1
	}
	const maxNines = 4 // 99.99%
	nines := func(q float64) float64 { return math.Min(-math.Log10(1-q), maxNines) }
	ch.ymin, ch.ymax = 0, maxNines
	var xt []float64
	var xl []string
	for e := ch.xmin; e <= ch.xmax; e++ {
		v := math.Pow(10, e)
		xt = append(xt, v)
		xl = append(xl, shortNumber(v))
	}
	ch.axes(xt, xl, []float64{0, nines(0.5), 1, 2, 3, 4}, func(v float64) string {
		return strconv.FormatFloat(100*(1-math.Pow(10, -v)), 'f', -1, 64) + "%"
	})
	for _, s := range cdfs {
		col := colTarget[s.Target]
		var px0, py0 float64
		for i, v := range s.CDF.LatencyUs {
			x, y := ch.px(math.Max(v, math.Pow(10, ch.xmin)), nines(s.CDF.Quantiles[i]))
			if i > 0 {
				ch.line(px0, py0, x, py0, 2, col) // a step function
				ch.line(x, py0, x, y, 2, col)
			}
			px0, py0 = x, y
		}
	}
	ch.legend([]string{kernel, xstack})
	return true, ch.save(path)
}

// writePlots writes the PNGs next to the JSON file (base without ".json")
// and returns their paths: one set per rig mode, named
// <base>-<mode>-<plot>.png when the run had a mode.
func writePlots(res *Results, base string) ([]string, error) {
	var modes []string
	for _, p := range res.Points {
		if !slices.Contains(modes, p.Rig) {
			modes = append(modes, p.Rig)
		}
	}
	var paths []string
	for _, m := range modes {
		sub := &Results{}
		for _, p := range res.Points {
			if p.Rig == m {
				sub.Points = append(sub.Points, p)
			}
		}
		b := base
		if m != "" {
			b += "-" + m
		}
		ps, err := writeModePlots(sub, b)
		paths = append(paths, ps...)
		if err != nil {
			return paths, err
		}
	}
	return paths, nil
}

func writeModePlots(res *Results, base string) ([]string, error) {
	var paths []string
	for _, pl := range []struct {
		suffix string
		draw   func(*Results, string) (bool, error)
	}{
		{"-rps.png", plotRPS},
		{"-latency-cdf.png", plotLatencyCDF},
		{"-bulk.png", barPlot("bulk", "throughput", "TCP BULK THROUGHPUT (ONE SERVER CORE)", "GBIT/S")},
		{"-conns.png", barPlot("conns", "memory/conn", "SERVER MEMORY PER IDLE CONNECTION", "KIB PER CONNECTION")},
	} {
		p := base + pl.suffix
		ok, err := pl.draw(res, p)
		if err != nil {
			return paths, fmt.Errorf("plot %s: %w", p, err)
		}
		if ok {
			paths = append(paths, p)
		}
	}
	return paths, nil
}
