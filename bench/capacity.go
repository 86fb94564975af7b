package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pushrelay/pushrelay/kernel-tuning/doctor"
	"github.com/pushrelay/pushrelay/loadgen"
	"github.com/pushrelay/pushrelay/relay"
)

// CapacityOptions configure the capacity ramp.
type CapacityOptions struct {
	// Steps are the connection counts to hold, in order. Default 1,000,
	// 2,000, 5,000, 10,000, then every 10,000 up to Target.
	Steps []int
	// Target ends the ramp when reached (a wall ends it earlier). Default
	// 50,000.
	Target int
	// Framing of the relay's client listener. Default nul.
	Framing relay.Framing
	// UnicastRate and Unicasts set each step's unicast series: that many
	// stamped pushes to random clients, paced. Defaults 500/s and 500.
	UnicastRate int
	Unicasts    int
	// StepTimeout bounds each step's connecting and each measurement.
	// Default 60 s.
	StepTimeout time.Duration
	// RelayCommand starts the relay; default DefaultRelayCommand().
	RelayCommand []string
	// LoadgenCommand starts the load generator's workers (it is run with
	// loadgen.WorkerArg); default this executable's `loadgen`.
	LoadgenCommand []string
	// Stderr receives progress lines and the relay's log. Default os.Stderr.
	Stderr io.Writer
}

// CapacityStep is what one step of the ramp measured.
type CapacityStep struct {
	Conns       int              `json:"conns"`       // connections the step holds when complete
	Established int              `json:"established"` // connections held after the step
	AcceptTime  time.Duration    `json:"accept_time_ns"`
	AcceptRate  float64          `json:"accept_rate_per_s"` // of this step's new connections
	RelayRSS    float64          `json:"relay_rss_per_conn"`
	RelayHeap   float64          `json:"relay_heap_per_conn"`
	Kernel      float64          `json:"kernel_per_conn"` // per client connection: both loopback ends
	Broadcast   time.Duration    `json:"broadcast_time_to_last_ns"`
	Delivered   int              `json:"broadcast_delivered"`
	Unicast     loadgen.Summary  `json:"unicast"`
	LoadgenCPU  time.Duration    `json:"loadgen_cpu_ns"` // during this step
	Failures    map[string]int64 `json:"failures,omitempty"`
	Counters    HostCounters     `json:"counters"`
}

// CapacityResult is a ramp's report.
type CapacityResult struct {
	Machine     Machine        `json:"machine"`
	Options     string         `json:"options"`
	Steps       []CapacityStep `json:"steps"`
	Wall        Wall           `json:"wall"`
	Interrupted bool           `json:"interrupted,omitempty"`
	Started     time.Time      `json:"started"`
}

func (o CapacityOptions) withDefaults() (CapacityOptions, error) {
	if o.Target == 0 {
		o.Target = 50000
	}
	if len(o.Steps) == 0 {
		for _, n := range []int{1000, 2000, 5000, 10000} {
			if n <= o.Target {
				o.Steps = append(o.Steps, n)
			}
		}
		for n := 20000; n <= o.Target; n += 10000 {
			o.Steps = append(o.Steps, n)
		}
		if len(o.Steps) == 0 || o.Steps[len(o.Steps)-1] != o.Target {
			o.Steps = append(o.Steps, o.Target)
		}
	}
	for i, n := range o.Steps {
		if n <= 0 || (i > 0 && n <= o.Steps[i-1]) {
			return o, fmt.Errorf("bench: capacity: steps %v: want increasing positive counts", o.Steps)
		}
	}
	if o.UnicastRate == 0 {
		o.UnicastRate = 500
	}
	if o.Unicasts == 0 {
		o.Unicasts = 500
	}
	if o.StepTimeout == 0 {
		o.StepTimeout = 60 * time.Second
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if len(o.RelayCommand) == 0 {
		cmd, err := DefaultRelayCommand()
		if err != nil {
			return o, err
		}
		o.RelayCommand = cmd
	}
	return o, nil
}

// windowCollector merges the latency windows the load generator's runs
// report, so a measurement can take what arrived since it began.
type windowCollector struct {
	mu       sync.Mutex
	hist     loadgen.Histogram
	cpu      map[int]time.Duration    // latest CPU per run
	failedBy map[int]map[string]int64 // latest failures per run
	progress map[int]loadgen.Progress
}

func (w *windowCollector) callback(run int) func(loadgen.Progress) {
	return func(p loadgen.Progress) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if p.Window != nil {
			w.hist.Merge(p.Window)
		}
		w.cpu[run] = p.CPU
		w.failedBy[run] = p.FailedBy
		w.progress[run] = p
	}
}

// take returns the merged window and starts a new one.
func (w *windowCollector) take() loadgen.Histogram {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.hist
	w.hist = loadgen.Histogram{}
	return h
}

func (w *windowCollector) totals() (cpu time.Duration, failed map[string]int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	failed = map[string]int64{}
	for _, c := range w.cpu {
		cpu += c
	}
	for _, m := range w.failedBy {
		for k, v := range m {
			failed[k] += v
		}
	}
	return cpu, failed
}

func (w *windowCollector) run(run int) (loadgen.Progress, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	p, ok := w.progress[run]
	return p, ok
}

// RunCapacity ramps connections to a real relay step by step, measuring
// each step, until the target or the first wall, which it names with its
// evidence and the doctor's fix. It stops early, with a partial report,
// when ctx ends. Everything it starts it stops.
func RunCapacity(ctx context.Context, opts CapacityOptions) (*CapacityResult, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	say := func(format string, args ...any) { fmt.Fprintf(opts.Stderr, "bench capacity: "+format+"\n", args...) }
	res := &CapacityResult{Machine: readMachine(), Started: time.Now().UTC(),
		Options: fmt.Sprintf("steps %v, target %d, %s framing, %d unicasts at %d/s per step", opts.Steps, opts.Target, opts.Framing, opts.Unicasts, opts.UnicastRate)}
	relayLog := &prefixWriter{w: opts.Stderr, prefix: "relay: "}
	p, err := startRelayProc(append(append([]string(nil), opts.RelayCommand...), "--framing", opts.Framing.String()), nil, relayLog)
	if err != nil {
		return nil, err
	}
	defer p.stop()
	base, err := p.settledMetrics(ctx)
	if err != nil {
		return nil, err
	}
	kernel0, _ := readKernel()

	col := &windowCollector{cpu: map[int]time.Duration{}, failedBy: map[int]map[string]int64{}, progress: map[int]loadgen.Progress{}}
	var runs sync.WaitGroup
	runCtx, stopRuns := context.WithCancel(context.Background())
	defer func() {
		stopRuns()
		runs.Wait()
	}()
	held := 0
	prevCPU := time.Duration(0)
	prevFailed := map[string]int64{}
	prevRejected := base.sum(`pushrelay_connections_rejected_total{reason="max_conns"}`)
	res.Wall = Wall{ID: WallNone, Name: wallNames[WallNone]}
	for i, target := range opts.Steps {
		if ctx.Err() != nil {
			res.Interrupted = true
			break
		}
		delta := target - held
		say("step %d: %d connections (%d new)", i+1, target, delta)
		before := ReadHostCounters()
		start := time.Now()
		runs.Add(1)
		go func(run int) {
			defer runs.Done()
			loadgen.Run(runCtx, loadgen.Options{
				Target: p.addr, Conns: delta, Framing: opts.Framing,
				Duration: 24 * time.Hour, Deadline: 24 * time.Hour,
				Executable: opts.LoadgenCommand,
				Progress:   col.callback(run),
			})
		}(i)
		// Wait until this step's connects have all settled. The accept
		// time comes from the relay's own counters, polled every 20 ms:
		// the load generator reports only twice a second.
		deadline := time.Now().Add(opts.StepTimeout)
		acceptedAt := time.Time{}
		for {
			if acceptedAt.IsZero() {
				if m, err := p.metrics(ctx); err == nil {
					done := m.sum("pushrelay_connections_accepted_total") + m.sum("pushrelay_connections_rejected_total") -
						base.sum("pushrelay_connections_accepted_total") - base.sum("pushrelay_connections_rejected_total")
					if int(done) >= target {
						acceptedAt = time.Now()
					}
				}
			}
			pr, ok := col.run(i)
			if ok && pr.Phase == "holding" {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if acceptedAt.IsZero() {
			acceptedAt = time.Now()
		}
		step := CapacityStep{Conns: target, AcceptTime: acceptedAt.Sub(start)}
		time.Sleep(time.Second) // settle
		m, err := p.settledMetrics(ctx)
		if err != nil {
			return res, err
		}
		open := int(m.sum("pushrelay_connections_open"))
		step.Established = open
		if newConns := open - held; newConns > 0 {
			step.AcceptRate = float64(newConns) / step.AcceptTime.Seconds()
		}
		if open > 0 {
			step.RelayRSS = (m.sum("pushrelay_process_resident_bytes") - base.sum("pushrelay_process_resident_bytes")) / float64(open)
			step.RelayHeap = (m.sum("pushrelay_go_heap_inuse_bytes") - base.sum("pushrelay_go_heap_inuse_bytes")) / float64(open)
			if k, err := readKernel(); err == nil {
				step.Kernel = float64(k.Total()-kernel0.Total()) / float64(open)
			}
		}
		// One broadcast, timed to the last client.
		col.take()
		bstart := time.Now()
		if _, err := p.client.Broadcast(ctx, StampedPayload(nil, time.Now(), 64)); err == nil {
			for time.Since(bstart) < opts.StepTimeout {
				time.Sleep(100 * time.Millisecond)
				col.mu.Lock()
				n := col.hist.Count()
				col.mu.Unlock()
				if int(n) >= open {
					break
				}
			}
		}
		bw := col.take()
		step.Broadcast, step.Delivered = bw.Max(), int(bw.Count())
		// A paced series of unicasts to random clients.
		step.Unicast = unicastSeries(ctx, p, opts, col)
		cpu, failed := col.totals()
		step.LoadgenCPU = cpu - prevCPU
		prevCPU = cpu
		step.Failures = countsSince(prevFailed, failed)
		prevFailed = failed
		step.Counters = ReadHostCounters()
		res.Steps = append(res.Steps, step)
		say("step %d: %d held, accept %.0f/s, relay %.0f B RSS and %.0f B heap per connection, kernel %.0f B, broadcast to the last client %v, unicast p50 %v p99 %v",
			i+1, open, step.AcceptRate, step.RelayRSS, step.RelayHeap, step.Kernel, step.Broadcast.Round(time.Microsecond), step.Unicast.P50, step.Unicast.P99)

		rejected := m.sum(`pushrelay_connections_rejected_total{reason="max_conns"}`)
		ev := WallEvidence{
			Target: target, Established: open, Failures: step.Failures,
			RelayRejectedFull: uint64(rejected - prevRejected), RelayMaxConns: int(m.sum("pushrelay_connections_max")),
			RelayNofile: procNofile(p.pid), Before: before, After: step.Counters,
		}
		prevRejected = rejected
		if w := NameWall(ev); w.ID != WallNone {
			if h, err := doctor.Read("/"); err == nil {
				w.AddFix(doctor.Analyze(h, doctor.Options{Target: int64(opts.Target)}))
			}
			res.Wall = w
			say("stopped at %d connections: %s", open, w.Name)
			break
		}
		held = open
	}
	return res, nil
}

// unicastSeries pushes opts.Unicasts stamped messages to random clients at
// opts.UnicastRate and returns their latency.
func unicastSeries(ctx context.Context, p *relayProc, opts CapacityOptions, col *windowCollector) loadgen.Summary {
	var ids []string
	for cursor := ""; ; {
		page, next, err := p.client.List(ctx, cursor, relay.MaxListPage)
		if err != nil {
			return loadgen.Summary{}
		}
		ids = append(ids, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(ids) == 0 {
		return loadgen.Summary{}
	}
	col.take()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	every := time.Second / time.Duration(opts.UnicastRate)
	next := time.Now()
	var buf []byte
	for k := 0; k < opts.Unicasts && ctx.Err() == nil; k++ {
		time.Sleep(time.Until(next))
		next = next.Add(every)
		buf = StampedPayload(buf[:0], time.Now(), 64)
		p.client.SendNoReply(ids[rng.IntN(len(ids))], buf)
	}
	deadline := time.Now().Add(opts.StepTimeout)
	for time.Now().Before(deadline) {
		col.mu.Lock()
		n := col.hist.Count()
		col.mu.Unlock()
		if int(n) >= opts.Unicasts {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	h := col.take()
	return h.Summarize()
}

// procNofile reads a process's RLIMIT_NOFILE from /proc/PID/limits.
func procNofile(pid int) [2]uint64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return [2]uint64{}
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(line)
			if len(f) >= 5 {
				var soft, hard uint64
				fmt.Sscan(f[3], &soft)
				fmt.Sscan(f[4], &hard)
				return [2]uint64{soft, hard}
			}
		}
	}
	return [2]uint64{}
}

// prefixWriter prefixes each write (a line of the relay's log).
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, err := io.WriteString(p.w, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// WriteCapacity writes results.json, results.md and chart.svg into dir.
func WriteCapacity(dir string, res *CapacityResult, command string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(CapacityMarkdown(res, command)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "chart.svg"), []byte(CapacitySVG(res)), 0o644)
}

// CapacityMarkdown renders the ramp as Markdown tables.
func CapacityMarkdown(res *CapacityResult, command string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### Capacity ramp\n\n```sh\n%s\n```\n\nMeasured %s on %s. %s.\n\n", command, res.Started.Format("2006-01-02 15:04 UTC"), res.Machine, res.Options)
	b.WriteString("| step | held | accept rate | relay RSS/conn | relay heap/conn | kernel/conn | broadcast to last client | delivered | unicast p50 | unicast p99 | load generator CPU | failures |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for i, s := range res.Steps {
		fmt.Fprintf(&b, "| %d | %d of %d | %.0f/s | %.0f B | %.0f B | %.0f B | %v | %d | %v | %v | %v | %s |\n",
			i+1, s.Established, s.Conns, s.AcceptRate, s.RelayRSS, s.RelayHeap, s.Kernel,
			s.Broadcast.Round(time.Microsecond), s.Delivered, s.Unicast.P50.Round(time.Microsecond), s.Unicast.P99.Round(time.Microsecond),
			s.LoadgenCPU.Round(time.Millisecond), failureList(s.Failures))
	}
	fmt.Fprintf(&b, "\n**Wall: %s**", res.Wall.Name)
	if res.Wall.ID != WallNone {
		fmt.Fprintf(&b, " at %d connections.\n\n", res.Wall.At)
		for _, e := range res.Wall.Evidence {
			fmt.Fprintf(&b, "- %s\n", e)
		}
		if len(res.Wall.Fix) > 0 {
			b.WriteString("\nThe fix (from `pushrelay doctor`):\n\n```\n" + strings.Join(res.Wall.Fix, "\n") + "\n```\n")
		}
		if res.Wall.Around != "" {
			fmt.Fprintf(&b, "\n%s\n", res.Wall.Around)
		}
	} else {
		b.WriteString(".\n")
	}
	if res.Interrupted {
		b.WriteString("\nInterrupted: a partial report.\n")
	}
	b.WriteString("\n- Per-connection figures are the relay process's growth since it held no connection, over the connections held; the kernel's is the host's slab and TCP buffer growth over the client connections, both loopback ends included.\n")
	return b.String()
}

// CapacitySVG draws connections against memory per connection and against
// the broadcast's time to the last client: two panels a browser opens.
func CapacitySVG(res *CapacityResult) string {
	const w, h, pad = 720, 310, 60
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, 2*h)
	maxX := 1
	for _, s := range res.Steps {
		maxX = max(maxX, s.Established)
	}
	panel := func(top int, title, unit string, series []struct {
		name  string
		color string
		y     func(CapacityStep) float64
	}) {
		maxY := 1.0
		for _, sr := range series {
			for _, s := range res.Steps {
				maxY = max(maxY, sr.y(s))
			}
		}
		maxY *= 1.35 // headroom for the legend
		x0, y0, x1, y1 := pad, top+h-pad/2, w-pad/2, top+pad/2
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="14">%s</text>`+"\n", pad, top+20, title)
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/><line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", x0, y0, x1, y0, x0, y0, x0, y1)
		ym := (y0 + y1) / 2
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#ddd"/>`+"\n", x0, ym, x1, ym)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%.0f %s</text><text x="%d" y="%d" text-anchor="end">%.0f</text><text x="%d" y="%d" text-anchor="end">0</text>`+"\n", x0-4, y1+4, maxY, unit, x0-4, ym+4, maxY/2, x0-4, y0)
		for _, s := range res.Steps {
			px := float64(x0) + float64(x1-x0)*float64(s.Established)/float64(maxX)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" font-size="10">%d</text>`+"\n", px, y0+14, s.Established)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">client connections held</text>`+"\n", x1, y0+28)
		for k, sr := range series {
			var pts []string
			for _, s := range res.Steps {
				px := float64(x0) + float64(x1-x0)*float64(s.Established)/float64(maxX)
				py := float64(y0) - float64(y0-y1)*sr.y(s)/maxY
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, py))
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px, py, sr.color)
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", sr.color, strings.Join(pts, " "))
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s" text-anchor="end">%s</text>`+"\n", x1, y1+14*(k+1), sr.color, sr.name)
		}
	}
	type series = struct {
		name  string
		color string
		y     func(CapacityStep) float64
	}
	panel(0, "Memory per connection", "B", []series{
		{"relay RSS", "#1f77b4", func(s CapacityStep) float64 { return s.RelayRSS }},
		{"relay Go heap", "#2ca02c", func(s CapacityStep) float64 { return s.RelayHeap }},
		{"kernel (both ends)", "#ff7f0e", func(s CapacityStep) float64 { return s.Kernel }},
	})
	panel(h, "Broadcast: time to the last client", "ms", []series{
		{"relay", "#d62728", func(s CapacityStep) float64 { return float64(s.Broadcast) / 1e6 }},
	})
	b.WriteString("</svg>\n")
	return b.String()
}

// ErrNoSteps is returned when a ramp could not measure a single step.
var ErrNoSteps = errors.New("bench: capacity: no step completed")
