package main

import (
	"context"
	"encoding/json"
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
	"unicode"

	"github.com/pushrelay/pushrelay/ingress/client"
	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// Exit statuses of the commands that talk to a running relay, the same in
// the Python and Node clients' command lines (docs/clients/README.md).
const (
	exitOK          = 0
	exitRefused     = 1 // the relay answered no: limit, too large, bad request...
	exitUsage       = 2
	exitUnreachable = 3 // no relay answered on the socket
	exitUnknownID   = 4 // no such client is connected
)

// clientCmd is the shared part of the commands that talk to the relay: the
// socket flag, a timeout, and how errors become one line and an exit code.
type clientCmd struct {
	name           string
	args, synopsis string
	fs             *flagSet
	ingress        string
	timeout        time.Duration
	stderr         io.Writer
}

func newClientCmd(name, args, synopsis string, stderr io.Writer) *clientCmd {
	c := &clientCmd{name: name, args: args, synopsis: synopsis, stderr: stderr}
	c.fs = newFlagSet(name, synopsis+"\n\nArguments: "+args+"\n\nExit status: 0 when the relay accepted the request, 1 when it refused it (the reason is printed), 2 for a usage error, 3 when no relay answers on the socket, 4 when no client with that ID is connected.", stderr)
	c.fs.StringVar(&c.ingress, "ingress", "./pushrelay.sock", "The relay's ingress socket `PATH` (as given to pushrelay serve --ingress).")
	c.fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "How `long` to wait for the relay's answer.")
	c.fs.share("ingress")
	return c
}

// parse parses flags and checks the positional argument count.
func (c *clientCmd) parse(args []string, stdout io.Writer, minArgs, maxArgs int) ([]string, int, bool) {
	// Positional arguments may come before or after flags. About one ID in
	// 64 starts with '-', which the flag package would take for a flag:
	// an argument shaped like an ID that names no flag is positional.
	var pos []string
	rest := args[:0:0]
	for _, a := range args {
		if c.idNotFlag(a) {
			pos = append(pos, a)
			continue
		}
		rest = append(rest, a)
	}
	for {
		if err := c.fs.parseFlags(rest); err != nil {
			return nil, c.flagError(err, stdout), false
		}
		if c.fs.NArg() == 0 {
			break
		}
		pos = append(pos, c.fs.Arg(0))
		rest = c.fs.Args()[1:]
	}
	return c.finish(pos, stdout, minArgs, maxArgs)
}

// parseMessage parses the arguments of send, publish and broadcast: flags
// first, then the positional arguments, of which the last is the message
// and takes every word after the ones before it (joined by spaces, as echo
// does), whatever it starts with: `send ID -5 degrees` sends "-5 degrees"
// and `send ID --help` sends "--help". "--" ends the flags explicitly.
func (c *clientCmd) parseMessage(args []string, stdout io.Writer, nargs int) ([]string, int, bool) {
	i := 0
	unknown := "" // the first argument that names no flag
	for i < len(args) {
		a := args[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" || c.idNotFlag(a) {
			break
		}
		i++
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := c.fs.Lookup(name)
		if f == nil && unknown == "" {
			unknown = a
		}
		if f == nil || hasValue {
			continue // parseFlags names an unknown flag
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		i++ // the flag's value
	}
	i = min(i, len(args))
	if err := c.fs.parseFlags(args[:i]); err != nil {
		if unknown != "" && !errors.Is(err, flag.ErrHelp) && !flagShaped(strings.TrimLeft(unknown, "-")) {
			// A message (broadcast's only argument) that starts with
			// '-', not a mistyped flag: say how to send it.
			err = fmt.Errorf("%w (a message that starts with '-' goes after --: pushrelay %s -- %q)", err, c.name, unknown)
		}
		return nil, c.flagError(err, stdout), false
	}
	pos := args[i:]
	if len(pos) > 0 && pos[0] == "--" {
		pos = pos[1:]
	}
	if len(pos) >= nargs {
		pos = append(pos[:nargs-1:nargs-1], strings.Join(pos[nargs-1:], " "))
	}
	return c.finish(pos, stdout, nargs, nargs)
}

// flagShaped reports whether name could be a flag's name: letters, digits
// and dashes, starting with a letter.
func flagShaped(name string) bool {
	if name == "" || !unicode.IsLetter(rune(name[0])) {
		return false
	}
	return !strings.ContainsFunc(name, func(r rune) bool { return r != '-' && r != '=' && !unicode.IsLetter(r) && !unicode.IsDigit(r) })
}

// idNotFlag reports whether a, which starts with '-', is a client ID that
// names no flag.
func (c *clientCmd) idNotFlag(a string) bool {
	name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
	return strings.HasPrefix(a, "-") && relay.ValidID(a) && c.fs.Lookup(name) == nil
}

// flagError prints a flag parsing error (or the usage, for --help) and
// returns the exit status.
func (c *clientCmd) flagError(err error, stdout io.Writer) int {
	if errors.Is(err, flag.ErrHelp) {
		c.fs.printUsage(stdout)
		return exitOK
	}
	fmt.Fprintf(c.stderr, "pushrelay %s: %v\n", c.name, err)
	return exitUsage
}

// finish fills flags from the environment and checks the argument count.
func (c *clientCmd) finish(pos []string, stdout io.Writer, minArgs, maxArgs int) ([]string, int, bool) {
	// Environment variables for flags not given.
	if err := c.fs.parse(nil, stdout); err != nil {
		fmt.Fprintf(c.stderr, "pushrelay %s: %v\n", c.name, err)
		return nil, exitUsage, false
	}
	if len(pos) < minArgs || (maxArgs >= 0 && len(pos) > maxArgs) {
		fmt.Fprintf(c.stderr, "pushrelay %s: want arguments %s (run 'pushrelay %s --help')\n", c.name, c.args, c.name)
		return nil, exitUsage, false
	}
	return pos, exitOK, true
}

// dial connects to the relay, or prints why not.
func (c *clientCmd) dial() (*client.Client, int) {
	cl, err := client.Dial(c.ingress, client.Options{DialTimeout: c.timeout})
	if err != nil {
		fmt.Fprintf(c.stderr, "pushrelay %s: %v\n", c.name, err)
		return nil, exitUnreachable
	}
	return cl, exitOK
}

// session parses the arguments, dials the relay, and runs fn with the
// client and the positional arguments; it returns fn's exit status, or
// the one that stopped it before.
func (c *clientCmd) session(argv []string, stdout io.Writer, minArgs, maxArgs int, fn func(cl *client.Client, pos []string) int) int {
	pos, code, ok := c.parse(argv, stdout, minArgs, maxArgs)
	if !ok {
		return code
	}
	cl, code := c.dial()
	if cl == nil {
		return code
	}
	defer cl.Close()
	return fn(cl, pos)
}

// fail prints err as one line and returns the exit status it means.
func (c *clientCmd) fail(err error) int {
	// The relay's messages may start with the operation's name, which the
	// prefix already says.
	fmt.Fprintf(c.stderr, "pushrelay %s: %s\n", c.name, strings.TrimPrefix(err.Error(), c.name+": "))
	var e *client.Error
	if errors.As(err, &e) {
		if e.Status == wire.StatusUnknownID {
			return exitUnknownID
		}
		return exitRefused
	}
	if errors.Is(err, context.DeadlineExceeded) {
		fmt.Fprintf(c.stderr, "pushrelay %s: no answer within %v\n", c.name, c.timeout)
	}
	return exitUnreachable
}

func (c *clientCmd) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), c.timeout)
}

// payloadArg returns MSG, or standard input when MSG is "-".
func payloadArg(msg string) ([]byte, error) {
	if msg != "-" {
		return []byte(msg), nil
	}
	b, err := io.ReadAll(os.Stdin)
	if err != nil {
		return nil, fmt.Errorf("read the message from standard input: %w", err)
	}
	return b, nil
}

// pushCommand builds send, publish and broadcast.
func pushCommand(name, args, synopsis string, nargs int, push func(ctx context.Context, cl *client.Client, pos []string, payload []byte) (client.Counts, error), report func(pos []string, c client.Counts, stdout, stderr io.Writer) int) func([]string, io.Writer, io.Writer) int {
	return func(argv []string, stdout, stderr io.Writer) int {
		c := newClientCmd(name, args, synopsis, stderr)
		asJSON := c.fs.Bool("json", false, `Print the counts as one JSON object with the HTTP API's names: {"queued":N,"unknown":N,"dropped":N,"overloaded":N,"unsupported":N}, and "unreachable" (a cluster's) when not zero.`)
		pos, code, ok := c.parseMessage(argv, stdout, nargs)
		if !ok {
			return code
		}
		payload, err := payloadArg(pos[nargs-1])
		if err != nil {
			fmt.Fprintf(stderr, "pushrelay %s: %v\n", name, err)
			return exitUsage
		}
		cl, code := c.dial()
		if cl == nil {
			return code
		}
		defer cl.Close()
		ctx, cancel := c.ctx()
		defer cancel()
		counts, err := push(ctx, cl, pos, payload)
		if err != nil {
			return c.fail(err)
		}
		if *asJSON {
			stdout.Write(countsJSON(counts))
			stdout = io.Discard // the counts are said
		}
		return report(pos, counts, stdout, stderr)
	}
}

// countsJSON is c as the HTTP API writes counts (docs/http.md), one line.
func countsJSON(c client.Counts) []byte {
	b := fmt.Appendf(nil, `{"queued":%d,"unknown":%d,"dropped":%d,"overloaded":%d,"unsupported":%d`, c.Queued, c.UnknownID, c.DroppedSlow, c.Overloaded, c.Unsupported)
	if c.Unreachable != 0 {
		b = fmt.Appendf(b, `,"unreachable":%d`, c.Unreachable)
	}
	return append(b, "}\n"...)
}

func fanoutReport(what string) func([]string, client.Counts, io.Writer, io.Writer) int {
	return func(_ []string, c client.Counts, stdout, _ io.Writer) int {
		fmt.Fprintf(stdout, "queued for %d %s", c.Queued, what)
		if c.DroppedSlow > 0 || c.Overloaded > 0 {
			fmt.Fprintf(stdout, " (%d dropped as slow, %d refused as overloaded)", c.DroppedSlow, c.Overloaded)
		}
		if c.Unsupported > 0 {
			fmt.Fprintf(stdout, "; not sent to %d whose transport cannot carry it (tcp: a byte the framing forbids; SSE: not UTF-8)", c.Unsupported)
		}
		if c.Unreachable > 0 {
			fmt.Fprintf(stdout, "; %d relay nodes did not answer in time (their clients may have missed it)", c.Unreachable)
		}
		fmt.Fprintln(stdout)
		return exitOK
	}
}

var runSend = pushCommand("send", "ID MSG", "Pushes MSG (or standard input, for -) to the client with that ID. Flags go before the arguments; every word after them is the message (joined by spaces), even one that starts with '-'; \"--\" ends the flags explicitly.", 2,
	func(ctx context.Context, cl *client.Client, pos []string, payload []byte) (client.Counts, error) {
		return cl.Send(ctx, pos[0], payload)
	},
	func(pos []string, c client.Counts, stdout, stderr io.Writer) int {
		switch {
		case c.Queued == 1:
			fmt.Fprintln(stdout, "queued for 1 client")
			return exitOK
		case c.UnknownID == 1:
			fmt.Fprintf(stderr, "pushrelay send: unknown client ID %s: no such client is connected\n", pos[0])
			return exitUnknownID
		case c.DroppedSlow == 1:
			fmt.Fprintf(stderr, "pushrelay send: dropped: client %s is over its outbound cap (--slow=drop)\n", pos[0])
		default:
			fmt.Fprintf(stderr, "pushrelay send: not queued: the relay's queue for client %s is full; retry later\n", pos[0])
		}
		return exitRefused
	})

var runPublish = pushCommand("publish", "TOPIC MSG", "Pushes MSG (or standard input, for -) to every client subscribed to TOPIC. Flags go before the arguments; every word after them is the message (joined by spaces), even one that starts with '-'; \"--\" ends the flags explicitly.", 2,
	func(ctx context.Context, cl *client.Client, pos []string, payload []byte) (client.Counts, error) {
		return cl.Publish(ctx, pos[0], payload)
	}, fanoutReport("subscribers"))

var runBroadcast = pushCommand("broadcast", "MSG", "Pushes MSG (or standard input, for -) to every connected client. Flags go before the arguments; every word after them is the message (joined by spaces), even one that starts with '-'; \"--\" ends the flags explicitly.", 1,
	func(ctx context.Context, cl *client.Client, pos []string, payload []byte) (client.Counts, error) {
		return cl.Broadcast(ctx, payload)
	}, fanoutReport("clients"))

func topicCommand(name, verb string, sub bool) func([]string, io.Writer, io.Writer) int {
	return func(argv []string, stdout, stderr io.Writer) int {
		c := newClientCmd(name, "ID TOPIC...", fmt.Sprintf("%s the client with that ID %s each TOPIC.", verb, map[bool]string{true: "to", false: "from"}[sub]), stderr)
		return c.session(argv, stdout, 2, -1, func(cl *client.Client, pos []string) int {
			ctx, cancel := c.ctx()
			defer cancel()
			op := cl.Unsubscribe
			if sub {
				op = cl.Subscribe
			}
			n, err := op(ctx, pos[0], pos[1:]...)
			if err != nil {
				return c.fail(err)
			}
			fmt.Fprintf(stdout, "%s %d of %d topics\n", map[bool]string{true: "subscribed to", false: "unsubscribed from"}[sub], n, len(pos)-1)
			return exitOK
		})
	}
}

var (
	runSubscribe   = topicCommand("subscribe", "Subscribes", true)
	runUnsubscribe = topicCommand("unsubscribe", "Unsubscribes", false)
)

func runKick(argv []string, stdout, stderr io.Writer) int {
	c := newClientCmd("kick", "ID", "Closes the connection of the client with that ID, after what was queued for it.", stderr)
	return c.session(argv, stdout, 1, 1, func(cl *client.Client, pos []string) int {
		ctx, cancel := c.ctx()
		defer cancel()
		if err := cl.Kick(ctx, pos[0]); err != nil {
			return c.fail(err)
		}
		return exitOK
	})
}

func runClients(argv []string, stdout, stderr io.Writer) int {
	c := newClientCmd("clients", "[ID]", "Lists the connected client IDs, one per line; with an ID, says whether it is connected, since when and from where.", stderr)
	return c.session(argv, stdout, 0, 1, func(cl *client.Client, pos []string) int {
		if len(pos) == 1 {
			ctx, cancel := c.ctx()
			defer cancel()
			info, err := cl.Info(ctx, pos[0])
			if err != nil {
				return c.fail(err)
			}
			if !info.Connected {
				fmt.Fprintf(stderr, "pushrelay clients: %s is not connected\n", pos[0])
				return exitUnknownID
			}
			fmt.Fprintf(stdout, "%s connected since %s from %s\n", pos[0], info.Since.UTC().Format(time.RFC3339Nano), info.Remote)
			return exitOK
		}
		return c.printPages(stdout, func(ctx context.Context, cursor string) ([]string, string, error) {
			return cl.List(ctx, cursor, 10000)
		})
	})
}

// printPages prints the IDs of every page that page returns, one a line,
// from cursor "" to the page whose next cursor is "".
func (c *clientCmd) printPages(stdout io.Writer, page func(ctx context.Context, cursor string) (ids []string, next string, err error)) int {
	for cursor := ""; ; {
		ctx, cancel := c.ctx()
		ids, next, err := page(ctx, cursor)
		cancel()
		if err != nil {
			return c.fail(err)
		}
		for _, id := range ids {
			fmt.Fprintln(stdout, id)
		}
		if next == "" {
			return exitOK
		}
		cursor = next
	}
}

func runPresence(argv []string, stdout, stderr io.Writer) int {
	c := newClientCmd("presence", "TOPIC", "Lists the IDs of the clients subscribed to TOPIC, one per line (every node's, in a cluster); with --count, prints only how many there are.", stderr)
	countOnly := c.fs.Bool("count", false, "Print only the number of subscribers.")
	return c.session(argv, stdout, 1, 1, func(cl *client.Client, pos []string) int {
		if *countOnly {
			ctx, cancel := c.ctx()
			defer cancel()
			// The count comes with every page: the first, of one ID, will do.
			_, _, count, err := cl.Presence(ctx, pos[0], "", 1)
			if err != nil {
				return c.fail(err)
			}
			fmt.Fprintln(stdout, count)
			return exitOK
		}
		return c.printPages(stdout, func(ctx context.Context, cursor string) ([]string, string, error) {
			ids, next, _, err := cl.Presence(ctx, pos[0], cursor, 10000)
			return ids, next, err
		})
	})
}

func runStats(argv []string, stdout, stderr io.Writer) int {
	c := newClientCmd("stats", "(none)", "Prints every counter and gauge of the relay as a table: the metric (without its pushrelay_ prefix), its labels, its value.", stderr)
	asJSON := c.fs.Bool("json", false, "Print one JSON object, metric{labels} to value, instead of the table.")
	raw := c.fs.Bool("raw", false, "Print Prometheus text lines, metric{labels} value, as /metrics does, instead of the table.")
	return c.session(argv, stdout, 0, 0, func(cl *client.Client, _ []string) int {
		ctx, cancel := c.ctx()
		defer cancel()
		stats, err := cl.Stats(ctx)
		if err != nil {
			return c.fail(err)
		}
		switch {
		case *asJSON:
			m := map[string]float64{}
			for _, s := range stats {
				m[metricKey(s)] = s.Value
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			enc.Encode(m)
		case *raw:
			for _, s := range stats {
				fmt.Fprintf(stdout, "%s %v\n", metricKey(s), s.Value)
			}
		default:
			printStatsTable(stdout, stats)
		}
		return exitOK
	})
}

// printStatsTable prints stats as a table: metric and labels flush left,
// values aligned on the right.
func printStatsTable(w io.Writer, stats []client.Stat) {
	rows := [][3]string{{"METRIC", "LABELS", "VALUE"}}
	for _, s := range stats {
		rows = append(rows, [3]string{strings.TrimPrefix(s.Name, "pushrelay_"), strings.ReplaceAll(s.Labels, `"`, ""), strconv.FormatFloat(s.Value, 'f', -1, 64)})
	}
	var width [3]int
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%-*s  %-*s  %*s\n", width[0], r[0], width[1], r[1], width[2], r[2])
	}
}

func metricKey(s client.Stat) string {
	if s.Labels == "" {
		return s.Name
	}
	return s.Name + "{" + s.Labels + "}"
}

func runWatch(argv []string, stdout, stderr io.Writer) int {
	c := newClientCmd("watch", "(none)", "Prints connect and disconnect events as they happen, until interrupted.", stderr)
	from := c.fs.Uint64("from", 0, "Start at this event sequence `number` (still in the relay's event log); 0 prints only new events.")
	asJSON := c.fs.Bool("json", false, "Print one JSON object per event instead of text.")
	return c.session(argv, stdout, 0, 0, func(cl *client.Client, _ []string) int {
		ctx, cancel := c.ctx()
		w, err := cl.Watch(ctx, *from)
		cancel()
		if err != nil {
			return c.fail(err)
		}
		fmt.Fprintf(stderr, "watching relay instance %s from event %d\n", w.Instance, max(*from, w.Last+1))
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
		defer signal.Stop(sigs)
		enc := json.NewEncoder(stdout)
		for {
			select {
			case <-sigs:
				return exitOK
			case ev, ok := <-w.Events():
				if !ok {
					fmt.Fprintf(stderr, "pushrelay watch: %v\n", w.Err())
					return exitUnreachable
				}
				if *asJSON {
					m := map[string]any{"seq": ev.Seq, "event": eventName(ev.Kind), "time": ev.Time.UTC(), "id": ev.ID, "remote": ev.Remote, "reason": ev.Reason, "lost": ev.Lost}
					if ev.Node != 0 {
						m["node"] = ev.Node
					}
					enc.Encode(m)
					continue
				}
				switch ev.Kind {
				case wire.EventLost:
					fmt.Fprintf(stdout, "%d lost %d events (the watcher fell behind)\n", ev.Seq, ev.Lost)
				default:
					line := fmt.Sprintf("%d %s %s %s %s", ev.Seq, ev.Time.UTC().Format(time.RFC3339Nano), eventName(ev.Kind), ev.ID, ev.Remote)
					if ev.Reason != "" {
						line += " " + ev.Reason
					}
					if ev.Node != 0 {
						line += fmt.Sprintf(" node=%d", ev.Node)
					}
					fmt.Fprintln(stdout, strings.TrimSpace(line))
				}
			}
		}
	})
}

func eventName(k wire.EventKind) string {
	switch k {
	case wire.EventConnect:
		return "connect"
	case wire.EventDisconnect:
		return "disconnect"
	case wire.EventLost:
		return "lost"
	}
	return "unknown"
}
