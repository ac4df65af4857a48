package main

import (
	"math"
	"strconv"
	"strings"
)

// barPlot returns a plot of one metric of a scenario as grouped bars: for
// each point (in the order of the table), each target's median, with a
// whisker from the lowest to the highest round.
func barPlot(scenario, metric, title, ylabel string) func(*Results, string) (bool, error) {
	return func(res *Results, path string) (bool, error) {
		var pts []*Point
		lo, hi := 0.0, 0.0
		for _, p := range res.Points {
			if p.Scenario != scenario || p.Metric != metric {
				continue
			}
			pts = append(pts, p)
			for _, s := range p.Samples {
				lo, hi = math.Min(lo, s.Value), math.Max(hi, s.Value)
			}
		}
		if len(pts) == 0 {
			return false, nil
		}
		ch := newChart(title, "", ylabel)
		yt := niceTicks(hi, 6)
		ch.ymin, ch.ymax = 0, yt[len(yt)-1]
		if lo < 0 {
			// Memory figures net of an estimate can dip below zero.
			step := yt[1] - yt[0]
			ch.ymin = -step * math.Ceil(-lo/step)
			for v := -step; v >= ch.ymin-step/2; v -= step {
				yt = append([]float64{v}, yt...)
			}
		}
		ch.xmin, ch.xmax = 0, float64(len(pts))
		ch.axes(nil, nil, yt, func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) })
		targets := []string{kernel, xstack}
		slot := float64(ch.right-ch.left) / float64(len(pts))
		barW := math.Min(slot*0.8/float64(len(targets)), 60)
		for i, p := range pts {
			center := float64(ch.left) + slot*(float64(i)+0.5)
			for ti, tg := range targets {
				s, ok := p.summary(tg)
				if !ok {
					continue
				}
				x0 := center + (float64(ti)-float64(len(targets))/2)*barW
				_, y := ch.px(0, s.median)
				_, y0 := ch.px(0, 0)
				top, bottom := math.Min(y, y0), math.Max(y, y0)
				ch.rect(int(x0)+2, int(top), int(x0+barW)-2, int(bottom), colTarget[tg])
				xm := x0 + barW/2
				_, ylo := ch.px(0, s.min)
				_, yhi := ch.px(0, s.max)
				ch.line(xm, ylo, xm, yhi, 2, colAxis)
				ch.line(xm-5, ylo, xm+5, ylo, 2, colAxis)
				ch.line(xm-5, yhi, xm+5, yhi, 2, colAxis)
			}
			// The point's label, one line per comma-separated part.
			for li, part := range strings.Split(p.Label, ", ") {
				ch.text(int(center)-textWidth(part, 1)/2, ch.bottom+10+li*11, part, 1, colAxis)
			}
		}
		ch.legend(targets)
		return true, ch.save(path)
	}
}
