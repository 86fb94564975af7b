package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/pushrelay/pushrelay/pkg/stamp"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pushrelay/pushrelay/ingress/client"
	"github.com/pushrelay/pushrelay/loadgen"
)

// ClusterOptions configures RunCluster. Zero values mean the defaults.
type ClusterOptions struct {
	// Nodes is how many relay processes join the cluster. Default 2.
	Nodes int
	// Conns is how many idle clients each measured node holds. Default
	// 1,000.
	Conns int
	// Rate is the pace of the pushes, a second. Default 1,000.
	Rate float64
	// Duration is how long each phase pushes. Default 5 s.
	Duration time.Duration
	// Rounds is how many times the local and the remote phase alternate,
	// so drift on a shared host hits both alike. Default 3.
	Rounds int
	// Payload is the size of each pushed payload in bytes, timestamp
	// included. Default 64.
	Payload int
	// Pause is how long the host rests before each phase. Default 500 ms.
	Pause time.Duration
	ClusterProcs
}

// ClusterProcs names the NATS server and the relays of a cluster scenario;
// ClusterOptions and ClusterCapacityOptions embed it, so results.json
// shows its fields among theirs.
type ClusterProcs struct {
	// NATS is the URL of a NATS server to use; empty starts
	// NATSCommand.
	NATS string
	// NATSCommand starts a NATS server that prints its URL on its first
	// line of output; "--listen 127.0.0.1:0" is appended. Default
	// DefaultNATSCommand().
	NATSCommand []string
	// RelayCommand starts a relay (`pushrelay serve`); the cluster,
	// listener and log flags are appended. Default DefaultRelayCommand().
	RelayCommand []string
	// Stderr receives progress lines and the children's logs. Default
	// os.Stderr.
	Stderr io.Writer
}

// DefaultNATSCommand is pushrelay-nats beside this executable, else
// nats-server on the PATH.
func DefaultNATSCommand() ([]string, error) {
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), "pushrelay-nats")
		if _, err := os.Stat(p); err == nil {
			return []string{p}, nil
		}
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return []string{p, "-a", "127.0.0.1", "-p", "-1"}, nil
	}
	return nil, errors.New("bench: cluster: no NATS server: run `make build-nats` (bin/pushrelay-nats beside bin/pushrelay), install nats-server, or pass --nats URL")
}

// fill fills Stderr, the relay's command and, unless a NATS URL is given,
// the NATS server's.
func (p *ClusterProcs) fill() error {
	orZero(&p.Stderr, io.Writer(os.Stderr))
	if err := fillCommands(&p.RelayCommand, nil); err != nil {
		return err
	}
	if p.NATS != "" || len(p.NATSCommand) > 0 {
		return nil
	}
	var err error
	p.NATSCommand, err = DefaultNATSCommand()
	return err
}

func (o ClusterOptions) withDefaults() (ClusterOptions, error) {
	d := ClusterDefaults()
	orZero(&o.Nodes, d.Nodes)
	orZero(&o.Conns, d.Conns)
	orZero(&o.Rate, d.Rate)
	orZero(&o.Duration, d.Duration)
	orZero(&o.Rounds, d.Rounds)
	orZero(&o.Payload, d.Payload)
	orZero(&o.Pause, d.Pause)
	if o.Nodes < 2 || o.Nodes > 16 || o.Conns <= 0 || o.Rate <= 0 || o.Duration <= 0 || o.Rounds <= 0 || o.Payload <= 0 {
		return o, errors.New("bench: cluster: want 2 to 16 nodes and positive conns, rate, duration, rounds and payload")
	}
	return o, o.fill()
}

// ClusterResult is a RunCluster run.
type ClusterResult struct {
	Started time.Time      `json:"started"`
	Options ClusterOptions `json:"options"`
	Phases  []ClusterPhase `json:"phases"`
	// The medians over the rounds of each path's p50 and p99, and the
	// remote path's extra p50: what the cross-node hop costs.
	LocalP50, LocalP99, RemoteP50, RemoteP99 time.Duration
	ExtraP50                                 time.Duration
	Checks                                   []Check `json:"checks"`
}

// ClusterPhase is one path measured once.
type ClusterPhase struct {
	// Path is "local" (pushed through node 1 to node 1's clients) or
	// "remote" (through node 1 to node 2's clients, across NATS).
	Path     string `json:"path"`
	Round    int    `json:"round"`
	Sent     int64  `json:"sent"`
	Accepted int64  `json:"accepted"`
	Errors   int64  `json:"errors"`
	// Delivery is from the stamp, taken just before the push, to the
	// client's read of the frame. Reply is the ingress call's round trip:
	// what the web app waits for.
	Delivery loadgen.Summary `json:"delivery"`
	Reply    loadgen.Summary `json:"reply"`
}

// RunCluster measures a push through one node's ingress socket to clients
// of that node against the same push to clients of another node, which
// crosses NATS: node 1 holds Conns clients, node 2 holds Conns clients,
// and a paced loop pushes through node 1 to random clients of one or the
// other, in alternating phases.
func RunCluster(ctx context.Context, opts ClusterOptions) (_ *ClusterResult, err error) {
	opts, err = opts.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &ClusterResult{Started: time.Now().UTC(), Options: opts}
	url := opts.NATS
	if url == "" {
		var stop func()
		url, stop, err = startNATS(opts.NATSCommand, opts.Stderr)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	fmt.Fprintf(opts.Stderr, "bench cluster: NATS at %s; starting %d nodes\n", url, opts.Nodes)
	var nodes []*relayProc
	defer func() {
		for _, n := range nodes {
			if serr := n.stop(); serr != nil && err == nil {
				err = serr
			}
		}
	}()
	for i := 1; i <= opts.Nodes; i++ {
		cmd := append(append([]string(nil), opts.RelayCommand...), "--nats", url, "--node", strconv.Itoa(i))
		n, err := startRelayProc(cmd, nil, io.Discard)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	if err := clusterFormed(ctx, nodes); err != nil {
		return nil, err
	}
	local, err := openPool(nodes[0].addr, opts.Conns, time.Minute)
	if err != nil {
		return nil, err
	}
	defer local.Close()
	remote, err := openPool(nodes[1].addr, opts.Conns, time.Minute)
	if err != nil {
		return nil, err
	}
	defer remote.Close()
	localIDs, remoteIDs := local.IDs(), remote.IDs()

	var localP50, localP99, remoteP50, remoteP99, extra []time.Duration
	for round := 1; round <= opts.Rounds; round++ {
		var p50 [2]time.Duration
		for i, ph := range []struct {
			path string
			pool *loadgen.Pool
			ids  []string
		}{{"local", local, localIDs}, {"remote", remote, remoteIDs}} {
			if err := rest(ctx, opts.Pause); err != nil {
				return res, err
			}
			r, err := clusterPhase(ctx, opts, nodes[0].client, ph.pool, ph.ids)
			if err != nil {
				return res, err
			}
			r.Path, r.Round = ph.path, round
			res.Phases = append(res.Phases, r)
			fmt.Fprintf(opts.Stderr, "bench cluster: round %d %s: %d pushed, %d errors; delivery p50 %v p99 %v; reply p50 %v p99 %v\n",
				round, ph.path, r.Accepted, r.Errors, r.Delivery.P50, r.Delivery.P99, r.Reply.P50, r.Reply.P99)
			p50[i] = r.Delivery.P50
			if i == 0 {
				localP50, localP99 = append(localP50, r.Delivery.P50), append(localP99, r.Delivery.P99)
			} else {
				remoteP50, remoteP99 = append(remoteP50, r.Delivery.P50), append(remoteP99, r.Delivery.P99)
			}
		}
		extra = append(extra, p50[1]-p50[0])
	}
	res.LocalP50, res.LocalP99 = median(localP50), median(localP99)
	res.RemoteP50, res.RemoteP99 = median(remoteP50), median(remoteP99)
	res.ExtraP50 = median(extra)
	var errs int64
	for _, p := range res.Phases {
		errs += p.Errors + (p.Accepted - int64(p.Delivery.Count))
	}
	res.Checks = []Check{
		{Name: "cross-node unicast: extra delivery p50 over a local push", Value: res.ExtraP50.Seconds() * 1e6, Shown: fmtDur(res.ExtraP50), Target: "≤ 200 µs", Met: res.ExtraP50 <= 200*time.Microsecond},
		{Name: "pushes refused or not delivered", Value: float64(errs), Shown: strconv.FormatInt(errs, 10), Target: "0", Met: errs == 0},
	}
	return res, nil
}

// clusterPhase pushes at opts.Rate through cl to random ids for
// opts.Duration, timing each reply, while this goroutine reads the pool.
func clusterPhase(ctx context.Context, opts ClusterOptions, cl *client.Client, pool *loadgen.Pool, ids []string) (ClusterPhase, error) {
	var r ClusterPhase
	resetLatency(pool)
	from := pool.Stats.Messages.Load()
	type tally struct {
		sent, accepted, errors int64
		reply                  loadgen.Histogram
	}
	done := make(chan *tally, 1)
	go func() {
		t := &tally{}
		rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		buf := make([]byte, 0, opts.Payload+32)
		pctx, cancel := context.WithTimeout(ctx, opts.Duration+time.Minute)
		defer cancel()
		paced(pctx, IngressOptions{Rate: opts.Rate, Duration: opts.Duration}, func(int64) {
			start := time.Now()
			buf = stamp.AppendPadded(buf[:0], start, opts.Payload)
			counts, err := cl.Send(pctx, ids[rng.IntN(len(ids))], buf)
			t.reply.Record(time.Since(start))
			t.sent++
			if err == nil && counts.Queued == 1 {
				t.accepted++
			} else {
				t.errors++
			}
		})
		done <- t
	}()
	lastGrowth := time.Now()
	t, err := pollWhile(pool, done, &lastGrowth)
	if err != nil {
		<-done
		return r, err
	}
	if _, _, err := drainPool(pool, from, t.accepted, 2*time.Second, 30*time.Second, lastGrowth); err != nil {
		return r, err
	}
	r.Sent, r.Accepted, r.Errors = t.sent, t.accepted, t.errors
	r.Delivery = windowLatency(pool).Summarize()
	r.Reply = t.reply.Summarize()
	return r, nil
}

// clusterFormed waits until every node sees all the others.
func clusterFormed(ctx context.Context, nodes []*relayProc) error {
	deadline := time.Now().Add(15 * time.Second)
	for _, n := range nodes {
		for {
			m, err := n.metrics(ctx)
			if err != nil {
				return err
			}
			if m[`pushrelay_cluster_nodes{state="alive"}`] >= float64(len(nodes)-1) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("bench: cluster: a node sees %v others, want %d", m[`pushrelay_cluster_nodes{state="alive"}`], len(nodes)-1)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// startNATS runs command with a free loopback port and returns the URL it
// prints and a function that stops it.
func startNATS(command []string, logw io.Writer) (string, func(), error) {
	args := append([]string(nil), command[1:]...)
	if filepath.Base(command[0]) == "pushrelay-nats" {
		args = append(args, "--listen", "127.0.0.1:0")
	}
	cmd := exec.Command(command[0], args...)
	cmd.Stderr = logw
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("bench: start NATS %q: %w", command[0], err)
	}
	stop := func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "nats://") {
				urls <- line
				break
			}
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case u := <-urls:
		return u, stop, nil
	case <-time.After(10 * time.Second):
		stop()
		return "", nil, errors.New("bench: NATS printed no URL within 10s")
	}
}

// Markdown renders the result.
func (r *ClusterResult) Markdown() string {
	var w doc
	o := r.Options
	fmt.Fprintf(&w, "## Cluster: unicast through node 1 to node 1 vs node 2 (%d nodes, %s clients each, %s pushes/s, %d-byte payloads)\n\n",
		o.Nodes, fmtInt(int64(o.Conns)), fmtInt(int64(o.Rate)), o.Payload)
	rows := [][]string{}
	for _, p := range r.Phases {
		rows = append(rows, []string{strconv.Itoa(p.Round), p.Path, fmtInt(p.Accepted), fmtInt(p.Errors),
			fmtDur(p.Delivery.P50), fmtDur(p.Delivery.P99), fmtDur(p.Reply.P50), fmtDur(p.Reply.P99)})
	}
	w.mdTable([]string{"round", "path", "pushed", "errors", "delivery p50", "delivery p99", "reply p50", "reply p99"}, rows)
	fmt.Fprintf(&w, "\nMedian over rounds: local p50 %s p99 %s; remote p50 %s p99 %s; cross-node extra at p50 **%s**.\n\n",
		fmtDur(r.LocalP50), fmtDur(r.LocalP99), fmtDur(r.RemoteP50), fmtDur(r.RemoteP99), fmtDur(r.ExtraP50))
	w.mdChecks(r.Checks)
	return w.String()
}

// Capacity: many idle clients on one port held by several relay
// processes (--reuse-port), next to one standalone relay.

// ClusterCapacityOptions configures RunClusterCapacity. Zero values mean the
// defaults.
type ClusterCapacityOptions struct {
	// Conns is how many clients the cluster holds, all on one port.
	// Default 50,000.
	Conns int
	// Nodes is how many relay processes share the port. Default 3 (each
	// may hold about 19,840 on a host with 20,000 files per process).
	Nodes int
	// Single is how many clients the standalone relay holds first, for
	// comparison; 0 skips it. Default 18,000; Off (-1) skips it too.
	Single int
	// Rate is how fast the load generator connects, a second. Default
	// 10,000.
	Rate float64
	// Broadcasts is how many stamped broadcasts are timed. Default 3.
	Broadcasts int
	// Unicasts is how many stamped pushes go to each path (to node 1's
	// clients, to node 2's) at UnicastRate. Defaults 2,000 at 500 a second.
	Unicasts    int
	UnicastRate float64
	ClusterProcs
}

// CapacityOff skips the standalone comparison (ClusterCapacityOptions.Single).
const CapacityOff = -1

func (o ClusterCapacityOptions) withDefaults() (ClusterCapacityOptions, error) {
	d := ClusterCapacityDefaults()
	orZero(&o.Conns, d.Conns)
	orZero(&o.Nodes, d.Nodes)
	switch o.Single {
	case 0:
		o.Single = d.Single
	case CapacityOff:
		o.Single = 0
	}
	orZero(&o.Rate, d.Rate)
	orZero(&o.Broadcasts, d.Broadcasts)
	orZero(&o.Unicasts, d.Unicasts)
	orZero(&o.UnicastRate, d.UnicastRate)
	if o.Conns <= 0 || o.Nodes < 2 || o.Nodes > 16 || o.Single < 0 || o.Rate <= 0 || o.Broadcasts <= 0 || o.Unicasts <= 0 || o.UnicastRate <= 0 {
		return o, errors.New("bench: cluster capacity: want positive counts and rates, and 2 to 16 nodes")
	}
	return o, o.fill()
}

// ClusterCapacityResult is a RunClusterCapacity run: the standalone relay (if
// measured) and the cluster.
type ClusterCapacityResult struct {
	Started time.Time              `json:"started"`
	Options ClusterCapacityOptions `json:"options"`
	Runs    []ClusterCapacityRun   `json:"runs"`
	Checks  []Check                `json:"checks"`
}

// ClusterCapacityRun is one setup holding its clients.
type ClusterCapacityRun struct {
	Setup string `json:"setup"` // "standalone" or "cluster of N"
	Nodes int    `json:"nodes"`
	Conns int    `json:"conns"`
	// Held is the clients connected, by node, when measured.
	Held []int `json:"held"`
	// ConnectSeconds is from the first connect to the last client held.
	ConnectSeconds float64 `json:"connect_seconds"`
	// RSSPerConn is the relays' resident memory grown since they were
	// idle, over the clients; HeapPerConn the Go heap in use.
	RSSPerConn  float64 `json:"rss_bytes_per_conn"`
	HeapPerConn float64 `json:"heap_bytes_per_conn"`
	// Broadcasts through node 1: queued per broadcast (every client of
	// every node) and latency from the stamp to each client's read;
	// TimeToLast is the worst broadcast's last read.
	BroadcastQueued []int           `json:"broadcast_queued"`
	Broadcast       loadgen.Summary `json:"broadcast"`
	TimeToLast      time.Duration   `json:"time_to_last_ns"`
	// Unicast through node 1 to its own clients, and (cluster) to node
	// 2's: delivery latency from stamp to read.
	UnicastLocal  loadgen.Summary  `json:"unicast_local"`
	UnicastRemote *loadgen.Summary `json:"unicast_remote,omitempty"`
	Errors        int64            `json:"errors"`
}

// RunClusterCapacity holds opts.Single clients on a standalone relay, then
// opts.Conns on opts.Nodes relay processes sharing one port, and measures
// each: memory per connection, broadcast time to last, unicast latency.
func RunClusterCapacity(ctx context.Context, opts ClusterCapacityOptions) (*ClusterCapacityResult, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	res := &ClusterCapacityResult{Started: time.Now().UTC(), Options: opts}
	if opts.Single > 0 {
		r, err := clusterCapacityRun(ctx, opts, 1, opts.Single, "")
		if err != nil {
			return res, err
		}
		res.Runs = append(res.Runs, r)
	}
	url := opts.NATS
	if url == "" {
		var stop func()
		url, stop, err = startNATS(opts.NATSCommand, opts.Stderr)
		if err != nil {
			return res, err
		}
		defer stop()
	}
	r, err := clusterCapacityRun(ctx, opts, opts.Nodes, opts.Conns, url)
	if err != nil {
		return res, err
	}
	res.Runs = append(res.Runs, r)
	held := 0
	for _, h := range r.Held {
		held += h
	}
	res.Checks = []Check{
		{Name: "idle clients held on one port by the cluster", Value: float64(held), Shown: fmtInt(int64(held)), Target: "≥ 50,000", Met: held >= 50000},
		{Name: "pushes refused or not delivered", Value: float64(r.Errors), Shown: fmtInt(r.Errors), Target: "0", Met: r.Errors == 0},
	}
	return res, nil
}

// capacityRun measures one setup: nodes relays (a standalone one if natsURL
// is empty) on one port, conns clients from the load generator's worker
// processes.
func clusterCapacityRun(ctx context.Context, opts ClusterCapacityOptions, nodes, conns int, natsURL string) (_ ClusterCapacityRun, err error) {
	setup := "standalone"
	if natsURL != "" {
		setup = fmt.Sprintf("cluster of %d", nodes)
	}
	r := ClusterCapacityRun{Setup: setup, Nodes: nodes, Conns: conns}
	say := func(format string, args ...any) {
		fmt.Fprintf(opts.Stderr, "bench cluster capacity: %s: "+format+"\n", append([]any{setup}, args...)...)
	}
	port, err := freePort()
	if err != nil {
		return r, err
	}
	target := "127.0.0.1:" + strconv.Itoa(port)
	var procs []*relayProc
	defer func() {
		for _, p := range procs {
			if serr := p.stop(); serr != nil && err == nil {
				err = serr
			}
		}
	}()
	for i := 1; i <= nodes; i++ {
		cmd := append(append([]string(nil), opts.RelayCommand...), "--listen", target)
		if natsURL != "" {
			cmd = append(cmd, "--reuse-port", "--nats", natsURL, "--node", strconv.Itoa(i))
		}
		p, err := startRelayProc(cmd, nil, io.Discard)
		if err != nil {
			return r, err
		}
		procs = append(procs, p)
	}
	if natsURL != "" {
		if err := clusterFormed(ctx, procs); err != nil {
			return r, err
		}
	}
	base := make([]relayMetrics, len(procs))
	for i, p := range procs {
		if base[i], err = p.settledMetrics(ctx); err != nil {
			return r, err
		}
	}

	say("%d clients on %s", conns, target)
	col := newWindowCollector()
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := loadgen.Run(runCtx, loadgen.Options{
			Target: target, Conns: conns, Rate: opts.Rate,
			Duration: 24 * time.Hour, Deadline: 24 * time.Hour,
			Sources:  loadgen.AutoSources(target, conns),
			Progress: col.callback(0),
		})
		runDone <- err
	}()
	defer func() {
		stopRun()
		<-runDone
	}()
	open := func() ([]int, int, error) {
		var by []int
		total := 0
		for _, p := range procs {
			m, err := p.metrics(ctx)
			if err != nil {
				return nil, 0, err
			}
			n := int(m["pushrelay_connections_open"])
			by, total = append(by, n), total+n
		}
		return by, total, nil
	}
	deadline := time.Now().Add(time.Duration(float64(conns)/opts.Rate*float64(time.Second)) + 2*time.Minute)
	for {
		by, total, err := open()
		if err != nil {
			return r, err
		}
		if total >= conns {
			r.Held, r.ConnectSeconds = by, time.Since(start).Seconds()
			break
		}
		select {
		case err := <-runDone:
			runDone <- err
			return r, fmt.Errorf("bench: the load generator stopped with %d of %d clients held (%v)", total, conns, err)
		default:
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("bench: %d of %d clients held after %v (by node %v)", total, conns, time.Since(start).Round(time.Second), by)
		}
		time.Sleep(250 * time.Millisecond)
	}
	say("held %v (%.1fs); settling", r.Held, r.ConnectSeconds)
	var rss, heap float64
	for i, p := range procs {
		m, err := p.settledMetrics(ctx)
		if err != nil {
			return r, err
		}
		rss += m["pushrelay_process_resident_bytes"] - base[i]["pushrelay_process_resident_bytes"]
		heap += m["pushrelay_go_heap_inuse_bytes"] - base[i]["pushrelay_go_heap_inuse_bytes"]
	}
	r.RSSPerConn, r.HeapPerConn = rss/float64(conns), heap/float64(conns)
	say("memory: %s RSS, %s Go heap per connection", fmtBytes(r.RSSPerConn), fmtBytes(r.HeapPerConn))

	// Broadcasts through node 1, one at a time, each waited for.
	api := procs[0].client
	var bh loadgen.Histogram
	var buf []byte
	for i := 0; i < opts.Broadcasts; i++ {
		if err := rest(ctx, time.Second); err != nil {
			return r, err
		}
		col.take()
		m0 := col.messages()
		buf = stamp.AppendPadded(buf[:0], time.Now(), 64)
		counts, err := api.Broadcast(ctx, buf)
		if err != nil {
			return r, fmt.Errorf("bench: broadcast: %w", err)
		}
		r.BroadcastQueued = append(r.BroadcastQueued, int(counts.Queued))
		r.Errors += int64(conns-int(counts.Queued)) + int64(counts.Unreachable)
		waitUntil := time.Now().Add(30 * time.Second)
		for col.messages()-m0 < int64(counts.Queued) && time.Now().Before(waitUntil) {
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(1500 * time.Millisecond) // the last progress window
		h := col.take()
		r.Errors += max(0, int64(counts.Queued)-int64(h.Count()))
		r.TimeToLast = max(r.TimeToLast, h.Max())
		say("broadcast %d: %d queued, %d timed; p50 %v, last %v", i+1, counts.Queued, h.Count(), h.Quantile(0.5), h.Max())
		bh.Merge(&h)
	}
	r.Broadcast = bh.Summarize()

	// Unicasts through node 1: to its own clients, then to node 2's.
	paths := []string{"1:"}
	if natsURL != "" {
		paths = append(paths, "2:")
	}
	for i, cursor := range paths {
		if nodes == 1 {
			cursor = ""
		}
		ids, _, err := api.List(ctx, cursor, 1000)
		if err != nil || len(ids) == 0 {
			return r, fmt.Errorf("bench: list node %d's clients: %d IDs, %v", i+1, len(ids), err)
		}
		if err := rest(ctx, time.Second); err != nil {
			return r, err
		}
		col.take()
		var sendErrs int64
		rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		n := int64(opts.Unicasts)
		paced(ctx, IngressOptions{Rate: opts.UnicastRate, Duration: time.Duration(float64(n) / opts.UnicastRate * float64(time.Second))}, func(int64) {
			buf = stamp.AppendPadded(buf[:0], time.Now(), 64)
			if c, err := api.Send(ctx, ids[rng.IntN(len(ids))], buf); err != nil || c.Queued != 1 {
				sendErrs++
			}
		})
		time.Sleep(1500 * time.Millisecond)
		h := col.take()
		r.Errors += sendErrs + max(0, n-sendErrs-int64(h.Count()))
		s := h.Summarize()
		if i == 0 {
			r.UnicastLocal = s
		} else {
			r.UnicastRemote = &s
		}
		say("unicast to node %d's clients: %d timed, p50 %v p99 %v", i+1, h.Count(), s.P50, s.P99)
	}
	return r, nil
}

// freePort returns a loopback port free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Markdown renders the result.
func (r *ClusterCapacityResult) Markdown() string {
	var w doc
	fmt.Fprintf(&w, "## Cluster capacity: idle clients on one port, %d relay processes with --reuse-port\n\n", r.Options.Nodes)
	rows := [][]string{}
	for _, run := range r.Runs {
		held := []string{}
		for _, h := range run.Held {
			held = append(held, fmtInt(int64(h)))
		}
		remote := "—"
		if run.UnicastRemote != nil {
			remote = fmtDur(run.UnicastRemote.P50) + " / " + fmtDur(run.UnicastRemote.P99)
		}
		rows = append(rows, []string{run.Setup, fmtInt(int64(run.Conns)), strings.Join(held, " + "), fmt.Sprintf("%.1f s", run.ConnectSeconds),
			fmtBytes(run.RSSPerConn), fmtBytes(run.HeapPerConn),
			fmtDur(run.Broadcast.P50), fmtDur(run.TimeToLast),
			fmtDur(run.UnicastLocal.P50) + " / " + fmtDur(run.UnicastLocal.P99), remote, fmtInt(run.Errors)})
	}
	w.table([]string{"setup", "clients", "held by node", "connect", "RSS/conn", "heap/conn", "broadcast p50", "broadcast time to last", "unicast to node 1 p50 / p99", "unicast to node 2 p50 / p99", "errors"}, rows)
	w.mdChecks(r.Checks)
	return w.String()
}
