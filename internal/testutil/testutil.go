// Package testutil holds the helpers that the tests of several packages
// share. It imports only the standard library, so any package's tests may
// use it without linking the server into a package that must stay free of it.
package testutil

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Logger is silent unless PUSHRELAY_TEST_LOG is set; then it writes every
// record, debug included, to stderr.
func Logger() *slog.Logger {
	if os.Getenv("PUSHRELAY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// ShutdownAtEnd calls shutdown with a context that expires after d when the
// test ends; its error is ignored, as a test that cares checks it itself.
func ShutdownAtEnd(t testing.TB, d time.Duration, shutdown func(context.Context) error) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		_ = shutdown(ctx)
	})
}

// dumpMarker finds a hex dump in a document: the marker comment
// <!-- dump: NAME --> and the fenced block after it.
var dumpMarker = regexp.MustCompile("(?s)<!-- dump: ([a-z0-9_.-]+) -->\\s*```\\n(.*?)```")

// DocDumps returns the bytes of every marked hex dump in the document at
// path, by name; a dump that does not parse fails the test.
func DocDumps(t testing.TB, path string) map[string][]byte {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dumps := map[string][]byte{}
	for _, m := range dumpMarker.FindAllStringSubmatch(string(text), -1) {
		b, err := ParseHexDump(m[2])
		if err != nil {
			t.Fatalf("%s, block %s: %v", strings.TrimLeft(path, "./"), m[1], err)
		}
		dumps[m[1]] = b
	}
	return dumps
}

// ParseHexDump reads the bytes back from `hexdump -C` output (hex.Dump's).
func ParseHexDump(s string) ([]byte, error) {
	var out []byte
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if len(line) < 10 {
			return nil, fmt.Errorf("line %q is not hexdump -C output", line)
		}
		cols, _, _ := strings.Cut(line[10:], "  |")
		for _, f := range strings.Fields(cols) {
			b, err := hex.DecodeString(f)
			if err != nil || len(b) != 1 {
				return nil, fmt.Errorf("line %q: %q is not a byte", line, f)
			}
			out = append(out, b[0])
		}
	}
	return out, nil
}
