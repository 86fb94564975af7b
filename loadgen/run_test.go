package loadgen

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/pkg/stamp"
	"github.com/pushrelay/pushrelay/relay"
)

// TestMain lets this test binary act as a worker process: Run starts
// workers as the executable plus WorkerArg.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[len(os.Args)-1] == WorkerArg {
		if err := WorkerMain(); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func workerExe() []string { return []string{os.Args[0], "-test.run=^$"} }

func TestRunOverWorkersAndSources(t *testing.T) {
	srv := startRelay(t, relay.FramingNUL)
	opts := Options{
		Target:     srv.Addr().String(),
		Conns:      2000,
		Procs:      2,
		Sources:    []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")},
		Duration:   10 * time.Second,
		WantIDs:    true,
		Executable: workerExe(),
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Once everyone is connected, push stamped messages to 100 of them,
	// then end the hold early by interrupting the run.
	var windowed uint64
	opts.Progress = func(p Progress) {
		if p.Window != nil {
			windowed += p.Window.Count()
		}
		if p.Established == 2000 && srv.Len() == 2000 && ctx.Err() == nil {
			ids, _, _ := srv.List("", 100)
			for _, id := range ids {
				srv.Send(id, stamp.Append(nil, time.Now()))
			}
			go func() { time.Sleep(300 * time.Millisecond); cancel() }()
		}
	}
	rep, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Established != 2000 || len(rep.IDs) != 2000 || len(rep.Workers) != 2 {
		t.Fatalf("established %d, IDs %d, workers %d; failures %v", rep.Established, len(rep.IDs), len(rep.Workers), rep.Failed)
	}
	// Every reported ID is one the relay issued (its connect events).
	issued := map[string]bool{}
	evs, _, _, _ := srv.EventsSince(1, nil, 10000)
	for _, ev := range evs {
		if ev.Kind == relay.EventConnect {
			issued[ev.ID] = true
		}
	}
	for _, id := range rep.IDs {
		if !issued[id] {
			t.Fatalf("reported ID %s was never issued by the relay", id)
		}
	}
	if rep.Stamped != 100 || rep.Latency.Count != 100 || rep.Latency.P50 <= 0 {
		t.Fatalf("stamped %d, latency %+v; want 100 timed messages", rep.Stamped, rep.Latency)
	}
	if !rep.Interrupted {
		t.Fatal("an interrupted run does not say so")
	}
	if windowed != 100 {
		t.Fatalf("progress windows carried %d timed messages, want the 100 pushed", windowed)
	}
	if rep.BytesPerConn <= 0 || rep.CPU <= 0 {
		t.Fatalf("own cost not reported: %v bytes/conn, CPU %v", rep.BytesPerConn, rep.CPU)
	}
}

func TestRunReportsRefusal(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	// Nothing can succeed: the run ends with the reason, not after the
	// minute of --duration.
	rep, err := Run(context.Background(), Options{Target: addr, Conns: 10, Procs: 1, Duration: time.Minute, FailFast: true, Executable: workerExe()})
	if err == nil || !strings.Contains(err.Error(), "(ECONNREFUSED 10)") || !strings.Contains(err.Error(), "is a relay running and listening on "+addr) {
		t.Fatalf("error %v; want the refusals and what to check", err)
	}
	if rep.Failed["ECONNREFUSED"] != 10 || rep.FirstFailure != "ECONNREFUSED" {
		t.Fatalf("failures %v, first %q", rep.Failed, rep.FirstFailure)
	}
}

func TestRunReportsALimitInsideAWorkerByErrno(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) not installed")
	}
	srv := startRelay(t, relay.FramingNUL)
	// A worker whose open-file limit is 60 cannot hold 100 connections.
	exe := append([]string{prlimit, "--nofile=60:60"}, workerExe()...)
	rep, err := Run(context.Background(), Options{Target: srv.Addr().String(), Conns: 100, Procs: 1, Duration: 500 * time.Millisecond, Executable: exe})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed["EMFILE"] == 0 || rep.FirstFailure != "EMFILE" || rep.Established == 0 || rep.Established >= 100 {
		t.Fatalf("established %d, failures %v, first %q; want EMFILE after some successes", rep.Established, rep.Failed, rep.FirstFailure)
	}
}

func TestRunStopsAtItsDeadline(t *testing.T) {
	srv := startRelay(t, relay.FramingNUL)
	start := time.Now()
	rep, err := Run(context.Background(), Options{Target: srv.Addr().String(), Conns: 10, Procs: 1, Duration: time.Hour, Deadline: 1500 * time.Millisecond, Executable: workerExe()})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("a run with a 1.5s deadline took %v", took)
	}
	if rep.Established != 10 {
		t.Fatalf("established %d", rep.Established)
	}
}

func TestParseSources(t *testing.T) {
	got, err := ParseSources("127.0.0.1-127.0.0.3, 127.0.0.9")
	if err != nil || len(got) != 4 || got[2].String() != "127.0.0.3" || got[3].String() != "127.0.0.9" {
		t.Fatalf("ParseSources = %v, %v", got, err)
	}
	for _, bad := range []string{"127.0.0.5-127.0.0.1", "nonsense", "127.0.0.1-::1"} {
		if _, err := ParseSources(bad); err == nil || !strings.Contains(err.Error(), "source") {
			t.Errorf("ParseSources(%q) error %v", bad, err)
		}
	}
}

func TestAutoSourcesSpreadLoopbackTargets(t *testing.T) {
	got := AutoSources("127.0.0.1:8843", 19000)
	if len(got) != 3 || got[0].String() != "127.0.0.1" || got[2].String() != "127.0.0.3" {
		t.Fatalf("19,000 to loopback: %v, want 127.0.0.1 to 127.0.0.3", got)
	}
	if got := AutoSources("127.0.0.1:8843", 5000); got != nil {
		t.Fatalf("5,000 connections: %v, want the kernel's choice", got)
	}
	if got := AutoSources("10.1.2.3:8843", 50000); got != nil {
		t.Fatalf("non-loopback target: %v", got)
	}
}
