package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pushrelay/pushrelay/internal/bench"
)

func runBenchWeb(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench web", "Measures the browser transports of the web listener (--web): relay memory per idle WebSocket and SSE connection, and broadcast time to the last client with and without permessage-deflate, beside raw TCP clients of the same relay. Each transport runs against a fresh relay process.", stderr)
	opts := bench.WebDefaults()
	var transports, out string
	fs.IntVar(&opts.Conns, "conns", opts.Conns, "How many clients (`N`) each transport's run holds (this process holds them: at most about 19,000 here).")
	fs.StringVar(&transports, "transports", strings.Join(opts.Transports, ","), "The transports to measure, in order, as a comma-separated `list` of tcp, ws, ws-deflate and sse.")
	fs.IntVar(&opts.Broadcasts, "broadcasts", opts.Broadcasts, "Measured broadcasts (`N`) per transport.")
	fs.IntVar(&opts.Size, "size", opts.Size, "The broadcast payload's size in `bytes` (timestamped JSON).")
	fs.DurationVar(&opts.Settle, "settle", opts.Settle, "How `long` the clients sit idle before memory is read.")
	fs.StringVar(&out, "out", "", "The `directory` that receives results.json and results.md; empty means bench-results/web-UTCTIMESTAMP.")
	if err := fs.parse(args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "pushrelay bench web: %v\n", err)
		return 2
	}
	if opts.Conns <= 0 || opts.Broadcasts <= 0 || opts.Size < 64 {
		fmt.Fprintln(stderr, "pushrelay bench web: want --conns and --broadcasts of at least 1 and --size of at least 64")
		return 2
	}
	opts.Transports, opts.Stderr = splitBenchList(transports), stderr
	ctx, cancel := benchContext()
	defer cancel()
	started := time.Now()
	res, err := bench.RunWeb(ctx, opts)
	if err != nil {
		fmt.Fprintf(stderr, "pushrelay bench web: %v\n", err)
		return 1
	}
	res.Command = "pushrelay bench web " + strings.Join(args, " ")
	if code := benchReport(stdout, stderr, "web", out, started, res, res.Markdown()); code != 0 {
		return code
	}
	if res.Partial {
		return 1
	}
	return 0
}
