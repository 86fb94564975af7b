package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/pushrelay/pushrelay/loadgen"
)

func runLoadgen(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == loadgen.WorkerArg {
		if err := loadgen.WorkerMain(); err != nil {
			fmt.Fprintf(stderr, "pushrelay loadgen worker: %v\n", err)
			return 1
		}
		return 0
	}
	fs := newFlagSet("loadgen", "Opens many idle client connections to a relay, holds them, reads and checks every frame, and reports: connections established, failures by errno, messages, latency of stamped messages (payloads starting \"@pr1:<unix ns>:\"), and its own CPU and memory.", stderr)
	target := fs.String("target", "127.0.0.1:8843", "The relay's client `HOST:PORT`.")
	conns := fs.Int("conns", 1000, "How many connections (`N`) to open.")
	rate := fs.Float64("rate", 0, "Connects per `second`, all workers together; 0 opens them as fast as the machine allows.")
	framing := fs.String("framing", "nul", "The target's `framing`: nul, line or len32 for the client listener; ws, ws-deflate (offering permessage-deflate) or sse for the web listener (--web), whose HOST:PORT is then the --target.")
	duration := fs.Duration("duration", 30*time.Second, "How `long` to hold the connections once open; the run always stops by itself.")
	deadline := fs.Duration("deadline", 0, "An upper bound on the whole run, connecting included (`time`); 0 means --duration plus one minute.")
	procs := fs.Int("procs", 0, "Worker processes (`N`); 0 uses as many as the open-file limit requires.")
	sources := fs.String("sources", "", "Local `addresses` to connect from, in turn: a range like 127.0.0.1-127.0.0.50 or a comma-separated list; each gives its own ephemeral ports. Empty: for a loopback target past 8,000 connections, 127.0.0.1 on, one address per 8,000; otherwise the kernel chooses.")
	recvbuf := fs.Int("recvbuf", 0, "SO_RCVBUF for each client socket, in `bytes`; 0 keeps the kernel's default.")
	jsonOut := fs.String("json", "", "Write every figure as JSON to this `file`.")
	idsOut := fs.String("ids", "", "Write the connections' IDs, one per line, to this `file`, as soon as every connection is established (or failed), before the hold: push to them during the run.")
	handshake := fs.Duration("handshake-timeout", loadgen.DefaultHandshake, "How `long` to wait for the first ID frame before giving up: the target is not a relay, or speaks another --framing.")
	netns := fs.Bool("netns", false, "Run in a private network namespace (root and ip(8) needed): its own loopback, port range and somaxconn, deleted afterwards. The relay must run inside it too: see --serve.")
	serveArgs := fs.String("serve", "", "With --netns, the `arguments` of the `pushrelay serve` started inside the namespace; empty means --listen set to --target, with no ingress, no HTTP and no web listener. \"none\" starts nothing.")
	if code, ok := fs.parseOrExit(args, stdout, stderr); !ok {
		return code
	}
	if _, err := loadgen.CheckTarget(*target); err != nil {
		fmt.Fprintf(stderr, "pushrelay loadgen: --%v\n", err)
		return 2
	}
	opts := loadgen.Options{Target: *target, Conns: *conns, Rate: *rate, Duration: *duration, Deadline: *deadline, Procs: *procs, RecvBuf: *recvbuf, WantIDs: *idsOut != "", FailFast: true, Handshake: *handshake}
	var err error
	if opts.Framing, opts.Web, err = loadgen.ParseFraming(*framing); err != nil {
		fmt.Fprintf(stderr, "pushrelay loadgen: --framing: %v\n", err)
		return 2
	}
	if opts.Sources, err = loadgen.ParseSources(*sources); err != nil {
		fmt.Fprintf(stderr, "pushrelay loadgen: --sources: %v\n", err)
		return 2
	}
	if *conns <= 0 || *rate < 0 || *duration < 0 || *procs < 0 || *handshake < 0 {
		fmt.Fprintln(stderr, "pushrelay loadgen: --conns must be positive; --rate, --duration, --procs and --handshake-timeout not negative")
		return 2
	}
	var idsErr error
	idsWritten := false
	if *idsOut != "" {
		// Fail on an unwritable --ids now, not after the run; the file
		// itself appears only with the IDs in it.
		if err := writeIDs(*idsOut+".check", nil); err != nil {
			fmt.Fprintf(stderr, "pushrelay loadgen: --ids: %v\n", err)
			return 2
		}
		os.Remove(*idsOut + ".check")
		opts.IDsReady = func(ids []string) {
			idsErr = writeIDs(*idsOut, ids)
			idsWritten = idsErr == nil
			if idsWritten {
				nl := ""
				if isTerminal(os.Stderr) {
					nl = "\n" // after the progress bar
				}
				fmt.Fprintf(stderr, "%sloadgen: %d IDs written to %s\n", nl, len(ids), *idsOut)
			}
		}
	}
	if *netns {
		ns, code := startNamespace(*target, *serveArgs, stderr)
		if ns == nil {
			return code
		}
		defer ns.Close()
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "pushrelay loadgen: %v\n", err)
			return 1
		}
		opts.Executable = ns.Wrap([]string{exe, "loadgen"})
	} else if *serveArgs != "" {
		fmt.Fprintln(stderr, "pushrelay loadgen: --serve goes with --netns")
		return 2
	}
	tty := isTerminal(os.Stderr)
	lastLine := time.Time{}
	opts.Progress = func(p loadgen.Progress) {
		if tty {
			width := 30
			filled := int(float64(width) * float64(p.Established) / float64(*conns))
			filled = min(max(filled, 0), width)
			fmt.Fprintf(stderr, "\r[%s%s] %d/%d held  %d failed  %d msgs  %s %5.1fs ", strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.Established, *conns, p.Failed, p.Messages, p.Phase, p.Elapsed.Seconds())
			if p.Phase == "done" {
				fmt.Fprintln(stderr)
			}
			return
		}
		if time.Since(lastLine) >= 2*time.Second || p.Phase == "done" {
			lastLine = time.Now()
			fmt.Fprintf(stderr, "loadgen: %s %.1fs: %d/%d held, %d failed, %d messages\n", p.Phase, p.Elapsed.Seconds(), p.Established, *conns, p.Failed, p.Messages)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := loadgen.Run(ctx, opts)
	if rep == nil {
		fmt.Fprintf(stderr, "pushrelay loadgen: %s\n", strings.TrimPrefix(err.Error(), "loadgen: "))
		return 1
	}
	printLoadReport(stdout, rep)
	if err != nil {
		fmt.Fprintf(stderr, "pushrelay loadgen: %s\n", strings.TrimPrefix(err.Error(), "loadgen: "))
	}
	if idsErr != nil {
		fmt.Fprintf(stderr, "pushrelay loadgen: --ids: %v\n", idsErr)
		return 1
	}
	if *idsOut != "" && !idsWritten {
		// No worker got as far as its IDs (interrupted, failed).
		if werr := writeIDs(*idsOut, rep.IDs); werr != nil {
			fmt.Fprintf(stderr, "pushrelay loadgen: --ids: %v\n", werr)
			return 1
		}
	}
	if *jsonOut != "" {
		rep.IDs = nil
		b, _ := json.MarshalIndent(rep, "", "  ")
		if werr := os.WriteFile(*jsonOut, append(b, '\n'), 0o644); werr != nil {
			fmt.Fprintf(stderr, "pushrelay loadgen: --json: %v\n", werr)
			return 1
		}
	}
	if err != nil || rep.Established < int64(*conns) {
		return 1
	}
	return 0
}

// writeIDs writes ids one a line, whole or not at all: a reader waiting
// for the file never sees half of it.
func writeIDs(path string, ids []string) error {
	tmp := path + ".tmp"
	body := strings.Join(ids, "\n")
	if len(ids) > 0 {
		body += "\n"
	}
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// startNamespace creates the private namespace and starts the relay in it.
func startNamespace(target, serveArgs string, stderr io.Writer) (*loadgen.Namespace, int) {
	ns, err := loadgen.NewNamespace()
	if err != nil {
		fmt.Fprintf(stderr, "pushrelay loadgen: --netns: %v\n", err)
		return nil, 1
	}
	if serveArgs == "none" {
		return ns, 0
	}
	args := strings.Fields(serveArgs)
	if len(args) == 0 {
		args = []string{"--listen", target, "--ingress=", "--http=", "--web="}
	}
	exe, err := os.Executable()
	if err == nil {
		_, err = ns.Start(append([]string{exe, "serve"}, args...), os.Stderr)
	}
	if err == nil {
		err = ns.WaitListening(target, 10*time.Second)
	}
	if err != nil {
		ns.Close()
		fmt.Fprintf(stderr, "pushrelay loadgen: --netns: %v\n", err)
		return nil, 1
	}
	fmt.Fprintf(stderr, "loadgen: in network namespace %s, relay serving on %s\n", ns.Name, target)
	return ns, 0
}

func printLoadReport(w io.Writer, r *loadgen.Report) {
	fmt.Fprintf(w, "target %s (%s framing): %d of %d connections established in %v (%.0f/s), %d held at the end",
		r.Target, r.Framing, r.Established, r.Requested, r.ConnectTime.Round(time.Millisecond), r.ConnectRate, r.HeldAtEnd)
	if r.Interrupted {
		fmt.Fprint(w, " (interrupted: partial report)")
	}
	fmt.Fprintln(w)
	if len(r.Failed) > 0 {
		kinds := make([]string, 0, len(r.Failed))
		for k := range r.Failed {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		fmt.Fprint(w, "failures:")
		for _, k := range kinds {
			fmt.Fprintf(w, " %s %d", k, r.Failed[k])
		}
		fmt.Fprintf(w, "; first: %s after %v, while %s\n", r.FirstFailure, r.FirstFailureAt.Round(time.Millisecond), map[string]string{"connect": "connecting", "established": "held"}[r.FirstPhase])
	}
	if len(r.Sources) > 0 {
		fmt.Fprintf(w, "from %d source addresses, %s to %s\n", len(r.Sources), r.Sources[0], r.Sources[len(r.Sources)-1])
	}
	fmt.Fprintf(w, "messages %d (%d stamped), heartbeats %d, %d bytes read\n", r.Messages, r.Stamped, r.Heartbeats, r.Bytes)
	if r.Latency.Count > 0 {
		l := r.Latency
		fmt.Fprintf(w, "latency p50 %v p90 %v p99 %v p999 %v max %v\n", l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	fmt.Fprintf(w, "load generator: %d worker processes, CPU %v, RSS %.1f MiB (%.0f bytes per held connection); reading: %s\n",
		len(r.Workers), r.CPU.Round(time.Millisecond), float64(r.RSS)/(1<<20), r.BytesPerConn, r.Reading)
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
