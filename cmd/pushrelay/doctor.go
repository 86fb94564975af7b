package main

import (
	"fmt"
	"io"

	"github.com/pushrelay/pushrelay/kernel-tuning/doctor"
)

// runDoctor reads the host's limits and says which one stops the target
// connection count and how to lift it. Exit 0: the target fits as the host
// stands; 1: it does not (the output says what to change); 2: usage.
func runDoctor(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("doctor", "Reads this host's limits and usage and says, for a target number of client connections, which limit stops it first, at how many connections, and the exact change that lifts it, in order, until the target fits; also the memory the target needs. Exits 0 when the target fits as the host stands, 1 when it does not.", stderr)
	var (
		target  int64
		loadgen bool
		asJSON  bool
		root    string
		stalled int64
	)
	fs.Int64Var(&target, "target", doctor.DefaultTarget, "How many client connections (`N`) to plan for, on top of what the host uses now.")
	fs.BoolVar(&loadgen, "loadgen", false, "Count a load generator on this host too: its sockets, files and ephemeral ports.")
	fs.BoolVar(&asJSON, "json", false, "Print the report as JSON for machines instead of text for people.")
	fs.Int64Var(&stalled, "stalled", 0, "How many clients (`N`) to plan for that stop reading at once, for the --sndbuf the doctor recommends; 0 means 1% of --target, at least 1,000.")
	fs.StringVar(&root, "root", "/", "Read /proc and /sys under this `directory` instead of the running host's, such as a snapshot recorded from another host.")
	if code, ok := fs.parseOrExit(args, stdout, stderr); !ok {
		return code
	}
	if target <= 0 {
		fmt.Fprintf(stderr, "pushrelay doctor: --target %d: want a positive number of connections\n", target)
		return 2
	}
	if stalled < 0 {
		fmt.Fprintf(stderr, "pushrelay doctor: --stalled %d: want a number of connections, or 0 for 1%% of --target (at least 1,000)\n", stalled)
		return 2
	}
	host, err := doctor.Read(root)
	if err != nil {
		fmt.Fprintf(stderr, "pushrelay doctor: --root: %v\n", err)
		return 2
	}
	report := doctor.Analyze(host, doctor.Options{Target: target, Loadgen: loadgen, Stalled: stalled})
	if asJSON {
		err = report.WriteJSON(stdout)
	} else {
		err = report.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pushrelay doctor: write report: %v\n", err)
		return 1
	}
	if !report.FitsNow {
		return 1
	}
	return 0
}
