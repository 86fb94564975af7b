package relayproc

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/internal/readyfile"
)

// sh runs script as a stand-in for serve: Start appends --ready-file PATH,
// which the script sees as $1 and $2.
func sh(script string) []string { return []string{"/bin/sh", "-c", script, "sh"} }

func TestStartReadsTheReadyFile(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	ready := filepath.Join(t.TempDir(), "ready.json")
	p, err := Start(sh(`echo starting >&2; printf '{"pid":1,"listen":"127.0.0.1:9"}' > "$2"; exec sleep 30`), nil, ready, func(l string) {
		mu.Lock()
		lines = append(lines, l)
		mu.Unlock()
	}, 10*time.Second)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if p.Ready.Listen != "127.0.0.1:9" {
		t.Fatalf("Ready.Listen = %q, want 127.0.0.1:9", p.Ready.Listen)
	}
	p.Kill()
	if p.Err() == nil {
		t.Fatal("Err after Kill: nil, want the kill")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lines) != 1 || lines[0] != "starting" {
		t.Fatalf("log lines %q, want [starting]", lines)
	}
}

func TestStartSaysWhyItGaveUp(t *testing.T) {
	dir := t.TempDir()
	p, err := Start(sh(`exit 3`), nil, filepath.Join(dir, "a.json"), func(string) {}, 10*time.Second)
	if !errors.Is(err, readyfile.ErrExited) || p == nil || p.Err() == nil {
		t.Fatalf("exit before ready: %v, want ErrExited and the exit status", err)
	}
	p, err = Start(sh(`exec sleep 30`), nil, filepath.Join(dir, "b.json"), func(string) {}, 100*time.Millisecond)
	if !errors.Is(err, readyfile.ErrTimeout) || p == nil {
		t.Fatalf("never ready: %v, want ErrTimeout", err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("the process that was never ready is still running")
	}
	if _, err := Start([]string{filepath.Join(dir, "missing")}, nil, filepath.Join(dir, "c.json"), func(string) {}, time.Second); err == nil {
		t.Fatal("Start of a missing binary: no error")
	}
}
