package main

import (
	"io"
	"net"
	"slices"
	"strings"
	"testing"
)

// FuzzParseMessage: send's argument parser never panics on any arguments,
// and whatever follows the flags and the ID is the message, word for word,
// whatever it looks like.
func FuzzParseMessage(f *testing.F) {
	for _, s := range [][2]string{{"--ingress\x00x", "-5 degrees"}, {"--timeout=1s", "--help"}, {"-h", "--"}, {"--", "-"}, {"--bogus\x00--", "x"}, {"-FGkhDgAAAAAAAAAAAAAAA", "m"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, raw, msg string) {
		c := newClientCmd("send", "ID MSG", "", io.Discard)
		c.parseMessage(strings.Split(raw, "\x00"), io.Discard, 2)

		c = newClientCmd("send", "ID MSG", "", io.Discard)
		args := []string{"--ingress", "/x.sock", "ID", msg}
		pos, _, ok := c.parseMessage(args, io.Discard, 2)
		if !ok || !slices.Equal(pos, []string{"ID", msg}) || c.ingress != "/x.sock" {
			t.Fatalf("send %q: ok %v, positional %q, ingress %q; want [ID %q] and /x.sock", args, ok, pos, c.ingress, msg)
		}
	})
}

// FuzzClientAddress: connect's address parser never panics, and what it
// returns always has a port.
func FuzzClientAddress(f *testing.F) {
	for _, s := range []string{"127.0.0.1:8843", "localhost", "::1", "[::1]:1", "host:", "a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, arg string) {
		addr, err := clientAddress(arg)
		if err != nil {
			return
		}
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			t.Fatalf("clientAddress(%q) = %q: no port (%v)", arg, addr, err)
		}
	})
}
