package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBenchCapacityCtrlCLeavesAPartialReport runs `pushrelay bench
// capacity` in a process group of its own, as a shell runs a command, and
// once the first step is done sends SIGINT to the whole group, as Ctrl-C
// does: the relay, the load generator's workers and the children get it
// too. The bench exits 130 with a whole report of the step it completed,
// and leaves no process of the group behind.
func TestBenchCapacityCtrlCLeavesAPartialReport(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command(binary, "bench", "capacity", "--steps", "100,200,300", "--broadcasts", "1",
		"--unicasts", "20", "--unicast-rate", "500", "--throughput", "0", "--settle", "100ms", "--out", out)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) })
	var log strings.Builder
	stepDone := make(chan struct{})
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if !signalled && strings.Contains(sc.Text(), "step 1 done") {
				signalled = true
				close(stepDone)
			}
		}
	}()
	select {
	case <-stepDone:
	case <-time.After(2 * time.Minute):
		t.Fatal("no step done within 2 minutes")
	}
	if err := syscall.Kill(-pgid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { <-scanned; exited <- cmd.Wait() }()
	select {
	case err = <-exited:
	case <-time.After(time.Minute):
		t.Fatalf("bench capacity did not exit within a minute of Ctrl-C:\n%s", log.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit: %v; want status 130\n%s", err, log.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	var res struct {
		Interrupted bool `json:"interrupted"`
		Steps       []struct {
			Conns    int             `json:"conns"`
			Relay    json.RawMessage `json:"relay"`
			Baseline json.RawMessage `json:"baseline"`
			Floor    json.RawMessage `json:"floor"`
		} `json:"steps"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("results.json: %v", err)
	}
	if !res.Interrupted || len(res.Steps) != 1 || res.Steps[0].Conns != 100 || res.Steps[0].Baseline == nil || res.Steps[0].Floor == nil {
		t.Fatalf("results.json: interrupted %v, steps %+v; want the first step whole, interrupted", res.Interrupted, res.Steps)
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil || !strings.Contains(string(md), "**Interrupted**") || !strings.Contains(string(md), "| 1 | baseline | 100 of 100 |") || !bytes.Equal(md, stdout.Bytes()) {
		t.Errorf("results.md (%v) lacks the interruption or the baseline, or differs from what was printed:\n%s", err, md)
	}
	svg, err := os.ReadFile(filepath.Join(out, "chart.svg"))
	if err != nil {
		t.Fatal(err)
	}
	for dec := xml.NewDecoder(bytes.NewReader(svg)); ; {
		if _, err := dec.Token(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("chart.svg: %v", err)
		}
	}
	// Everything it started, it stopped: the group empties.
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(-pgid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("processes of the bench's group still run 10 s after it exited:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
