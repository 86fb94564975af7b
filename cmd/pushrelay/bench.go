package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pushrelay/pushrelay/internal/bench"
	"github.com/pushrelay/pushrelay/relay"
)

// benchRunLimit bounds a whole bench command, whatever its flags say, so a
// wedged run ends by itself.
const benchRunLimit = 20 * time.Minute

func benchCommands() []command {
	return []command{
		{"idle", "measure what an idle connection costs the relay and a goroutine-per-connection baseline", runBenchIdle},
		{"storm", "measure how fast the relay accepts a reconnect storm, against a bare accept4 loop", runBenchStorm},
		{"ingress", "measure pushes through the relay's Unix socket and HTTP API: throughput, latency and CPU, against a bare write(2) floor", runBenchIngress},
		{"fanout", "measure broadcasts to many clients against a goroutine-per-connection baseline and a bare sequential writer; coalescing; unicasts during broadcasts", runBenchFanout},
		{"web", "measure the browser transports: memory per idle WebSocket and SSE client, broadcast time to last with and without compression, beside raw TCP", runBenchWeb},
		{"capacity", "ramp connections to the relay, the baseline and the floor step by step until a target or the relay's first wall, and name the wall with its evidence and fix", runBenchCapacity},
		{"quick", "5,000 clients each against the relay, the baseline and the floor: memory, accepts, broadcasts and unicasts, summed up relay beside baseline", runBenchQuick},
		{"cluster", "measure a push across relay nodes (NATS) against a push to the node's own clients", runBenchCluster},
		{"child", "run one server for a measuring parent (used by idle, storm, ingress, fanout, capacity and quick)", runBenchChild},
	}
}

func runBench(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		w := stdout
		if len(args) == 0 {
			w = stderr
		}
		fmt.Fprintln(w, "Usage: pushrelay bench COMMAND [flags]\n\nMeasures the relay against baselines, each server in a child process of its own.\n\nCommands:")
		for _, c := range benchCommands() {
			fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
		}
		fmt.Fprintln(w, "\nRun 'pushrelay bench COMMAND --help' for a command's flags.")
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range benchCommands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "pushrelay bench: unknown command %q (want idle, storm, ingress, fanout, web, capacity, quick, cluster or child)\n", args[0])
	return 2
}

// benchContext is cancelled by SIGINT or SIGTERM and after benchRunLimit.
func benchContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, benchRunLimit)
	return ctx, func() { cancel(); stop() }
}

func splitBenchList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// parseBench parses a bench command's flags; if it returns false, the
// command ends with code (0 after --help).
func parseBench(fs *flagSet, name string, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	if err := fs.parse(args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		fmt.Fprintf(stderr, "pushrelay bench %s: %v\n", name, err)
		return 2, false
	}
	return 0, true
}

// runBenchMode runs one bench mode under benchContext and reports what it
// measured; started reads the result's start time.
func runBenchMode[O any, R interface{ Markdown() string }](name, out string, stdout, stderr io.Writer,
	run func(context.Context, O) (R, error), opts O, started func(R) time.Time) int {
	ctx, cancel := benchContext()
	defer cancel()
	res, err := run(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "pushrelay bench %s: %v\n", name, err)
		return 1
	}
	return benchReport(stdout, stderr, name, out, started(res), res, res.Markdown())
}

// benchReport prints the Markdown summary and writes both result files.
func benchReport(stdout, stderr io.Writer, name, dir string, started time.Time, v any, markdown string) int {
	fmt.Fprint(stdout, markdown)
	if dir == "" {
		dir = bench.DefaultOutDir(name, started)
	}
	if err := bench.WriteResults(dir, v, markdown); err != nil {
		fmt.Fprintf(stderr, "pushrelay bench %s: %v\n", name, err)
		return 1
	}
	fmt.Fprintf(stderr, "pushrelay bench %s: results in %s\n", name, dir)
	return 0
}

func runBenchIdle(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench idle", "Opens idle connections to the relay and to a goroutine-per-connection baseline, each in a child process, and reports the memory each connection costs the server process and the kernel.", stderr)
	opts := bench.IdleDefaults()
	var framing, servers, out string
	fs.IntVar(&opts.Conns, "conns", opts.Conns, "How many idle connections (`N`) each server holds. The client and the server each need one file descriptor per connection.")
	fs.StringVar(&framing, "framing", opts.Framing.String(), "The `framing` the servers use and the clients read their ID in: nul, line or len32.")
	fs.StringVar(&servers, "servers", strings.Join(opts.Servers, ","), "The servers to measure, in order, as a comma-separated `list` of relay and baseline.")
	fs.IntVar(&opts.Workers, "workers", opts.Workers, "How many goroutines (`N`) open the connections.")
	fs.IntVar(&opts.Warmup, "warmup", opts.Warmup, "How many unreported rounds (`N`) against the first server run first, so the kernel's slab caches are grown for every server alike; 0 runs none.")
	fs.DurationVar(&opts.Settle, "settle", opts.Settle, "How `long` the connections sit idle before the final reading.")
	fs.StringVar(&out, "out", "", "The `directory` that receives results.json and results.md; empty means bench-results/idle-UTCTIMESTAMP.")
	fs.StringVar(&opts.ProfileDir, "profile-dir", "", "A `directory` that receives a heap profile of each server with its connections open; empty takes none.")
	if code, ok := parseBench(fs, "idle", args, stdout, stderr); !ok {
		return code
	}
	var err error
	if opts.Framing, err = relay.ParseFraming(framing); err != nil {
		fmt.Fprintf(stderr, "pushrelay bench idle: --framing: %v\n", err)
		return 2
	}
	if opts.Conns <= 0 {
		fmt.Fprintln(stderr, "pushrelay bench idle: --conns: want at least 1")
		return 2
	}
	if opts.Warmup == 0 {
		opts.Warmup = -1 // bench treats 0 as its default
	}
	opts.Servers, opts.Stderr = splitBenchList(servers), stderr
	return runBenchMode("idle", out, stdout, stderr, bench.RunIdle, opts, func(r *bench.IdleResult) time.Time { return r.Started })
}

func runBenchStorm(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench storm", "Opens connections as fast as one client can against a bare accept4 loop and against the relay, each in a child process, and reports each server's accept rate and the listen-queue overflows.", stderr)
	opts := bench.StormDefaults()
	var servers, out string
	fs.IntVar(&opts.Conns, "conns", opts.Conns, "How many connections (`N`) the storm opens against each server. The client and the server each need one file descriptor per connection.")
	fs.StringVar(&servers, "servers", strings.Join(opts.Servers, ","), "The servers to measure, in order, as a comma-separated `list` of accept4 (a bare accept loop), accept4-write (the same, writing each connection a 22-character ID), relay and baseline.")
	fs.IntVar(&opts.Warmup, "warmup", opts.Warmup, "How many unreported storms (`N`) against the first server run before the measured rounds, so the kernel's socket caches are grown for every server alike; 0 runs none.")
	fs.IntVar(&opts.Rounds, "rounds", opts.Rounds, "How many storms (`N`) each server gets, the servers taking turns; the summary reports each server's median round and the median of the rounds' relay/accept4 ratios.")
	fs.IntVar(&opts.Dialers, "dialers", opts.Dialers, "How many goroutines (`N`) issue the non-blocking connects.")
	fs.IntVar(&opts.Sources, "sources", opts.Sources, "How many loopback source addresses (`N`, from 127.0.0.2 on) the client binds to in turn, so no single ephemeral port range runs short; 1 leaves the source to the kernel.")
	fs.DurationVar(&opts.Pause, "pause", opts.Pause, "How `long` the host rests before each storm, so the kernel's cleanup of the previous one does not land on the next server's time.")
	fs.DurationVar(&opts.Timeout, "timeout", opts.Timeout, "How `long` each server's storm may take before it is reported incomplete.")
	fs.DurationVar(&opts.Poll, "poll", opts.Poll, "How often (`interval`) the server is asked how many connections it accepted; the resolution of the measured time.")
	fs.StringVar(&out, "out", "", "The `directory` that receives results.json and results.md; empty means bench-results/storm-UTCTIMESTAMP.")
	fs.StringVar(&opts.ProfileDir, "profile-dir", "", "A `directory` that receives a CPU profile of each server during its storm; empty takes none.")
	fs.BoolVar(&opts.OwnAccept, "own-accept", false, "Run the relay as serve --own-accept does, accepting connections itself: to measure what that costs against the default.")
	if code, ok := parseBench(fs, "storm", args, stdout, stderr); !ok {
		return code
	}
	if opts.Conns <= 0 {
		fmt.Fprintln(stderr, "pushrelay bench storm: --conns: want at least 1")
		return 2
	}
	if opts.Warmup == 0 {
		opts.Warmup = -1 // bench treats 0 as its default
	}
	opts.Servers, opts.Stderr = splitBenchList(servers), stderr
	return runBenchMode("storm", out, stdout, stderr, bench.RunStorm, opts, func(r *bench.StormResult) time.Time { return r.Started })
}

// relayExtras are the --relay-flags and --relay-env of bench ingress and
// fanout, for experiments.
type relayExtras struct{ flags, env string }

func (r *relayExtras) register(fs *flagSet) {
	fs.StringVar(&r.flags, "relay-flags", "", "Extra `flags` for the relay's serve command, space-separated (--loops 1, say): for experiments; the defaults are what is measured.")
	fs.StringVar(&r.env, "relay-env", "", "Extra environment `settings` for the relay, space-separated NAME=VALUE (GOMAXPROCS=3, say): for experiments.")
}

// set makes p's relay command the default one with the extra flags, and
// its environment the extra settings.
func (r *relayExtras) set(p *bench.Procs) error {
	cmd, err := bench.DefaultRelayCommand()
	if err != nil {
		return err
	}
	p.RelayCommand, p.RelayEnv = append(cmd, strings.Fields(r.flags)...), strings.Fields(r.env)
	return nil
}

// joinInts writes counts as parseIntList reads them.
func joinInts(ns []int) string {
	f := make([]string, len(ns))
	for i, n := range ns {
		f[i] = strconv.Itoa(n)
	}
	return strings.Join(f, ",")
}

// parseIntList reads a comma-separated list of positive counts.
func parseIntList(s string) ([]int, error) {
	var out []int
	for _, f := range splitBenchList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q: want a positive count", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("want at least one count")
	}
	return out, nil
}

func runBenchIngress(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench ingress", "Holds idle clients against a bare write(2) floor and then against the relay binary, pushes to random clients through the relay's Unix socket, its HTTP API one push a request and its HTTP API in batches (POST /v1/batch) as fast as it can and at a steady pace, and reports pushes and deliveries per second, latency from push to read, and the server's CPU per push, beside the floor's.", stderr)
	opts := bench.IngressDefaults()
	var conns, out string
	var extras relayExtras
	fs.StringVar(&conns, "conns", joinInts(opts.Conns), "The idle-client counts to measure at, as a comma-separated `list`. The bench holds every client in its own process, so each must stay below the open-file limit.")
	fs.Float64Var(&opts.Rate, "rate", opts.Rate, "The pace of the latency phases: `N` pushes a second.")
	fs.DurationVar(&opts.Duration, "duration", opts.Duration, "How `long` each phase pushes.")
	fs.IntVar(&opts.Payload, "payload", opts.Payload, "The size of each pushed payload in `bytes`, timestamp included.")
	fs.IntVar(&opts.UnixWorkers, "unix-workers", opts.UnixWorkers, "How many goroutines (`N`) push through the one Unix-socket client in the throughput phase.")
	fs.IntVar(&opts.Batch, "batch", opts.Batch, "How many pushes (`N`) a Unix worker sends without replies before a ping waits for the relay to have taken them; also the pushes in one POST /v1/batch request of the HTTP batch phase.")
	fs.IntVar(&opts.HTTPWorkers, "http-workers", opts.HTTPWorkers, "How many goroutines (`N`) push over HTTP keep-alive connections in the throughput phase; the relay serves 32 HTTP connections by default.")
	fs.DurationVar(&opts.Pause, "pause", opts.Pause, "How `long` the host rests before each phase.")
	extras.register(fs)
	fs.StringVar(&out, "out", "", "The `directory` that receives results.json and results.md; empty means bench-results/ingress-UTCTIMESTAMP.")
	if code, ok := parseBench(fs, "ingress", args, stdout, stderr); !ok {
		return code
	}
	var err error
	if opts.Conns, err = parseIntList(conns); err != nil {
		fmt.Fprintf(stderr, "pushrelay bench ingress: --conns: %v\n", err)
		return 2
	}
	if opts.Rate <= 0 || opts.Duration <= 0 || opts.Payload <= 0 {
		fmt.Fprintln(stderr, "pushrelay bench ingress: --rate, --duration and --payload must be positive")
		return 2
	}
	opts.Stderr = stderr
	if err := extras.set(&opts.Procs); err != nil {
		fmt.Fprintf(stderr, "pushrelay bench ingress: %v\n", err)
		return 1
	}
	return runBenchMode("ingress", out, stdout, stderr, bench.RunIngress, opts, func(r *bench.IngressResult) time.Time { return r.Started })
}

func runBenchFanout(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench fanout", "Holds N clients against the relay binary, a goroutine-per-connection baseline and a bare sequential write(2) loop in turn, broadcasts a timestamped payload to them again and again, and reports the time until the last client read it and the CPU per delivery; then measures how the relay coalesces bursts of publishes to one topic, and unicast latency while broadcasts keep it busy.", stderr)
	opts := bench.FanoutDefaults()
	var sizes, servers, out string
	var extras relayExtras
	fs.StringVar(&sizes, "sizes", joinInts(opts.Sizes), "The client counts to broadcast to, as a comma-separated `list`. Client and server each hold one descriptor per client, so each must stay below the open-file limit and the relay's --max-conns.")
	fs.StringVar(&servers, "servers", strings.Join(opts.Servers, ","), "The servers to measure at each size, in order, as a comma-separated `list` of relay, baseline and floor.")
	fs.IntVar(&opts.Broadcasts, "broadcasts", opts.Broadcasts, "How many measured broadcasts (`N`) each server makes at each size, each once the last has reached every client.")
	fs.IntVar(&opts.Warmup, "warmup", opts.Warmup, "How many unreported broadcasts (`N`) come first at each size; 0 runs none.")
	fs.IntVar(&opts.Payload, "payload", opts.Payload, "The size of the broadcast payload in `bytes`, timestamp included.")
	fs.DurationVar(&opts.Gap, "gap", opts.Gap, "How `long` the host rests between broadcasts.")
	fs.IntVar(&opts.CoalesceClients, "coalesce-clients", opts.CoalesceClients, "How many clients (`N`) subscribe to one topic in the coalescing phase; 0 skips it.")
	fs.IntVar(&opts.Burst, "burst", opts.Burst, "How many publishes (`N`) go out back to back in one write of the ingress socket in the coalescing phase.")
	fs.IntVar(&opts.Bursts, "bursts", opts.Bursts, "How many bursts (`N`) the coalescing phase measures.")
	fs.IntVar(&opts.BusyClients, "busy-clients", opts.BusyClients, "How many clients (`N`) the unicast-during-broadcast phase holds; 0 skips it.")
	fs.Float64Var(&opts.BusyRate, "busy-rate", opts.BusyRate, "The pace of the unicasts sent during broadcasts: `N` a second.")
	fs.DurationVar(&opts.BusyDuration, "busy-duration", opts.BusyDuration, "How `long` the unicasts go on during broadcasts.")
	extras.register(fs)
	fs.StringVar(&out, "out", "", "The `directory` that receives results.json and results.md; empty means bench-results/fanout-UTCTIMESTAMP.")
	if code, ok := parseBench(fs, "fanout", args, stdout, stderr); !ok {
		return code
	}
	var err error
	if opts.Sizes, err = parseIntList(sizes); err != nil {
		fmt.Fprintf(stderr, "pushrelay bench fanout: --sizes: %v\n", err)
		return 2
	}
	if opts.Broadcasts <= 0 || opts.Payload <= 0 || opts.Burst <= 0 || opts.Bursts <= 0 || opts.BusyRate <= 0 || opts.BusyDuration <= 0 {
		fmt.Fprintln(stderr, "pushrelay bench fanout: --broadcasts, --payload, --burst, --bursts, --busy-rate and --busy-duration must be positive")
		return 2
	}
	opts.Servers = splitBenchList(servers)
	if opts.Warmup == 0 {
		opts.Warmup = -1 // bench treats 0 as its default
	}
	if opts.CoalesceClients == 0 {
		opts.CoalesceClients = -1
	}
	if opts.BusyClients == 0 {
		opts.BusyClients = -1
	}
	opts.Stderr = stderr
	if err := extras.set(&opts.Procs); err != nil {
		fmt.Fprintf(stderr, "pushrelay bench fanout: %v\n", err)
		return 1
	}
	return runBenchMode("fanout", out, stdout, stderr, bench.RunFanout, opts, func(r *bench.FanoutResult) time.Time { return r.Started })
}

func runBenchChild(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench child", "Runs one server and answers a measuring parent's commands (stats, count, gc, heap PATH, cpu-start PATH, cpu-stop, broadcast SIZE, floor-rate SECONDS SIZE, floor-paced RATE SECONDS SIZE, floor-sweep SIZE, floor-prune, send-rate SECONDS SIZE, send-paced RATE SECONDS SIZE, quit), one per line on stdin, one JSON line each on stdout. End of stdin quits.", stderr)
	var server, listen, framing string
	fs.StringVar(&server, "server", "relay", "The `server` to run: relay (its defaults), baseline (goroutines per connection), accept4 (a bare accept loop) accept4-write (the same, writing each connection a 22-character ID) or floor (accept4 with an ID greeting, writing frames with bare write(2) calls on command).")
	fs.StringVar(&listen, "listen", "127.0.0.1:0", "The `HOST:PORT` the server listens on; port 0 picks a free port, reported on the first line.")
	fs.StringVar(&framing, "framing", "nul", "The `framing` of the frames the server writes: nul, line or len32.")
	if code, ok := parseBench(fs, "child", args, stdout, stderr); !ok {
		return code
	}
	f, err := relay.ParseFraming(framing)
	if err != nil {
		fmt.Fprintf(stderr, "pushrelay bench child: --framing: %v\n", err)
		return 2
	}
	// The parent owns the terminal's signals: a Ctrl-C reaches the whole
	// process group, and the parent then closes stdin, which is the
	// child's cue to shut down cleanly.
	signal.Ignore(os.Interrupt)
	if err := bench.RunChild(bench.ChildConfig{Server: server, Listen: listen, Framing: f}, os.Stdin, stdout); err != nil {
		fmt.Fprintf(stderr, "pushrelay bench child: %v\n", err)
		return 1
	}
	return 0
}

// capacityFlags are the flags bench capacity and bench quick share; the
// numeric ones are bound onto the options' fields.
type capacityFlags struct {
	servers, framing, relayFlags, out string
}

// register binds the shared flags, their defaults read from opts.
func (c *capacityFlags) register(fs *flagSet, opts *bench.CapacityOptions) {
	fs.StringVar(&c.servers, "servers", strings.Join(opts.Servers, ","), "The servers to measure at each step, in order, as a comma-separated `list`: relay first, then baseline (goroutines per connection) and floor (bare accept4 and write(2) on one thread), either or both.")
	fs.StringVar(&c.framing, "framing", opts.Framing.String(), "The `framing` of every server's frames: nul, line or len32.")
	fs.IntVar(&opts.Broadcasts, "broadcasts", opts.Broadcasts, "How many broadcasts (`N`) each server makes at each step, each once every client has read the last.")
	fs.IntVar(&opts.Payload, "payload", opts.Payload, "The size of every pushed payload in `bytes`, timestamp included.")
	fs.IntVar(&opts.UnicastRate, "unicast-rate", opts.UnicastRate, "The pace of the paced unicast series: `N` pushes a second.")
	fs.IntVar(&opts.Unicasts, "unicasts", opts.Unicasts, "How many paced unicasts (`N`) each server pushes to random clients at each step; as many bare loopback writes time the latency floor.")
	fs.DurationVar(&opts.Throughput, "throughput", opts.Throughput, "How `long` each server pushes unicasts as fast as it takes them, at each step; 0 skips it.")
	fs.DurationVar(&opts.Settle, "settle", opts.Settle, "How `long` each step's connections sit before memory is read.")
	fs.StringVar(&c.relayFlags, "relay-flags", "", "Extra `flags` for the relay's serve command, space-separated: for experiments; the defaults are what is measured.")
}

// options checks the flags and fills the rest of opts.
func (c *capacityFlags) options(opts *bench.CapacityOptions) error {
	var err error
	opts.Servers = splitBenchList(c.servers)
	if opts.Framing, err = relay.ParseFraming(c.framing); err != nil {
		return fmt.Errorf("--framing: %w", err)
	}
	if opts.Broadcasts <= 0 || opts.Payload <= 0 || opts.UnicastRate <= 0 || opts.Unicasts <= 0 || opts.Throughput < 0 || opts.Settle <= 0 {
		return errors.New("--broadcasts, --payload, --unicast-rate, --unicasts and --settle must be positive, --throughput 0 or more")
	}
	if opts.Throughput == 0 {
		opts.Throughput = -1 // bench treats 0 as its default
	}
	if opts.RelayCommand, err = bench.DefaultRelayCommand(); err != nil {
		return err
	}
	opts.RelayCommand = append(opts.RelayCommand, strings.Fields(c.relayFlags)...)
	return nil
}

// benchCapacityReport runs the ramp and writes its report, partial if it
// was interrupted. Exit status: 0, 1 on an error, 130 when interrupted.
func benchCapacityReport(name string, args []string, opts bench.CapacityOptions, out string, stdout, stderr io.Writer,
	markdown func(*bench.CapacityResult, string) string, write func(string, *bench.CapacityResult, string) error) int {
	ctx, cancel := benchContext()
	defer cancel()
	res, err := bench.RunCapacity(ctx, opts)
	if err != nil && res == nil {
		fmt.Fprintf(stderr, "pushrelay bench %s: %v\n", name, err)
		return 1
	}
	command := strings.TrimSpace("pushrelay bench " + name + " " + strings.Join(args, " "))
	fmt.Fprint(stdout, markdown(res, command))
	if out == "" {
		out = bench.DefaultOutDir(name, res.Started)
	}
	if werr := write(out, res, command); werr != nil {
		fmt.Fprintf(stderr, "pushrelay bench %s: %v\n", name, werr)
		return 1
	}
	fmt.Fprintf(stderr, "pushrelay bench %s: results in %s\n", name, out)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "pushrelay bench %s: %v\n", name, err)
		return 1
	case res.Interrupted:
		fmt.Fprintf(stderr, "pushrelay bench %s: interrupted; the report holds the steps completed (%d)\n", name, len(res.Steps))
		return 130
	}
	return 0
}

func runBenchCapacity(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench capacity", "Starts the relay binary, the goroutine-per-connection baseline and the kernel floor, each in a process of its own, then holds more and more idle clients against each (load generator worker processes, as many as the open-file limit needs), measuring at each step every server's memory per connection (process and kernel), accept rate, broadcasts' time to the last client, a paced unicast series and unicasts as fast as taken, plus a bare loopback write; every relay figure is also a ratio to the baseline's and the floor's. The ramp goes on until --target or the relay's first failure, which it names with its evidence and the fix pushrelay doctor gives. Writes results.json, results.md, summary.md and chart.svg; Ctrl-C leaves a partial report.", stderr)
	opts := bench.CapacityDefaults()
	var (
		cf    capacityFlags
		steps string
	)
	fs.IntVar(&opts.Target, "target", opts.Target, "The connection count (`N`) that ends the ramp if no wall comes first.")
	fs.StringVar(&steps, "steps", "", "The connection counts to hold, as a comma-separated `list`; empty means 1000,2000,5000,10000, then every 10,000 up to --target.")
	cf.register(fs, &opts)
	fs.StringVar(&cf.out, "out", "", "The `directory` that receives the results; empty means bench-results/capacity-UTCTIMESTAMP.")
	if code, ok := parseBench(fs, "capacity", args, stdout, stderr); !ok {
		return code
	}
	var err error
	if steps != "" {
		if opts.Steps, err = parseIntList(steps); err != nil {
			fmt.Fprintf(stderr, "pushrelay bench capacity: --steps: %v\n", err)
			return 2
		}
	}
	if opts.Target <= 0 {
		fmt.Fprintln(stderr, "pushrelay bench capacity: --target must be positive")
		return 2
	}
	opts.Stderr = stderr
	if err := cf.options(&opts); err != nil {
		fmt.Fprintf(stderr, "pushrelay bench capacity: %v\n", err)
		return 2
	}
	return benchCapacityReport("capacity", args, opts, cf.out, stdout, stderr, bench.CapacityMarkdown, bench.WriteCapacity)
}

func runBenchQuick(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench quick", "The quick side-by-side: holds --conns idle clients against the relay binary, the goroutine-per-connection baseline and the kernel floor in turn (each in a process of its own, all held at once), and measures each server's memory per connection, accept rate, a broadcast series, a paced unicast series and unicasts as fast as taken, plus a bare loopback write; it ends with one table of the relay beside the baseline and the floor. Writes results.json, results.md, summary.md (that table) and chart.svg (that table as bars).", stderr)
	opts := bench.QuickDefaults()
	var cf capacityFlags
	fs.IntVar(&opts.Target, "conns", opts.Target, "How many clients (`N`) each server holds. Each server and the load generator's workers hold one descriptor per client.")
	cf.register(fs, &opts)
	fs.StringVar(&cf.out, "out", "", "The `directory` that receives the results; empty means bench-results/quick-UTCTIMESTAMP.")
	if code, ok := parseBench(fs, "quick", args, stdout, stderr); !ok {
		return code
	}
	if opts.Target <= 0 {
		fmt.Fprintln(stderr, "pushrelay bench quick: --conns must be positive")
		return 2
	}
	opts.Steps, opts.Stderr = []int{opts.Target}, stderr
	if err := cf.options(&opts); err != nil {
		fmt.Fprintf(stderr, "pushrelay bench quick: %v\n", err)
		return 2
	}
	return benchCapacityReport("quick", args, opts, cf.out, stdout, stderr, bench.QuickMarkdown, bench.WriteQuick)
}
