package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartFailureUndoesEveryStep: when start-up fails half-way, what was
// already set up is taken down again: no ingress socket file is left and
// the client port is free, whichever step failed (the HTTP port, the
// client port, the ready file after the relay served).
func TestStartFailureUndoesEveryStep(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	free := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"http port taken", []string{"--http", busy.Addr().String()}, "in use"},
		{"client port taken", []string{"--http", "127.0.0.1:0", "--listen", busy.Addr().String()}, "address already in use"},
		{"ready file unwritable", []string{"--http", "127.0.0.1:0", "--ready-file", "/nonexistent/ready.json"}, "--ready-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "r.sock")
			listen := free()
			args := append([]string{"serve", "--listen", listen, "--web", "", "--ingress", sock}, tc.args...)
			code, _, stderr := runBinary(t, nil, args...)
			if code != 1 || !strings.Contains(stderr, tc.wantErr) {
				t.Fatalf("exit %d, %q; want exit 1 and %q", code, stderr, tc.wantErr)
			}
			if _, err := os.Stat(sock); !os.IsNotExist(err) {
				t.Errorf("ingress socket left behind: %v", err)
			}
			if !strings.Contains(strings.Join(tc.args, " "), "--listen") {
				ln, err := net.Listen("tcp", listen)
				if err != nil {
					t.Errorf("client port %s still taken after the failed start: %v", listen, err)
				} else {
					ln.Close()
				}
			}
		})
	}
}
