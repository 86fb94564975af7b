package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

// The three client command lines, the Go binary and the Python and Node
// clients of docs/clients, run against the same relay with the same cases:
// each case's standard output and exit status must be the same for all
// three (docs/clients/README.md has the rule).

var scriptClients = []struct{ interp, file string }{
	{"python3", "../../docs/clients/pushrelay_client.py"},
	{"node", "../../docs/clients/pushrelay_client.js"},
}

// runTool runs one client command line to completion.
func runTool(t *testing.T, name string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("%s %v did not exit", name, args)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

func TestClientCommandLinesAgree(t *testing.T) {
	for _, sc := range scriptClients {
		if _, err := exec.LookPath(sc.interp); err != nil {
			t.Skipf("%s is not installed", sc.interp)
		}
	}
	p := startRelay(t, nil, "--listen", "127.0.0.1:0")
	_, id, _ := p.client(t)
	const unknown = "AAAAAAAAAAAAAAAAAAAAAA"
	if code, _, stderr := p.cli(t, "subscribe", id, "news"); code != 0 {
		t.Fatalf("subscribe: exit %d: %s", code, stderr)
	}
	noRelay := filepath.Join(t.TempDir(), "none.sock")
	big := strings.Repeat("x", relay.DefaultMaxMessage+1)

	counts := func(q, u int) string {
		return `{"queued":` + string(rune('0'+q)) + `,"unknown":` + string(rune('0'+u)) + `,"dropped":0,"overloaded":0,"unsupported":0}` + "\n"
	}
	cases := []struct {
		name     string
		sock     string
		cmd      string
		args     []string
		wantCode int
		wantOut  string // "-": not compared (each prints its own form)
	}{
		{"send", p.sock, "send", []string{id, "hi"}, 0, counts(1, 0)},
		{"send to an unknown ID", p.sock, "send", []string{unknown, "hi"}, 4, counts(0, 1)},
		{"send too large", p.sock, "send", []string{id, big}, 1, ""},
		{"send to a malformed ID", p.sock, "send", []string{"not-an-id", "hi"}, 1, ""},
		{"publish", p.sock, "publish", []string{"news", "hi"}, 0, counts(1, 0)},
		{"publish to nobody", p.sock, "publish", []string{"nobody", "hi"}, 0, counts(0, 0)},
		{"broadcast", p.sock, "broadcast", []string{"hi"}, 0, counts(1, 0)},
		{"presence", p.sock, "presence", []string{"news"}, 0, id + "\n"},
		{"presence of an empty topic", p.sock, "presence", []string{"nobody"}, 0, ""},
		{"subscribe an unknown ID", p.sock, "subscribe", []string{unknown, "news"}, 4, ""},
		{"kick an unknown ID", p.sock, "kick", []string{unknown}, 4, ""},
		{"list", p.sock, "list", nil, 0, id + "\n"},
		{"no relay", noRelay, "send", []string{id, "hi"}, 3, ""},
		{"usage", p.sock, "send", []string{id}, 2, ""},
	}
	if code, out, errs := runTool(t, binary, "presence", "--ingress", p.sock, "--count", "news"); code != 0 || out != "1\n" {
		t.Errorf("presence --count news: exit %d, %q (%s); want 0 and \"1\"", code, out, errs)
	}
	pushes := map[string]bool{"send": true, "publish": true, "broadcast": true}
	for _, tc := range cases {
		goCmd := tc.cmd
		if goCmd == "list" {
			goCmd = "clients"
		}
		goArgs := []string{goCmd, "--ingress", tc.sock}
		if pushes[tc.cmd] {
			goArgs = append(goArgs, "--json")
		}
		type result struct {
			who       string
			code      int
			out, errs string
		}
		code, out, errs := runTool(t, binary, append(goArgs, tc.args...)...)
		results := []result{{"pushrelay", code, out, errs}}
		for _, sc := range scriptClients {
			code, out, errs := runTool(t, sc.interp, append([]string{sc.file, tc.sock, tc.cmd}, tc.args...)...)
			results = append(results, result{filepath.Base(sc.file), code, out, errs})
		}
		for _, r := range results {
			if r.code != tc.wantCode {
				t.Errorf("%s: %s exits %d, want %d (stderr %q)", tc.name, r.who, r.code, tc.wantCode, r.errs)
			}
			if r.out != tc.wantOut {
				t.Errorf("%s: %s prints %q, want %q", tc.name, r.who, r.out, tc.wantOut)
			}
			if r.code != 0 && r.code != 2 && (r.errs == "" || strings.Count(strings.TrimSpace(r.errs), "\n") > 0) {
				t.Errorf("%s: %s exits %d with stderr %q, want one line saying why", tc.name, r.who, r.code, r.errs)
			}
		}
	}
}

// TestScriptClientsQuietWhenOutputCloses: a reader that stops reading (|
// head) is not a missing relay.
func TestScriptClientsQuietWhenOutputCloses(t *testing.T) {
	p := startRelay(t, nil, "--listen", "127.0.0.1:0")
	p.client(t)
	for _, sc := range scriptClients {
		if _, err := exec.LookPath(sc.interp); err != nil {
			t.Skipf("%s is not installed", sc.interp)
		}
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		r.Close() // the reader is gone before anything is written
		cmd := exec.Command(sc.interp, sc.file, p.sock, "list")
		var errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = w, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		w.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%s list did not exit", sc.file)
		}
		if code := cmd.ProcessState.ExitCode(); code != 0 || errb.Len() != 0 {
			t.Errorf("%s list into a closed pipe: exit %d, stderr %q; want 0 and silence", filepath.Base(sc.file), code, errb.String())
		}
	}
}
