// Command pushrelay is the write-only push relay: `pushrelay serve` runs it,
// the other subcommands talk to it or measure it. See README.md.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// command is one subcommand: run gets the arguments after its name and
// returns the process exit status.
type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"serve", "run the relay", runServe},
		{"connect", "connect as a client and print the ID, then each message, one a line: connect [HOST:PORT]", runConnect},
		{"send", "push a message to one client: send ID MSG", runSend},
		{"publish", "push a message to a topic's subscribers: publish TOPIC MSG", runPublish},
		{"broadcast", "push a message to every client: broadcast MSG", runBroadcast},
		{"subscribe", "subscribe a client to topics: subscribe ID TOPIC...", runSubscribe},
		{"unsubscribe", "unsubscribe a client from topics: unsubscribe ID TOPIC...", runUnsubscribe},
		{"kick", "close a client's connection: kick ID", runKick},
		{"clients", "list connected clients, or describe one: clients [ID]", runClients},
		{"presence", "list a topic's subscribers, or count them: presence TOPIC", runPresence},
		{"watch", "print connect and disconnect events as they happen", runWatch},
		{"stats", "print the relay's counters", runStats},
		{"loadgen", "hold many idle client connections to a relay and measure what they receive", runLoadgen},
		{"bench", benchSummary(), runBench},
		{"doctor", "say which host limit stops a target connection count, and how to lift it", runDoctor},
		{"version", "print the version (also --version, -v)", runVersion},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" || args[0] == "-v" {
		return runVersion(args[1:], stdout, stderr)
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	hint := ""
	if near := nearestCommand(args[0]); near != "" {
		hint = fmt.Sprintf("did you mean %s? ", near)
	}
	fmt.Fprintf(stderr, "pushrelay: unknown command %q (%srun 'pushrelay help' for the list)\n", args[0], hint)
	return 2
}

// nearestCommand returns the command name a mistyped one was likely meant
// to be, or "".
func nearestCommand(name string) string {
	best, bestD := "", max(1, len(name)/3)+1
	for _, c := range commands() {
		if d := editDistance(name, c.name); d < bestD {
			best, bestD = c.name, d
		}
	}
	return best
}

// benchSummary lists bench's modes, from the list bench runs.
func benchSummary() string {
	var modes []string
	for _, c := range benchCommands() {
		if c.name != "child" {
			modes = append(modes, c.name)
		}
	}
	return "benchmarks, each beside its baseline: " + strings.Join(modes, ", ")
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "pushrelay: a write-only push relay. Clients connect and receive their ID;")
	fmt.Fprintln(w, "the web app pushes messages to them by ID.")
	fmt.Fprintln(w, "\nUsage: pushrelay COMMAND [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'pushrelay COMMAND --help' for a command's flags.")
}
