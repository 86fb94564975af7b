package bench

import (
	"encoding/json"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"strings"
)

// WriteCapacity writes results.json, results.md, summary.md and chart.svg
// into dir, creating it.
func WriteCapacity(dir string, res *CapacityResult, command string) error {
	return writeCapacity(dir, res, CapacityMarkdown(res, command), true)
}

// WriteQuick writes a quick run's results.json, results.md, summary.md and
// chart.svg (the summary's relay, baseline and floor as bars) into dir,
// creating it.
func WriteQuick(dir string, res *CapacityResult, command string) error {
	return writeCapacity(dir, res, QuickMarkdown(res, command), false)
}

func writeCapacity(dir string, res *CapacityResult, md string, ramp bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: create %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode results: %w", err)
	}
	files := map[string]string{
		"results.json": string(b) + "\n",
		"results.md":   md,
		"summary.md":   SummaryMarkdown(res),
	}
	if ramp {
		files["chart.svg"] = CapacitySVG(res)
	} else {
		files["chart.svg"] = QuickSVG(res)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("bench: write results: %w", err)
		}
	}
	return nil
}

// servers returns the step's measured servers, the relay first.
func (s *CapacityStep) servers() []*ServerStep {
	out := []*ServerStep{&s.Relay}
	if s.Baseline != nil {
		out = append(out, s.Baseline)
	}
	if s.Floor != nil {
		out = append(out, s.Floor)
	}
	return out
}

// serverRows renders each server's step as a row of the absolute table.
func serverRows(res *CapacityResult, withStep bool) [][]string {
	var rows [][]string
	for i := range res.Steps {
		s := &res.Steps[i]
		for _, x := range s.servers() {
			read, want := x.Delivered()
			row := []string{
				x.Server, fmt.Sprintf("%s of %s", fmtInt(int64(x.Held)), fmtInt(int64(x.Want))),
				fmtRate(x.AcceptRate), fmtBytes(x.RSSPerConn), fmtBytes(x.HeapPerConn), fmtKernel(x),
				fmtDur(x.BroadcastTTL), fmt.Sprintf("%s / %s", fmtDur(x.Unicast.P50), fmtDur(x.Unicast.P99)),
				fmtRate(x.Throughput), fmt.Sprintf("%s / %s", fmtInt(read), fmtInt(want)),
				fmt.Sprintf("%.2f s", x.LoadgenCPU.Seconds()), failureList(x.Failures),
			}
			if withStep {
				row = append([]string{fmt.Sprint(i + 1)}, row...)
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// fmtKernel prints a server's kernel memory per connection, marked * when
// connect windows other processes' sockets disturbed were left out of it,
// "—" when every window was.
func fmtKernel(x *ServerStep) string {
	switch {
	case x.KernelSockets <= 0:
		return "—"
	case x.KernelLeftOut > 0:
		return fmtBytes(x.KernelPerConn) + " *"
	}
	return fmtBytes(x.KernelPerConn)
}

func serverHeader(res *CapacityResult, withStep bool) []string {
	h := []string{"server", "held", "accept rate", "RSS/conn", "Go heap/conn", "kernel/conn",
		fmt.Sprintf("broadcast to last client (median of %d)", res.Broadcasts),
		fmt.Sprintf("unicast p50 / p99 at %s/s", fmtInt(int64(res.UnicastRate))),
		"unicasts/s (as fast as taken)", "frames read / expected", "load generator CPU", "load generator failures"}
	if withStep {
		h = append([]string{"step"}, h...)
	}
	return h
}

// CapacityMarkdown renders the ramp: every server's figures at each step,
// the relay's ratios to the baseline and the floor, the wall, and the
// relay-beside-baseline summary at the largest step with a baseline.
func CapacityMarkdown(res *CapacityResult, command string) string {
	var w doc
	fmt.Fprintf(&w, "### Capacity ramp: the relay beside the baseline and the kernel floor\n\n```sh\n%s\n```\n\n", command)
	fmt.Fprintf(&w, "Measured %s on %s. %s.\n\n", res.Started.Format("2006-01-02 15:04 UTC"), res.Machine, res.Options)
	w.WriteString("Each server at each step (the baseline and the floor grown to the count the relay held):\n\n")
	w.mdTable(serverHeader(res, true), serverRows(res, true))
	w.WriteString("\nThe relay's figures ÷ the baseline's and ÷ the floor's at each step (below 1 is better for memory, time and latency, above 1 for rates; — where not measured):\n\n")
	var rows [][]string
	for i := range res.Steps {
		s := &res.Steps[i]
		r := s.Ratios
		lb := "—"
		if s.Loopback != nil {
			lb = fmt.Sprintf("%s / %s", fmtDur(s.Loopback.P50), fmtDur(s.Loopback.P99))
		}
		rows = append(rows, []string{
			fmt.Sprint(i + 1), fmtInt(int64(s.Relay.Held)),
			fmtRatio(r.Memory.Baseline), fmtRatio(r.Memory.Floor), fmtRatio(r.Heap.Baseline),
			fmtRatio(r.Accept.Baseline), fmtRatio(r.Accept.Floor),
			fmtRatio(r.Broadcast.Baseline), fmtRatio(r.Broadcast.Floor),
			fmtRatio(r.Throughput.Baseline), fmtRatio(r.Throughput.Floor),
			fmtRatio(r.UnicastP50.Baseline), fmtRatio(r.UnicastP50.Floor),
			fmtRatio(r.UnicastP99.Baseline), fmtRatio(r.UnicastP99.Floor),
			lb, fmtRatio(r.LoopbackP50), fmtRatio(r.LoopbackP99),
		})
	}
	w.table([]string{"step", "relay held",
		"memory/conn (process + kernel) ÷ baseline", "÷ floor", "Go heap/conn ÷ baseline",
		"accept rate ÷ baseline", "÷ floor",
		"broadcast to last ÷ baseline", "÷ floor",
		"unicasts/s ÷ baseline", "÷ floor",
		"unicast p50 ÷ baseline", "÷ floor",
		"unicast p99 ÷ baseline", "÷ floor",
		"bare loopback write p50 / p99", "unicast p50 ÷ bare loopback", "p99 ÷ bare loopback"}, rows)
	writeWall(&w, "**Wall: ", res.Wall)
	for _, name := range []string{ServerBaseline, ServerFloor} {
		if sw, ok := res.ServerWalls[name]; ok {
			writeWall(&w, fmt.Sprintf("**The %s's wall: ", name), sw)
		}
	}
	if res.Interrupted {
		w.WriteString("**Interrupted**: a partial report of the steps completed.\n\n")
	}
	if sum := SummaryMarkdown(res); sum != "" {
		w.WriteString(sum + "\n")
	}
	w.notes(res.Notes)
	return w.String()
}

func writeWall(w *doc, lead string, wall Wall) {
	fmt.Fprintf(w, "%s%s**", lead, wall.Name)
	if wall.ID == WallNone {
		w.WriteString(".\n\n")
		return
	}
	fmt.Fprintf(w, " at %s connections.\n\n", fmtInt(int64(wall.At)))
	for _, e := range wall.Evidence {
		fmt.Fprintf(w, "- %s\n", e)
	}
	if len(wall.Fix) > 0 {
		w.WriteString("\nThe fix (from `pushrelay doctor`):\n\n```\n" + strings.Join(wall.Fix, "\n") + "\n```\n")
	}
	if wall.Around != "" {
		fmt.Fprintf(w, "\n%s\n", wall.Around)
	}
	w.WriteString("\n")
}

// QuickMarkdown renders a one-step run (`pushrelay bench quick`): each
// server's figures, then the relay-beside-baseline summary.
func QuickMarkdown(res *CapacityResult, command string) string {
	var w doc
	conns := 0
	if len(res.Steps) > 0 {
		conns = res.Steps[0].Conns
	}
	fmt.Fprintf(&w, "### Quick run: %s clients per server\n\n```sh\n%s\n```\n\n", fmtInt(int64(conns)), command)
	fmt.Fprintf(&w, "Measured %s on %s. %s.\n\n", res.Started.Format("2006-01-02 15:04 UTC"), res.Machine, res.Options)
	w.table(serverHeader(res, false), serverRows(res, false))
	if res.Wall.ID != WallNone {
		writeWall(&w, "**Wall: ", res.Wall)
	}
	if res.Interrupted {
		w.WriteString("**Interrupted**: a partial report.\n\n")
	}
	w.notes(res.Notes)
	if sum := SummaryMarkdown(res); sum != "" {
		w.WriteString("\n" + sum)
	}
	return w.String()
}

// SummaryMarkdown renders the relay beside the baseline and the floor at the
// largest step where the baseline was measured (or the largest step, if it
// never was): one table of the headline figures and their ratios. Empty
// without a step.
func SummaryMarkdown(res *CapacityResult) string {
	s := summaryStep(res)
	if s == nil {
		return ""
	}
	var w doc
	fmt.Fprintf(&w, "#### Summary: the relay beside the baseline, %s clients each\n\n", fmtInt(int64(s.Relay.Held)))
	rl, bl, fl := &s.Relay, s.Baseline, s.Floor
	r := s.Ratios
	cell := func(x *ServerStep, f func(*ServerStep) string) string {
		if x == nil {
			return "—"
		}
		return f(x)
	}
	type row struct {
		name   string
		f      func(*ServerStep) string
		vb, vf float64
	}
	mem := func(x *ServerStep) string { return fmtBytes(x.MemoryPerConn()) }
	rows := []row{
		{"memory per connection: process + kernel (lower is better)", mem, r.Memory.Baseline, r.Memory.Floor},
		{"… of which the server process (RSS growth, at least the Go heap's)", func(x *ServerStep) string { return fmtBytes(x.ProcessPerConn()) }, r.RSS.Baseline, 0},
		{"… of which the kernel (both loopback ends)", fmtKernel, 0, 0},
		{"Go heap in use, per connection", func(x *ServerStep) string { return fmtBytes(x.HeapPerConn) }, r.Heap.Baseline, 0},
		{"accept rate (higher is better)", func(x *ServerStep) string { return fmtRate(x.AcceptRate) }, r.Accept.Baseline, r.Accept.Floor},
		{fmt.Sprintf("broadcast: time to the last client, median of %d (lower is better)", res.Broadcasts), func(x *ServerStep) string { return fmtDur(x.BroadcastTTL) }, r.Broadcast.Baseline, r.Broadcast.Floor},
		{"unicasts per second, as fast as taken (higher is better)", func(x *ServerStep) string { return fmtRate(x.Throughput) }, r.Throughput.Baseline, r.Throughput.Floor},
		{fmt.Sprintf("unicast latency p50 at %s/s (lower is better)", fmtInt(int64(res.UnicastRate))), func(x *ServerStep) string { return fmtDur(x.Unicast.P50) }, r.UnicastP50.Baseline, r.UnicastP50.Floor},
		{"unicast latency p99 (lower is better)", func(x *ServerStep) string { return fmtDur(x.Unicast.P99) }, r.UnicastP99.Baseline, r.UnicastP99.Floor},
		{"frames read / expected, every series", func(x *ServerStep) string {
			read, want := x.Delivered()
			return fmt.Sprintf("%s / %s", fmtInt(read), fmtInt(want))
		}, 0, 0},
	}
	var table [][]string
	for _, x := range rows {
		table = append(table, []string{x.name, cell(rl, x.f), cell(bl, x.f), fmtRatio(x.vb), cell(fl, x.f), fmtRatio(x.vf)})
	}
	if lb := s.Loopback; lb != nil {
		table = append(table, []string{"bare loopback write to a waiting reader, p50 / p99 (the latency floor)", "—", "—", "—",
			fmt.Sprintf("%s / %s", fmtDur(lb.P50), fmtDur(lb.P99)),
			fmt.Sprintf("%s / %s", fmtRatio(r.LoopbackP50), fmtRatio(r.LoopbackP99))})
	}
	w.mdTable([]string{"figure", "relay", "baseline", "relay ÷ baseline", "floor", "relay ÷ floor"}, table)
	return w.String()
}

// summaryStep is the step the summary shows: the largest where the
// baseline was measured, or the largest; nil without a step.
func summaryStep(res *CapacityResult) *CapacityStep {
	var s *CapacityStep
	for i := len(res.Steps) - 1; i >= 0; i-- {
		if s == nil || res.Steps[i].Baseline != nil {
			s = &res.Steps[i]
		}
		if s.Baseline != nil {
			break
		}
	}
	return s
}

// svgOpen starts an SVG document of w × h on a white ground.
func svgOpen(b *strings.Builder, w, h int) {
	fmt.Fprintf(b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
}

// QuickSVG draws the summary's table as bars: for each headline figure,
// the relay, the baseline and the floor side by side on the figure's own
// scale, each bar labelled with its value. Servers not measured have no
// bar.
func QuickSVG(res *CapacityResult) string {
	type figure struct {
		title string
		val   func(*ServerStep) float64
		label func(*ServerStep) string
	}
	figs := []figure{
		{"memory per connection, process + kernel (lower is better)", func(x *ServerStep) float64 { return x.MemoryPerConn() }, func(x *ServerStep) string { return fmtBytes(x.MemoryPerConn()) }},
		{"Go heap in use per connection (lower is better)", func(x *ServerStep) float64 { return x.HeapPerConn }, func(x *ServerStep) string { return fmtBytes(x.HeapPerConn) }},
		{"accept rate (higher is better)", func(x *ServerStep) float64 { return x.AcceptRate }, func(x *ServerStep) string { return fmtRate(x.AcceptRate) }},
		{fmt.Sprintf("broadcast: time to the last client, median of %d (lower is better)", res.Broadcasts), func(x *ServerStep) float64 { return float64(x.BroadcastTTL) }, func(x *ServerStep) string { return fmtDur(x.BroadcastTTL) }},
		{"unicasts per second, as fast as taken (higher is better)", func(x *ServerStep) float64 { return x.Throughput }, func(x *ServerStep) string { return fmtRate(x.Throughput) }},
		{fmt.Sprintf("unicast latency p50 at %s/s (lower is better)", fmtInt(int64(res.UnicastRate))), func(x *ServerStep) float64 { return float64(x.Unicast.P50) }, func(x *ServerStep) string { return fmtDur(x.Unicast.P50) }},
		{"unicast latency p99 (lower is better)", func(x *ServerStep) float64 { return float64(x.Unicast.P99) }, func(x *ServerStep) string { return fmtDur(x.Unicast.P99) }},
	}
	type server struct {
		name, color string
		x           *ServerStep
	}
	s := summaryStep(res)
	var servers []server
	held := 0
	if s != nil {
		held = s.Relay.Held
		servers = []server{{ServerRelay, "#1f77b4", &s.Relay}, {ServerBaseline, "#9467bd", s.Baseline}, {ServerFloor, "#7f7f7f", s.Floor}}
	}
	const w, pad, label, barH, gap = 760, 16, 70, 16, 4
	rowH := 24 + len(servers)*(barH+gap) + 10
	h := 44 + len(figs)*rowH
	var b strings.Builder
	svgOpen(&b, w, h)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="15">%s</text>`+"\n", pad, 26, html.EscapeString(fmt.Sprintf("Quick run: the relay beside the baseline and the kernel floor, %s clients each", fmtInt(int64(held)))))
	x0, x1 := pad+label, w-pad-90
	for i, f := range figs {
		top := 44 + i*rowH
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13">%s</text>`+"\n", pad, top+16, html.EscapeString(f.title))
		maxV := 0.0
		for _, sv := range servers {
			if sv.x != nil {
				maxV = max(maxV, f.val(sv.x))
			}
		}
		for k, sv := range servers {
			y := top + 24 + k*(barH+gap)
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", x0-6, y+barH-4, html.EscapeString(sv.name))
			if sv.x == nil {
				fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#999">not measured</text>`+"\n", x0+4, y+barH-4)
				continue
			}
			v, bw := f.val(sv.x), 0.0
			if maxV > 0 && v > 0 {
				bw = float64(x1-x0) * v / maxV
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0, y, bw, barH, sv.color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", float64(x0)+bw+6, y+barH-4, html.EscapeString(f.label(sv.x)))
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// svgSeries is one line of a chart panel.
type svgSeries struct {
	name, color, dash string
	pts               [][2]float64 // connections, value
}

// CapacitySVG draws connections against memory per connection and against
// the broadcast's time to the last client, relay, baseline and floor: two
// panels a browser opens.
func CapacitySVG(res *CapacityResult) string {
	const w, h, pad = 760, 330, 64
	var b strings.Builder
	svgOpen(&b, w, 2*h)
	maxX := 1.0
	var ticks []int
	for _, s := range res.Steps {
		for _, x := range s.servers() {
			maxX = max(maxX, float64(x.Held))
		}
		ticks = append(ticks, s.Relay.Held)
	}
	series := func(name, color, dash string, pick func(*CapacityStep) *ServerStep, y func(*ServerStep) float64) svgSeries {
		sr := svgSeries{name: name, color: color, dash: dash}
		for i := range res.Steps {
			if x := pick(&res.Steps[i]); x != nil && x.Held > 0 {
				sr.pts = append(sr.pts, [2]float64{float64(x.Held), y(x)})
			}
		}
		return sr
	}
	relay := func(s *CapacityStep) *ServerStep { return &s.Relay }
	baseline := func(s *CapacityStep) *ServerStep { return s.Baseline }
	floor := func(s *CapacityStep) *ServerStep { return s.Floor }
	panel := func(top int, title, unit string, all []svgSeries) {
		maxY := 1.0
		for _, sr := range all {
			for _, p := range sr.pts {
				maxY = max(maxY, p[1])
			}
		}
		maxY *= 1 + 0.1*float64(len(all)) // headroom for the legend
		x0, y0, x1, y1 := pad, top+h-pad/2-8, w-pad/2, top+pad/2+8
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="15">%s</text>`+"\n", pad, top+22, html.EscapeString(title))
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, y0, x1, y0, x0, y0, x0, y1)
		for k := 1; k <= 4; k++ {
			yy := y0 - (y0-y1)*k/4
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#e4e4e4"/>`+"\n", x0, yy, x1, yy)
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", x0-4, yy+4, html.EscapeString(svgNumber(maxY*float64(k)/4)))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">0</text>`+"\n", x0-4, y0+4)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="start">%s</text>`+"\n", 8, y1-10, html.EscapeString(unit))
		px := func(v float64) float64 { return float64(x0) + float64(x1-x0)*v/maxX }
		py := func(v float64) float64 { return float64(y0) - float64(y0-y1)*v/maxY }
		for _, t := range ticks {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="10">%s</text>`+"\n", px(float64(t)), y0+14, fmtInt(int64(t)))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">client connections held</text>`+"\n", x1, y0+30)
		for k, sr := range all {
			var pts []string
			for _, p := range sr.pts {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p[0]), py(p[1])))
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px(p[0]), py(p[1]), sr.color)
			}
			dash := ""
			if sr.dash != "" {
				dash = fmt.Sprintf(` stroke-dasharray="%s"`, sr.dash)
			}
			if len(pts) > 0 {
				fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`+"\n", sr.color, dash, strings.Join(pts, " "))
			}
			ly := y1 + 4 + 15*k
			fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n", x1-180, ly-4, x1-156, ly-4, sr.color, dash)
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`+"\n", x1-150, ly, sr.color, html.EscapeString(sr.name))
		}
	}
	panel(0, "Memory per connection (process: RSS growth, at least the Go heap's)", "bytes", []svgSeries{
		series("relay process", "#1f77b4", "", relay, func(x *ServerStep) float64 { return x.ProcessPerConn() }),
		series("relay Go heap", "#2ca02c", "", relay, func(x *ServerStep) float64 { return x.HeapPerConn }),
		series("baseline process", "#1f77b4", "6 4", baseline, func(x *ServerStep) float64 { return x.ProcessPerConn() }),
		series("baseline Go heap", "#2ca02c", "6 4", baseline, func(x *ServerStep) float64 { return x.HeapPerConn }),
		series("kernel (both ends)", "#ff7f0e", "2 3", relay, func(x *ServerStep) float64 { return x.KernelPerConn }),
	})
	panel(h, "Broadcast: time to the last client (median)", "ms", []svgSeries{
		series("relay", "#d62728", "", relay, func(x *ServerStep) float64 { return float64(x.BroadcastTTL) / 1e6 }),
		series("baseline", "#9467bd", "6 4", baseline, func(x *ServerStep) float64 { return float64(x.BroadcastTTL) / 1e6 }),
		series("floor (bare write(2) loop)", "#7f7f7f", "2 3", floor, func(x *ServerStep) float64 { return float64(x.BroadcastTTL) / 1e6 }),
	})
	b.WriteString("</svg>\n")
	return b.String()
}

// svgNumber prints an axis value: whole numbers from 10 up, else two
// significant digits.
func svgNumber(v float64) string {
	if v >= 10 {
		return fmtInt(int64(v + 0.5))
	}
	return fmt.Sprintf("%.2g", v)
}
