package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/pushrelay/pushrelay/internal/bench"
)

// runBenchCluster is `pushrelay bench cluster` (internal/bench/cluster.go).
func runBenchCluster(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench cluster", "Starts a NATS server and relay nodes joined through it (--nats), holds idle clients on node 1 and on node 2, pushes through node 1's ingress socket at a steady pace to node 1's clients and to node 2's in alternating phases, and reports latency from push to read and of the reply for both, and what the cross-node hop adds.", stderr)
	opts, capOpts := bench.ClusterDefaults(), bench.ClusterCapacityDefaults()
	var out, relayFlags string
	fs.IntVar(&opts.Nodes, "nodes", opts.Nodes, "How many relay processes (`N`) join the cluster; pushes go through node 1 to node 1 and to node 2.")
	fs.IntVar(&opts.Conns, "conns", opts.Conns, "Idle clients (`N`) held on each of node 1 and node 2.")
	fs.Float64Var(&opts.Rate, "rate", opts.Rate, "The pace: `N` pushes a second, each waiting for its reply.")
	fs.DurationVar(&opts.Duration, "duration", opts.Duration, "How `long` each phase pushes.")
	fs.IntVar(&opts.Rounds, "rounds", opts.Rounds, "How many times (`N`) the local and the remote phase alternate.")
	fs.IntVar(&opts.Payload, "payload", opts.Payload, "The size of each pushed payload in `bytes`, timestamp included.")
	fs.StringVar(&opts.NATS, "nats", "", "Use the NATS server at this `URL`; empty starts bin/pushrelay-nats (make build-nats), or nats-server from the PATH.")
	fs.StringVar(&relayFlags, "relay-flags", "", "Extra `flags` for every node's serve command, space-separated: for experiments.")
	capOpts.Conns = 0 // --capacity is off unless given; RunClusterCapacity's own default is for callers that ask for it
	fs.IntVar(&capOpts.Conns, "capacity", 0, "Instead of latency, measure capacity: `N` idle clients on one port held by --capacity-nodes relay processes with --reuse-port (the load generator's worker processes connect them), with memory per connection, broadcast time to last and unicast latency to node 1's and node 2's clients, after the same for one standalone relay holding --single clients.")
	fs.IntVar(&capOpts.Nodes, "capacity-nodes", capOpts.Nodes, "With --capacity: relay processes (`N`) sharing the port.")
	fs.IntVar(&capOpts.Single, "single", capOpts.Single, "With --capacity: clients (`N`) held by the standalone relay measured first; 0 skips it.")
	fs.Float64Var(&capOpts.Rate, "connect-rate", capOpts.Rate, "With --capacity: connects a `second`, all load generator workers together.")
	fs.StringVar(&out, "out", "", "The `directory` that receives results.json and results.md; empty means bench-results/cluster-UTCTIMESTAMP.")
	if err := fs.parse(args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "pushrelay bench cluster: %v\n", err)
		return 2
	}
	opts.Stderr = stderr
	cmd, err := bench.DefaultRelayCommand()
	if err != nil {
		fmt.Fprintf(stderr, "pushrelay bench cluster: %v\n", err)
		return 1
	}
	opts.RelayCommand = append(cmd, strings.Fields(relayFlags)...)
	ctx, cancel := benchContext()
	defer cancel()
	if capOpts.Conns > 0 {
		if capOpts.Single == 0 {
			capOpts.Single = bench.CapacityOff
		}
		capOpts.NATS, capOpts.RelayCommand, capOpts.Stderr = opts.NATS, opts.RelayCommand, stderr
		res, err := bench.RunClusterCapacity(ctx, capOpts)
		if err != nil {
			fmt.Fprintf(stderr, "pushrelay bench cluster: %v\n", err)
			return 1
		}
		return benchReport(stdout, stderr, "cluster-capacity", out, res.Started, res, res.Markdown())
	}
	res, err := bench.RunCluster(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "pushrelay bench cluster: %v\n", err)
		return 1
	}
	return benchReport(stdout, stderr, "cluster", out, res.Started, res, res.Markdown())
}
