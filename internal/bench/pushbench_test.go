package bench

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/pkg/stamp"
	"github.com/pushrelay/pushrelay/relay"
)

func TestChildFloorAndBroadcastCommands(t *testing.T) {
	c, err := startChild(testChildCommand(t), ServerFloor, relay.FramingNUL, nil, os.Stderr)
	if err != nil {
		t.Fatalf("startChild: %v", err)
	}
	defer func() {
		if err := c.quit(); err != nil {
			t.Errorf("quit: %v", err)
		}
	}()
	clients := make([]*testClient, 3)
	seen := map[string]bool{}
	for i := range clients {
		clients[i] = dialTest(t, c.addr.String(), relay.FramingNUL, 0) // checks the ID frame
		if seen[clients[i].id] {
			t.Fatalf("floor handed out ID %q twice", clients[i].id)
		}
		seen[clients[i].id] = true
	}
	if err := waitConns(context.Background(), c, 3, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	var run FloorRun
	if err := c.call("floor-sweep 40", &run); err != nil || run.Error != "" {
		t.Fatalf("floor-sweep: %v %s", err, run.Error)
	}
	if run.Writes != 3 || run.Errors != 0 || run.Bytes != 3*41 {
		t.Errorf("floor-sweep: %+v; want 3 writes of 41 bytes", run)
	}
	for i, cl := range clients {
		got, err := cl.next(5 * time.Second)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if _, ok := stamp.Parse(got); !ok || len(got) != 40 {
			t.Errorf("client %d read %q; want a 40-byte stamped payload", i, got)
		}
	}
	for _, cmd := range []string{"floor-rate 0.05 64", "floor-paced 200 0.05 64"} {
		run = FloorRun{}
		if err := c.call(cmd, &run); err != nil || run.Error != "" {
			t.Fatalf("%s: %v %s", cmd, err, run.Error)
		}
		if run.Writes <= 0 || run.Errors != 0 || run.Seconds <= 0 {
			t.Errorf("%s: %+v; want writes and no errors", cmd, run)
		}
	}
	for _, bad := range []string{"floor-rate 0 64", "floor-paced -1 1 64", "floor-sweep", "floor-sweep 99999999"} {
		run = FloorRun{}
		if err := c.call(bad, &run); err != nil || run.Error == "" {
			t.Errorf("%q: got %v, %+v; want an error reply", bad, err, run)
		}
	}
	var br BroadcastReply
	if err := c.call("broadcast 32", &br); err != nil || br.Error == "" {
		t.Errorf("broadcast on the floor: got %v, %+v; want an error reply", err, br)
	}
	// The floor never reads: it counts a client gone once pruned.
	clients[0].conn.Close()
	waitFor(t, "the floor to prune a closed client", func() bool {
		st, err := c.count()
		if err != nil || c.do("floor-prune") != nil {
			return false
		}
		return st.Conns == 2 && st.Accepted == 3
	})

	b, err := startChild(testChildCommand(t), ServerBaseline, relay.FramingNUL, nil, os.Stderr)
	if err != nil {
		t.Fatalf("startChild: %v", err)
	}
	defer func() {
		if err := b.quit(); err != nil {
			t.Errorf("quit: %v", err)
		}
	}()
	cl := dialTest(t, b.addr.String(), relay.FramingNUL, 0)
	if err := waitConns(context.Background(), b, 1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	br = BroadcastReply{}
	if err := b.call("broadcast 32", &br); err != nil || br.Error != "" || br.Queued != 1 {
		t.Fatalf("baseline broadcast: %v, %+v; want 1 queued", err, br)
	}
	if got, err := cl.next(5 * time.Second); err != nil || len(got) != 32 || !strings.HasPrefix(string(got), stamp.Prefix) {
		t.Errorf("baseline client read %q, %v; want a 32-byte stamped payload", got, err)
	}
	// The baseline's unicast runs: every push queued reaches the one
	// client, stamped, in order of queueing.
	for _, cmd := range []string{"send-paced 200 0.05 48", "send-rate 0.05 48"} {
		var run FloorRun
		if err := b.call(cmd, &run); err != nil || run.Error != "" {
			t.Fatalf("%s: %v %s", cmd, err, run.Error)
		}
		if run.Writes <= 0 || run.Errors != 0 || run.Seconds <= 0 || run.Bytes != 48*run.Writes {
			t.Errorf("%s: %+v; want 48-byte pushes and no errors", cmd, run)
		}
		if cmd == "send-paced 200 0.05 48" && run.Writes != 10 {
			t.Errorf("%s: %d pushes, want 10", cmd, run.Writes)
		}
		for i := range run.Writes {
			got, err := cl.next(5 * time.Second)
			if _, ok := stamp.Parse(got); err != nil || !ok || len(got) != 48 {
				t.Fatalf("%s: push %d of %d: read %q, %v; want a 48-byte stamped payload", cmd, i+1, run.Writes, got, err)
			}
		}
	}
	for _, bad := range []string{"send-rate 0 64", "send-paced 0 1 64", "send-paced 10 1", "send-rate 1 99999999"} {
		var run FloorRun
		if err := b.call(bad, &run); err != nil || run.Error == "" {
			t.Errorf("%q: got %v, %+v; want an error reply", bad, err, run)
		}
	}
	run = FloorRun{}
	if err := c.call("send-rate 0.05 64", &run); err != nil || run.Error == "" {
		t.Errorf("send-rate on the floor: got %v, %+v; want an error reply", err, run)
	}
}

func TestRunIngressSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 200
	res, err := RunIngress(ctx, IngressOptions{
		Conns:    []int{n},
		Rate:     500,
		Duration: 300 * time.Millisecond,
		Pause:    time.Millisecond,
		Procs:    Procs{RelayCommand: testRelayCommand(t), ChildCommand: testChildCommand(t), Stderr: testWriter{t}},
	})
	if err != nil {
		t.Fatalf("RunIngress: %v", err)
	}
	if len(res.Sizes) != 1 || len(res.Sizes[0].Phases) != 7 {
		t.Fatalf("sizes = %+v, want one size with 7 phases", res.Sizes)
	}
	for _, p := range res.Sizes[0].Phases {
		name := p.Path + " " + p.Mode
		if p.Accepted <= 0 || p.Sent != p.Accepted || len(p.Errors) != 0 {
			t.Errorf("%s: sent %d, accepted %d, errors %v; want every push accepted", name, p.Sent, p.Accepted, p.Errors)
		}
		if p.Delivered != p.Accepted || p.Missing != 0 {
			t.Errorf("%s: %d delivered of %d accepted; want all", name, p.Delivered, p.Accepted)
		}
		if int64(p.Latency.Count) != p.Delivered {
			t.Errorf("%s: %d latency samples for %d frames; every payload is stamped", name, p.Latency.Count, p.Delivered)
		}
		if p.Mode == ModePaced && p.Accepted != int64(500*0.3) {
			t.Errorf("%s: %d pushes, want 150 (500/s for 0.3 s)", name, p.Accepted)
		}
		if p.Path != PathFloor && (p.MessagesWritten != float64(p.Accepted) || p.Drops != 0) {
			t.Errorf("%s: relay wrote %v messages and dropped %v; want %d and 0", name, p.MessagesWritten, p.Drops, p.Accepted)
		}
		for what, v := range map[string]float64{"accept rate": p.AcceptRate, "delivery rate": p.DeliveryRate, "server CPU/push": p.ServerCPUPerPush} {
			checkFinite(t, name, what, v)
			if v <= 0 {
				t.Errorf("%s: %s = %v, want positive", name, what, v)
			}
		}
	}
	if len(res.Checks) != 4 {
		t.Errorf("%d checks, want 4: %+v", len(res.Checks), res.Checks)
	}
	checkResultFiles(t, res, res.Markdown(), "sizes", "| 200 | relay, Unix ingress |", "| 200 | floor (write(2)) |", "| 200 | relay, HTTP |", "| 200 | relay, HTTP batch |", "HTTP batch pushes accepted/s ÷ Unix", "relay-added latency p99")
}

func TestRunFanoutSmall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const (
		n          = 200
		broadcasts = 3
	)
	res, err := RunFanout(ctx, FanoutOptions{
		Sizes:           []int{n},
		Broadcasts:      broadcasts,
		Warmup:          1,
		Gap:             time.Millisecond,
		CoalesceClients: 100,
		Bursts:          5,
		BusyClients:     n,
		BusyRate:        500,
		BusyDuration:    300 * time.Millisecond,
		Procs:           Procs{RelayCommand: testRelayCommand(t), ChildCommand: testChildCommand(t), Stderr: testWriter{t}},
	})
	if err != nil {
		t.Fatalf("RunFanout: %v", err)
	}
	if len(res.Servers) != 3 {
		t.Fatalf("%d runs, want relay, baseline and floor", len(res.Servers))
	}
	for i, want := range []string{ServerRelay, ServerBaseline, ServerFloor} {
		r := res.Servers[i]
		if r.Server != want || r.Conns != n {
			t.Errorf("run %d: %s with %d clients, want %s with %d", i, r.Server, r.Conns, want, n)
		}
		if len(r.Shots) != broadcasts || r.Expected != broadcasts*n || r.Delivered != r.Expected {
			t.Errorf("%s: %d shots, %d delivered of %d expected; want %d shots and every frame", r.Server, len(r.Shots), r.Delivered, r.Expected, broadcasts)
		}
		for _, s := range r.Shots {
			if s.TimeToLast <= 0 || s.P50 <= 0 || s.P50 > s.TimeToLast || s.Wall <= 0 {
				t.Errorf("%s: shot %+v; want 0 < p50 ≤ time to last", r.Server, s)
			}
		}
		for what, v := range map[string]float64{"deliveries/s": r.DeliveriesPerSec, "CPU/delivery": r.CPUPerDelivery} {
			checkFinite(t, r.Server, what, v)
			if v <= 0 {
				t.Errorf("%s: %s = %v, want positive", r.Server, what, v)
			}
		}
	}
	rl, fl := res.Servers[0], res.Servers[2]
	if rl.MessagesWritten != broadcasts*n || rl.FanoutRecipients != broadcasts*n || rl.LoopRate <= 0 {
		t.Errorf("relay: %v messages written, %v fanout recipients, loop rate %v; want %d, %d and a rate", rl.MessagesWritten, rl.FanoutRecipients, rl.LoopRate, broadcasts*n, broadcasts*n)
	}
	if fl.FloorWritesPerSec <= 0 || fl.FloorCPUPerWrite <= 0 {
		t.Errorf("floor: %v writes/s, %v CPU/write; want both positive", fl.FloorWritesPerSec, fl.FloorCPUPerWrite)
	}
	c := res.Coalesce
	if c == nil {
		t.Fatal("no coalescing result")
	}
	if c.Expected != 5*8*100 || c.Delivered != c.Expected || c.MessagesWritten != float64(c.Expected) || c.Errors != 0 {
		t.Errorf("coalescing: %d delivered, %v written, %d expected, %d errors; want all and no errors", c.Delivered, c.MessagesWritten, c.Expected, c.Errors)
	}
	if c.MessagesPerWrite < 1 || c.MessagesPerWrite > 8 {
		t.Errorf("coalescing: %v messages per write; want 1 to 8", c.MessagesPerWrite)
	}
	if len(res.Busy) != 2 {
		t.Fatalf("%d busy results, want 2", len(res.Busy))
	}
	for _, b := range res.Busy {
		timed := int64(b.Latency.Count + b.BigPoolLatency.Count)
		if b.Broadcasts <= 0 || b.Missing != 0 || b.Accepted != b.Unicasts || timed != b.Accepted || len(b.Errors) != 0 {
			t.Errorf("busy, queue %d: %d broadcasts, %d missing, %d of %d unicasts accepted, %d timed, errors %v; want all", b.Queue, b.Broadcasts, b.Missing, b.Accepted, b.Unicasts, timed, b.Errors)
		}
		if b.Latency.Count != 150 || b.BigPoolLatency.Count != 150 {
			t.Errorf("busy, queue %d: %d unicasts timed at the probes and %d in the big pool; want 150 each (500/s for 0.3 s)", b.Queue, b.Latency.Count, b.BigPoolLatency.Count)
		}
	}
	if len(res.Checks) != 3+2+2 {
		t.Errorf("%d checks, want 7: %+v", len(res.Checks), res.Checks)
	}
	checkResultFiles(t, res, res.Markdown(), "servers", "| 200 | relay |", "| 200 | baseline |", "| 200 | floor |", "messages per write", "queued behind")
}

// checkResultFiles checks the Markdown holds wants, then writes both result
// files and checks them; key is a field results.json must hold besides
// machine.
func checkResultFiles(t *testing.T, v any, md, key string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(md, w) {
			t.Errorf("Markdown lacks %q:\n%s", w, md)
		}
	}
	dir := filepath.Join(t.TempDir(), "out")
	if err := WriteResults(dir, v, md); err != nil {
		t.Fatalf("WriteResults: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if m["machine"] == nil || m[key] == nil {
		t.Errorf("results.json lacks machine or %s: %s", key, b)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "results.md")); err != nil || string(got) != md {
		t.Errorf("results.md: %v, or it differs from the Markdown", err)
	}
}
