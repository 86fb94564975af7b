package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/kernel-tuning/doctor"
)

// snapshotRoot is one of the doctor's recorded hosts.
func snapshotRoot(name string) string {
	return filepath.Join("..", "..", "kernel-tuning", "doctor", "testdata", name)
}

func TestDoctorJSON(t *testing.T) {
	tests := []struct {
		snap      string
		args      []string
		wantCode  int
		binding   string
		bindingAt int64
		fitsAfter bool
		processes int64
	}{
		{"default", []string{"--target", "1000000"}, 1, doctor.LimitConntrack, 262144, true, 1},
		{"default", []string{"--target", "15000"}, 0, "", 0, true, 1},
		{"tuned", nil, 0, "", 0, true, 1}, // the default target, 1,000,000
		{"container", []string{"--target", "100000"}, 1, doctor.LimitNofile, 19826, true, 6},
		{"container", []string{"--target=1000000", "--loadgen"}, 1, doctor.LimitNofile, 19826, false, 51},
	}
	for _, tt := range tests {
		t.Run(tt.snap+strings.Join(tt.args, ""), func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append([]string{"doctor", "--root", snapshotRoot(tt.snap), "--json"}, tt.args...)
			code := run(args, &out, &errb)
			if code != tt.wantCode {
				t.Errorf("exit status: got %d, want %d; stderr: %s", code, tt.wantCode, errb.String())
			}
			var r doctor.Report
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out.String())
			}
			if r.Binding != tt.binding || r.BindingAt != tt.bindingAt {
				t.Errorf("binding: got %q at %d, want %q at %d", r.Binding, r.BindingAt, tt.binding, tt.bindingAt)
			}
			if r.FitsAfterFixes != tt.fitsAfter || r.Processes != tt.processes {
				t.Errorf("after fixes: got fits %v as %d processes, want %v as %d", r.FitsAfterFixes, r.Processes, tt.fitsAfter, tt.processes)
			}
			if r.FitsNow != (code == 0) {
				t.Errorf("fits_now %v with exit status %d", r.FitsNow, code)
			}
		})
	}
}

func TestDoctorText(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"doctor", "--root", snapshotRoot("container"), "--target", "100000"}, &out, &errb)
	if code != 1 {
		t.Errorf("exit status: got %d, want 1; stderr: %s", code, errb.String())
	}
	for _, want := range []string{
		"can this host hold 100,000 client connections?",
		"First to bind: open files per process (RLIMIT_NOFILE), at 19,826 connections.",
		"Cannot be raised here",
		"6 relay processes",
		"Verdict: ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("text report: want %q in it:\n%s", want, out.String())
		}
	}
}

func TestDoctorEnvironment(t *testing.T) {
	t.Setenv("PUSHRELAY_DOCTOR_TARGET", "15000")
	t.Setenv("PUSHRELAY_DOCTOR_ROOT", snapshotRoot("default"))
	var out, errb bytes.Buffer
	if code := run([]string{"doctor", "--json"}, &out, &errb); code != 0 {
		t.Fatalf("exit status: got %d, want 0; stderr: %s", code, errb.String())
	}
	var r doctor.Report
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatal(err)
	}
	if r.Target != 15000 || r.Host.NofileHard != 524288 {
		t.Errorf("from the environment: got target %d on a host with hard limit %d, want 15000 and the default snapshot's 524288", r.Target, r.Host.NofileHard)
	}
}

func TestDoctorUsage(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		code    int
		wantErr string
	}{
		{[]string{"--target", "0"}, 2, "--target 0"},
		{[]string{"--target", "lots"}, 2, "invalid value"},
		{[]string{"--stalled", "-1"}, 2, "--stalled -1"},
		{[]string{"--bogus"}, 2, "bogus"},
		{[]string{"extra"}, 2, "unexpected argument"},
		{[]string{"--root", "/nonexistent-root"}, 2, "holds no proc directory"},
		{[]string{"--help"}, 0, ""},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"doctor"}, tt.args...), &out, &errb)
		if code != tt.code || !strings.Contains(errb.String(), tt.wantErr) {
			t.Errorf("%v: got status %d, stderr %q; want %d and %q", tt.args, code, errb.String(), tt.code, tt.wantErr)
		}
	}
	var out bytes.Buffer
	run([]string{"doctor", "--help"}, &out, &out)
	for _, flag := range []string{"--target", "--loadgen", "--json", "--root", "--stalled", "PUSHRELAY_DOCTOR_TARGET"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("--help: want %s in it:\n%s", flag, out.String())
		}
	}
}

// TestDoctorSendBuffer: the doctor names the --sndbuf that keeps the
// planned stalled clients under tcp_mem's pressure value, for the target
// and the --stalled count given.
func TestDoctorSendBuffer(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		// 1,000 stalled of 15,000 on the default host: 368 pages each.
		{[]string{"--target", "15000"}, "pushrelay serve --sndbuf 736KiB"},
		{[]string{"--target", "15000", "--stalled", "2000"}, "pushrelay serve --sndbuf 368KiB"},
		{[]string{"--target", "15000", "--stalled", "100"}, "the relay needs no --sndbuf"},
	} {
		var out, errb bytes.Buffer
		run(append([]string{"doctor", "--root", snapshotRoot("default")}, tt.args...), &out, &errb)
		if !strings.Contains(out.String(), tt.want) {
			t.Errorf("%v: want %q in the report:\n%s%s", tt.args, tt.want, out.String(), errb.String())
		}
	}
}

// TestDoctorLiveHost runs the binary's doctor on this machine: whatever
// the numbers, the exit status must agree with the verdict.
func TestDoctorLiveHost(t *testing.T) {
	for _, target := range []string{"1000", "1000000"} {
		var out, errb bytes.Buffer
		code := run([]string{"doctor", "--json", "--target", target}, &out, &errb)
		if code == 2 {
			t.Fatalf("target %s: usage error: %s", target, errb.String())
		}
		var r doctor.Report
		if err := json.Unmarshal(out.Bytes(), &r); err != nil {
			t.Fatalf("target %s: output is not JSON: %v", target, err)
		}
		if r.FitsNow != (code == 0) || len(r.Limits) == 0 {
			t.Errorf("target %s: fits_now %v with exit status %d and %d limits", target, r.FitsNow, code, len(r.Limits))
		}
	}
}
