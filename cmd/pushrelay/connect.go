package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pushrelay/pushrelay/relay"
)

// runConnect is a client of the relay's client listener, for a first try
// and for debugging: it prints the ID, then every message, one a line, as
// each arrives.
func runConnect(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("connect", "Connects to the relay's client listener as a client does and prints every frame as one line as it arrives: the first is this client's ID, to push to; then each message. A frame that is not printable text on one line is printed Go-quoted (\"a\\nb\"); heartbeats (empty frames) are not printed. Stops at Ctrl-C or when the relay closes the connection.\n\nArguments: [HOST:PORT], default 127.0.0.1:8843 (serve's default --listen); a HOST alone means port 8843.", stderr)
	framing := fs.String("framing", "nul", "The relay's framing, as given to its `--framing`: nul, line or len32.")
	fs.share("framing")
	timeout := fs.Duration("timeout", 5*time.Second, "How `long` to wait for the connection and for the ID frame.")
	addr, code, ok := parseWithAddress(fs, args, stdout, stderr)
	if !ok {
		return code
	}
	f, err := relay.ParseFraming(*framing)
	if err != nil {
		fmt.Fprintf(stderr, "pushrelay connect: --framing: %v\n", err)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	d := net.Dialer{Timeout: *timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if ctx.Err() != nil {
			return exitOK
		}
		fmt.Fprintf(stderr, "pushrelay connect: no relay at %s (is `pushrelay serve` running with --listen %s?): %v\n", addr, addr, err)
		return exitUnreachable
	}
	defer nc.Close()
	// Ctrl-C closes the connection, which ends the read below.
	go func() {
		<-ctx.Done()
		nc.Close()
	}()
	fmt.Fprintf(stderr, "connected to %s (%s framing); the first line is this client's ID, then each message; Ctrl-C quits\n", addr, f)
	fr := relay.NewFrameReader(nc, f, relay.MaxMessageLimit)
	nc.SetReadDeadline(time.Now().Add(*timeout))
	wrongFraming := fmt.Sprintf("is the relay's --framing %s? Try the others (nul, line, len32)", f)
	gotID, msgs := false, 0
	for {
		frame, err := fr.Next()
		switch {
		case ctx.Err() != nil:
			fmt.Fprintf(stderr, "pushrelay connect: interrupted after %d message(s)\n", msgs)
			return exitOK
		case err == nil:
		case !gotID && isTimeout(err):
			fmt.Fprintf(stderr, "pushrelay connect: no ID frame after %v: %s\n", *timeout, wrongFraming)
			return exitRefused
		case !gotID && errors.Is(err, io.EOF):
			fmt.Fprintf(stderr, "pushrelay connect: the relay closed the connection before sending an ID (at its --max-conns, or draining?)\n")
			return exitRefused
		case !gotID:
			fmt.Fprintf(stderr, "pushrelay connect: no ID frame (%v): %s\n", err, wrongFraming)
			return exitRefused
		case errors.Is(err, io.EOF):
			fmt.Fprintf(stderr, "pushrelay connect: the relay closed the connection after %d message(s)\n", msgs)
			return exitOK
		default:
			fmt.Fprintf(stderr, "pushrelay connect: %v after %d messages\n", err, msgs)
			return exitUnreachable
		}
		if !gotID {
			if !relay.ValidID(string(frame)) {
				fmt.Fprintf(stderr, "pushrelay connect: the first frame %s is not an ID: %s\n", printable(frame), wrongFraming)
				return exitRefused
			}
			gotID = true
			nc.SetReadDeadline(time.Time{})
			fmt.Fprintln(stdout, string(frame))
			continue
		}
		if len(frame) == 0 {
			continue // a heartbeat
		}
		msgs++
		fmt.Fprintln(stdout, printable(frame))
	}
}

// printable returns b as it is when it is printable text on one line,
// else Go-quoted.
func printable(b []byte) string {
	if !utf8.Valid(b) {
		return strconv.Quote(string(b))
	}
	for _, r := range string(b) {
		if !unicode.IsPrint(r) && r != '\t' {
			return strconv.Quote(string(b))
		}
	}
	return string(b)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// parseWithAddress parses flags before and after one optional HOST:PORT
// argument and returns the address, 127.0.0.1:8843 by default.
func parseWithAddress(fs *flagSet, args []string, stdout, stderr io.Writer) (string, int, bool) {
	fail := func(err error) (string, int, bool) {
		if errors.Is(err, flag.ErrHelp) {
			return "", exitOK, false
		}
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return "", exitUsage, false
	}
	if err := fs.parseFlags(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.printUsage(stdout)
		}
		return fail(err)
	}
	// The flags after the address, then the environment.
	var pos, rest []string
	if fs.NArg() > 0 {
		pos, rest = []string{fs.Arg(0)}, fs.Args()[1:]
	}
	if code, ok := fs.parseOrExit(rest, stdout, stderr); !ok {
		return "", code, false
	}
	addr := "127.0.0.1:8843"
	if len(pos) == 1 {
		var err error
		if addr, err = clientAddress(pos[0]); err != nil {
			return fail(err)
		}
	}
	return addr, exitOK, true
}

// clientAddress reads connect's HOST:PORT argument: a HOST alone means
// port 8843, serve's default.
func clientAddress(arg string) (string, error) {
	addr := arg
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "8843")
	}
	if host, port, err := net.SplitHostPort(addr); err != nil || port == "" || strings.ContainsAny(host+port, " \t\n") {
		return "", fmt.Errorf("address %q: want HOST:PORT such as 127.0.0.1:8843", arg)
	}
	return addr, nil
}
