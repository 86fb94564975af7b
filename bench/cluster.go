package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	// Pause is how long the host rests before each phase. Default 500 ms.
	Pause time.Duration
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

func (o ClusterOptions) withDefaults() (ClusterOptions, error) {
	if o.Nodes == 0 {
		o.Nodes = 2
	}
	if o.Conns == 0 {
		o.Conns = 1000
	}
	if o.Rate == 0 {
		o.Rate = 1000
	}
	if o.Duration == 0 {
		o.Duration = 5 * time.Second
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if o.Payload == 0 {
		o.Payload = 64
	}
	if o.Pause == 0 {
		o.Pause = 500 * time.Millisecond
	}
	if o.Nodes < 2 || o.Nodes > 16 || o.Conns <= 0 || o.Rate <= 0 || o.Duration <= 0 || o.Rounds <= 0 || o.Payload <= 0 {
		return o, errors.New("bench: cluster: want 2 to 16 nodes and positive conns, rate, duration, rounds and payload")
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	var err error
	if len(o.RelayCommand) == 0 {
		if o.RelayCommand, err = DefaultRelayCommand(); err != nil {
			return o, err
		}
	}
	if o.NATS == "" && len(o.NATSCommand) == 0 {
		if o.NATSCommand, err = DefaultNATSCommand(); err != nil {
			return o, err
		}
	}
	return o, nil
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
	res.LocalP50, res.LocalP99 = medianDur(localP50), medianDur(localP99)
	res.RemoteP50, res.RemoteP99 = medianDur(remoteP50), medianDur(remoteP99)
	res.ExtraP50 = medianDur(extra)
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
			buf = StampedPayload(buf[:0], start, opts.Payload)
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

func medianDur(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// Markdown renders the result.
func (r *ClusterResult) Markdown() string {
	var w strings.Builder
	o := r.Options
	fmt.Fprintf(&w, "## Cluster: unicast through node 1 to node 1 vs node 2 (%d nodes, %s clients each, %s pushes/s, %d-byte payloads)\n\n",
		o.Nodes, fmtInt(int64(o.Conns)), fmtInt(int64(o.Rate)), o.Payload)
	rows := [][]string{}
	for _, p := range r.Phases {
		rows = append(rows, []string{strconv.Itoa(p.Round), p.Path, fmtInt(p.Accepted), fmtInt(p.Errors),
			fmtDur(p.Delivery.P50), fmtDur(p.Delivery.P99), fmtDur(p.Reply.P50), fmtDur(p.Reply.P99)})
	}
	mdTable(&w, []string{"round", "path", "pushed", "errors", "delivery p50", "delivery p99", "reply p50", "reply p99"}, rows)
	fmt.Fprintf(&w, "\nMedian over rounds: local p50 %s p99 %s; remote p50 %s p99 %s; cross-node extra at p50 **%s**.\n\n",
		fmtDur(r.LocalP50), fmtDur(r.LocalP99), fmtDur(r.RemoteP50), fmtDur(r.RemoteP99), fmtDur(r.ExtraP50))
	mdChecks(&w, r.Checks)
	return w.String()
}
