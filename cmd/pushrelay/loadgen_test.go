package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoadgenFailsFastWithTheReason: when no connection can succeed the
// run stops at once (well before --duration) and says why.
func TestLoadgenFailsFastWithTheReason(t *testing.T) {
	p := startRelay(t, nil, "--listen", "127.0.0.1:0")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	cases := []struct {
		name     string
		args     []string
		code     int
		stderr   []string
		stdout   string
		oneError bool
	}{
		{"framing mismatch", []string{"--target", p.addr, "--framing", "line", "--handshake-timeout", "1s"}, 1,
			[]string{"no ID frame after 1s: is " + p.addr + " a pushrelay listener with --framing line?"}, "0 of 20 connections established", false},
		{"len32 against nul", []string{"--target", p.addr, "--framing", "len32"}, 1,
			[]string{"(BAD_FRAME 20)", "with --framing len32?"}, "failures: BAD_FRAME 20", false},
		{"no relay", []string{"--target", dead}, 1,
			[]string{"(ECONNREFUSED 20)", "is a relay running and listening on " + dead + "?", "20 failed"}, "failures: ECONNREFUSED 20", false},
		{"no port", []string{"--target", "localhost"}, 2,
			[]string{`pushrelay loadgen: --target "localhost": want HOST:PORT such as 127.0.0.1:8843`}, "", true},
		{"port zero", []string{"--target", "127.0.0.1:0"}, 2, []string{"port 0"}, "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// --duration is long: waiting it out would fail runBinary's 10s
			// bound.
			code, out, stderr := runBinary(t, nil, append([]string{"loadgen", "--conns", "20", "--duration", "60s"}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			for _, want := range tc.stderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q", want)
				}
			}
			if !strings.Contains(out, tc.stdout) || (tc.stdout == "" && out != "") {
				t.Errorf("stdout %q, want %q", out, tc.stdout)
			}
			if tc.oneError && strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("want one line of error")
			}
			if strings.Count(stderr, "loadgen: ") > strings.Count(stderr, "\n") {
				t.Errorf("a prefix repeats in a line")
			}
			if t.Failed() {
				t.Logf("stdout:\n%s\nstderr:\n%s", out, stderr)
			}
		})
	}
}

// TestLoadgenWritesIDsBeforeTheHold: --ids is there to push to while the
// connections are held, and a push to one of them is counted.
func TestLoadgenWritesIDsBeforeTheHold(t *testing.T) {
	p := startRelay(t, nil, "--listen", "127.0.0.1:0")
	idsPath := filepath.Join(t.TempDir(), "ids")
	cmd := exec.Command(binary, "loadgen", "--target", p.addr, "--conns", "50", "--procs", "2", "--duration", "60s", "--ids", idsPath)
	var out, errb lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	}()
	var ids []string
	for deadline := time.Now().Add(10 * time.Second); len(ids) == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no --ids file 10s into a 60s hold; stderr:\n%s", errb.String())
		}
		b, _ := os.ReadFile(idsPath)
		ids = strings.Fields(string(b))
	}
	if len(ids) != 50 {
		t.Fatalf("--ids holds %d IDs during the hold, want 50", len(ids))
	}
	if code, _, stderr := p.cli(t, "send", ids[7], "to one held connection"); code != 0 {
		t.Fatalf("send to an ID from --ids: exit %d %s", code, stderr)
	}
	time.Sleep(600 * time.Millisecond) // a progress line or two
	cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("loadgen did not stop on SIGINT")
	}
	if !strings.Contains(out.String(), "messages 1 ") || !strings.Contains(errb.String(), "50 IDs written to "+idsPath) {
		t.Fatalf("report:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
}
