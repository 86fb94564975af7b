// Package testutil holds the helpers that the tests of several packages
// share. It imports only the standard library, so any package's tests may
// use it without linking the server into a package that must stay free of it.
package testutil

import (
	"context"
	"io"
	"log/slog"
	"os"
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
