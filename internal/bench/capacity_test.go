package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// tinyCapacity is a ramp small and short enough for CI: every series runs,
// each briefly.
func tinyCapacity(t *testing.T, steps ...int) CapacityOptions {
	cmd := testRelayCommand(t)
	return CapacityOptions{
		Steps: steps, Target: steps[len(steps)-1],
		Broadcasts: 3, Unicasts: 50, UnicastRate: 500, Throughput: 200 * time.Millisecond,
		Settle: 100 * time.Millisecond, StepTimeout: 20 * time.Second,
		Procs:          Procs{RelayCommand: cmd, ChildCommand: testChildCommand(t), Stderr: testWriter{t}},
		LoadgenCommand: []string{cmd[0], "loadgen"},
	}
}

// checkServerStep checks that one server's step is whole: it held its
// clients throughout, every frame pushed was read, and no figure is
// missing.
func checkServerStep(t *testing.T, step int, s *ServerStep, opts CapacityOptions) {
	t.Helper()
	name := s.Server
	if s.Held != s.Want || s.HeldAfter != s.Held || len(s.Failures) != 0 || len(s.PushErrors) != 0 {
		t.Errorf("step %d, %s: held %d of %d, %d after; failures %v, push errors %v; want all held, none failed", step, name, s.Held, s.Want, s.HeldAfter, s.Failures, s.PushErrors)
	}
	n := int64(s.Held)
	if len(s.Broadcasts) != opts.Broadcasts || s.BroadcastExpected != int64(opts.Broadcasts)*n || s.BroadcastDelivered != s.BroadcastExpected {
		t.Errorf("step %d, %s: %d broadcasts, %d frames read of %d expected; want %d broadcasts × %d clients", step, name, len(s.Broadcasts), s.BroadcastDelivered, s.BroadcastExpected, opts.Broadcasts, n)
	}
	for _, ttl := range s.Broadcasts {
		if ttl <= 0 {
			t.Errorf("step %d, %s: broadcast times to last %v; want each positive", step, name, s.Broadcasts)
		}
	}
	if s.UnicastSent != int64(opts.Unicasts) || s.UnicastAccepted != s.UnicastSent || int64(s.Unicast.Count) != s.UnicastAccepted {
		t.Errorf("step %d, %s: %d unicasts sent, %d taken, %d read; want %d of each", step, name, s.UnicastSent, s.UnicastAccepted, s.Unicast.Count, opts.Unicasts)
	}
	if s.ThroughputAccepted <= 0 || s.ThroughputSent != s.ThroughputAccepted || s.ThroughputDelivered != s.ThroughputAccepted {
		t.Errorf("step %d, %s: throughput %d sent, %d taken, %d read; want every push taken and read", step, name, s.ThroughputSent, s.ThroughputAccepted, s.ThroughputDelivered)
	}
	if read, want := s.Delivered(); read != want {
		t.Errorf("step %d, %s: %d frames read of %d expected", step, name, read, want)
	}
	// Memory per connection is left unchecked here: with a few hundred
	// clients on a shared host, what else runs moves the kernel's figure
	// more than the clients do.
	checkFinite(t, name, "kernel/conn", s.KernelPerConn)
	for what, v := range map[string]float64{
		"accept rate": s.AcceptRate, "broadcast time to last": float64(s.BroadcastTTL),
		"unicast p50": float64(s.Unicast.P50), "unicast p99": float64(s.Unicast.P99), "unicasts/s": s.Throughput,
	} {
		checkFinite(t, name, what, v)
		if v <= 0 {
			t.Errorf("step %d, %s: %s = %v, want positive", step, name, what, v)
		}
	}
	if s.Unicast.P50 > s.Unicast.P99 {
		t.Errorf("step %d, %s: unicast p50 %v above p99 %v", step, name, s.Unicast.P50, s.Unicast.P99)
	}
}

// checkCapacityFiles writes the report and checks each file is well formed:
// the JSON decodes with the machine and every step, the Markdown holds
// wants, and the chart is XML a browser will parse.
func checkCapacityFiles(t *testing.T, res *CapacityResult, wants ...string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "out")
	if err := WriteCapacity(dir, res, "pushrelay bench capacity --steps 100,200"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back CapacityResult
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if back.Machine.Kernel == "" || back.Machine.Cores <= 0 || back.Machine.MemTotalBytes <= 0 || back.Machine.RlimitNofile == 0 ||
		back.Nofile[ServerRelay][0] == 0 || len(back.Steps) != len(res.Steps) || back.Interrupted != res.Interrupted {
		t.Errorf("results.json: machine %+v, limits %v, %d steps (want %d), interrupted %v", back.Machine, back.Nofile, len(back.Steps), len(res.Steps), back.Interrupted)
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range wants {
		if !strings.Contains(string(md), w) {
			t.Errorf("results.md lacks %q:\n%s", w, md)
		}
	}
	sum, err := os.ReadFile(filepath.Join(dir, "summary.md"))
	if err != nil || (len(res.Steps) > 0 && !bytes.Contains(md, sum)) {
		t.Errorf("summary.md: %v, or results.md does not end with it:\n%s", err, sum)
	}
	svg, err := os.ReadFile(filepath.Join(dir, "chart.svg"))
	if err != nil {
		t.Fatal(err)
	}
	checkSVG(t, svg, len(res.Steps) > 0)
}

// checkSVG parses the chart as XML: an svg root, and a polyline per series
// drawn when there are steps.
func checkSVG(t *testing.T, svg []byte, lines bool) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(svg))
	var root string
	polylines := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("chart.svg is not well-formed XML: %v\n%s", err, svg)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
				if se.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("chart.svg: root in namespace %q, want SVG's", se.Name.Space)
				}
			}
			if se.Name.Local == "polyline" {
				polylines++
			}
		}
	}
	if root != "svg" || (lines && polylines < 5) {
		t.Errorf("chart.svg: root %q, %d polylines; want svg and a line per series", root, polylines)
	}
}

// TestCapacityTinyRunIsConsistent ramps the relay binary, the baseline and
// the floor to 100 and then 200 clients each, with 3 broadcasts and paced
// unicasts at each step on the way up, and unicasts as fast as taken on
// the way down: every frame pushed is read, every figure is there, and the
// report files are well formed.
func TestCapacityTinyRunIsConsistent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := tinyCapacity(t, 100, 200)
	var seen []int
	opts.OnStep = func(s CapacityStep) { seen = append(seen, s.Conns) }
	res, err := RunCapacity(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 2 || len(seen) != 2 || res.Wall.ID != WallNone || res.Interrupted || len(res.ServerWalls) != 0 {
		t.Fatalf("%d steps (OnStep saw %v), wall %+v, server walls %v, interrupted %v; want 2 steps and no wall", len(res.Steps), seen, res.Wall, res.ServerWalls, res.Interrupted)
	}
	for i, s := range res.Steps {
		if s.Baseline == nil || s.Floor == nil || s.Loopback == nil {
			t.Fatalf("step %d: baseline %v, floor %v, loopback probe %v; want all three", i+1, s.Baseline, s.Floor, s.Loopback)
		}
		for _, x := range s.servers() {
			if x.Want != s.Conns {
				t.Errorf("step %d, %s: wanted %d, want the step's %d", i+1, x.Server, x.Want, s.Conns)
			}
			checkServerStep(t, i+1, x, opts)
		}
		if s.Relay.HeapPerConn <= 0 || s.Baseline.HeapPerConn <= 0 {
			t.Errorf("step %d: Go heap per connection: relay %v, baseline %v; want both positive", i+1, s.Relay.HeapPerConn, s.Baseline.HeapPerConn)
		}
		if s.Loopback.Count != uint64(opts.Unicasts) || s.Loopback.P50 <= 0 {
			t.Errorf("step %d: loopback probe %+v; want %d timed writes", i+1, *s.Loopback, opts.Unicasts)
		}
		r := s.Ratios
		for what, v := range map[string]float64{
			"broadcast ÷ baseline": r.Broadcast.Baseline, "broadcast ÷ floor": r.Broadcast.Floor,
			"unicasts/s ÷ baseline": r.Throughput.Baseline, "unicasts/s ÷ floor": r.Throughput.Floor,
			"p50 ÷ baseline": r.UnicastP50.Baseline, "p99 ÷ floor": r.UnicastP99.Floor,
			"accept ÷ baseline": r.Accept.Baseline, "accept ÷ floor": r.Accept.Floor,
			"heap ÷ baseline": r.Heap.Baseline, "p50 ÷ bare loopback": r.LoopbackP50,
		} {
			checkFinite(t, "ratios", what, v)
			if v <= 0 {
				t.Errorf("step %d: %s = %v, want a ratio", i+1, what, v)
			}
		}
		want := ratio(float64(s.Relay.BroadcastTTL), float64(s.Baseline.BroadcastTTL))
		if r.Broadcast.Baseline != want {
			t.Errorf("step %d: broadcast ratio %v, want relay ÷ baseline = %v", i+1, r.Broadcast.Baseline, want)
		}
	}
	checkCapacityFiles(t, res, "| 1 | floor | 100 of 100 |", "| 2 | relay | 200 of 200 |", "| 2 | baseline | 200 of 200 |", "| 2 | floor | 200 of 200 |",
		"Summary: the relay beside the baseline, 200 clients each", "Wall: none")
}

// TestCapacityRampNamesEachWall ramps in steps of 100, 200 and 300 a real
// relay whose --max-conns is 250, beside a baseline and a floor whose
// open-file limit is 160. Step 1 measures all three. At step 2 the baseline
// and the floor cannot hold the relay's 200: their walls are named, with
// their file limit as evidence, and the ramp goes on without them. At step
// 3 the relay runs into its own limit, and the report names it with its
// evidence and the doctor's fix. On the way back down the relay's
// unicasts as fast as taken are measured at each step, its clients
// closing step by step.
func TestCapacityRampNamesEachWall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := tinyCapacity(t, 100, 200, 300)
	opts.Broadcasts, opts.Unicasts = 1, -1
	opts.StepTimeout = 3 * time.Second
	opts.RelayCommand = append(opts.RelayCommand, "--max-conns", "250")
	opts.ChildCommand = append([]string{"prlimit", "--nofile=160"}, opts.ChildCommand...)
	res, err := RunCapacity(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 3 {
		t.Fatalf("%d steps measured, want 3: %+v", len(res.Steps), res.Steps)
	}
	s1, s2, s3 := res.Steps[0], res.Steps[1], res.Steps[2]
	if s1.Baseline == nil || s1.Floor == nil {
		t.Fatalf("step 1: baseline %v, floor %v; want both", s1.Baseline, s1.Floor)
	}
	for _, x := range s1.servers() {
		if x.Held != 100 || x.BroadcastDelivered != 100 || x.BroadcastExpected != 100 {
			t.Errorf("step 1, %s: %d held, broadcast read by %d of %d; want 100 of 100", x.Server, x.Held, x.BroadcastDelivered, x.BroadcastExpected)
		}
	}
	if s2.Relay.Held != 200 || s2.Relay.BroadcastDelivered != 200 || s2.Baseline != nil || s2.Floor != nil {
		t.Fatalf("step 2: relay held %d, its broadcast read by %d; baseline %v, floor %v; want the relay alone at 200", s2.Relay.Held, s2.Relay.BroadcastDelivered, s2.Baseline, s2.Floor)
	}
	for _, name := range []string{ServerBaseline, ServerFloor} {
		w, ok := res.ServerWalls[name]
		if !ok || w.At >= 200 || w.At < 100 || !strings.Contains(strings.Join(w.Evidence, " "), "RLIMIT_NOFILE is soft 160, hard 160") {
			t.Errorf("%s's wall: %+v (named %v); want it below 200 with its file limit as evidence", name, w, ok)
		}
	}
	if s3.Relay.Held != 250 || s3.Relay.BroadcastDelivered != 250 {
		t.Errorf("step 3: relay held %d, its broadcast read by %d; want 250", s3.Relay.Held, s3.Relay.BroadcastDelivered)
	}
	if res.Wall.ID != WallNofile || res.Wall.At != 250 || !strings.Contains(strings.Join(res.Wall.Evidence, " "), "closed 50 connections over --max-conns 250") {
		t.Fatalf("wall %+v", res.Wall)
	}
	for i, s := range res.Steps {
		r := s.Relay
		if r.Throughput <= 0 || r.ThroughputAccepted <= 0 || r.ThroughputDelivered != r.ThroughputAccepted || r.HeldAfter != r.Held {
			t.Errorf("step %d, relay: %v unicasts/s, %d of %d read, %d held after of %d; want every one read and the step's clients held", i+1, r.Throughput, r.ThroughputDelivered, r.ThroughputAccepted, r.HeldAfter, r.Held)
		}
	}
	// A server stopped at its wall is gone by the time the ramp comes
	// back down.
	if s1.Baseline.ThroughputSent != 0 || s1.Ratios.Throughput.Baseline != 0 {
		t.Errorf("step 1, baseline: %d unicasts sent as fast as taken, ratio %v; want none from a server stopped at its wall", s1.Baseline.ThroughputSent, s1.Ratios.Throughput.Baseline)
	}
	checkCapacityFiles(t, res, "Wall: open files per process", "The baseline's wall", "The floor's wall", "| 3 | relay | 250 of 300 |")
}

// TestCapacityInterruptLeavesAPartialReport ends the run's context once the
// first step is measured: RunCapacity returns the step it completed, marked
// interrupted, and the report files are whole.
func TestCapacityInterruptLeavesAPartialReport(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := tinyCapacity(t, 100, 200, 300)
	opts.Servers = []string{ServerRelay, ServerBaseline}
	opts.Broadcasts, opts.Unicasts, opts.Throughput = 1, -1, -1
	opts.OnStep = func(CapacityStep) { cancel() }
	res, err := RunCapacity(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Interrupted || len(res.Steps) != 1 || res.Steps[0].Baseline == nil {
		t.Fatalf("interrupted %v, %d steps; want 1 whole step, interrupted", res.Interrupted, len(res.Steps))
	}
	checkCapacityFiles(t, res, "Interrupted", "| 1 | baseline | 100 of 100 |")
}

func TestCapacityOptionsRejectBadServers(t *testing.T) {
	for _, servers := range [][]string{{ServerBaseline}, {ServerRelay, ServerRelay}, {ServerRelay, ServerBaseline, ServerBaseline}, {ServerRelay, ServerAccept4}} {
		if _, err := (CapacityOptions{Servers: servers, Procs: Procs{RelayCommand: []string{"x"}, ChildCommand: []string{"x"}}}).withDefaults(); err == nil {
			t.Errorf("servers %v: no error", servers)
		}
	}
	o, err := CapacityOptions{Target: 25000, Procs: Procs{RelayCommand: []string{"x"}, ChildCommand: []string{"x"}}}.withDefaults()
	if want := []int{1000, 2000, 5000, 10000, 20000, 25000}; err != nil || !slices.Equal(o.Steps, want) {
		t.Errorf("default steps to 25,000: %v, %v; want %v", o.Steps, err, want)
	}
}

// TestCapacityReportWithoutSteps renders a run interrupted before its first
// step: the files are still well formed.
func TestCapacityReportWithoutSteps(t *testing.T) {
	res := &CapacityResult{Machine: readMachine(), Interrupted: true, Nofile: map[string][2]uint64{ServerRelay: {1, 1}}, Wall: Wall{ID: WallNone, Name: wallNames[WallNone]}}
	checkCapacityFiles(t, res, "Interrupted")
	if SummaryMarkdown(res) != "" {
		t.Error("a summary without a step")
	}
}

func TestLoopbackProbe(t *testing.T) {
	s, err := LoopbackProbe(50, 64, time.Millisecond, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.Count != 50 || s.P50 <= 0 || s.P50 > s.Max {
		t.Errorf("probe %+v; want 50 timed writes", s)
	}
}
