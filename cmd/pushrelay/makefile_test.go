package main

import (
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// freePort returns a loopback port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestRunClusterStopsRelaysThenNATS runs `make run-cluster` with two nodes
// and presses Ctrl-C as a terminal does (SIGINT to the whole foreground
// process group): every relay drains and stops while NATS still runs, so
// none warns, and every start-up and shutdown line names its node.
func TestRunClusterStopsRelaysThenNATS(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	root, _ := filepath.Abs("../..")
	// node i's HTTP port is base+i: find a base with base+1 and base+2 free.
	base := 0
	for try := 0; try < 20 && base == 0; try++ {
		p := freePort(t)
		if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+1)); err == nil {
			ln.Close()
			base = p - 1
		}
	}
	if base == 0 {
		t.Skip("no two consecutive free ports")
	}
	// The binaries under test, built here, not make's (-o: take them as
	// built).
	dir := t.TempDir()
	natsBin := filepath.Join(dir, "pushrelay-nats")
	if b, err := exec.Command("go", "build", "-o", natsBin, "../pushrelay-nats").CombinedOutput(); err != nil {
		t.Fatalf("build pushrelay-nats: %v\n%s", err, b)
	}
	cmd := exec.Command("make", "--no-print-directory", "-C", root, "-o", "build", "-o", "build-nats", "run-cluster", "NODES=2",
		"BIN="+binary, "NATS_BIN="+natsBin,
		"CLUSTER_NATS=127.0.0.1:"+strconv.Itoa(freePort(t)),
		"CLUSTER_LISTEN=127.0.0.1:"+strconv.Itoa(freePort(t)),
		"CLUSTER_WEB=127.0.0.1:"+strconv.Itoa(freePort(t)),
		"CLUSTER_HTTP_BASE="+strconv.Itoa(base))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	exited := make(chan struct{})
	defer func() {
		// The relays and NATS run in sessions of their own: only the
		// shell's trap stops them, so end it with a signal it traps.
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
	lines := scanLines(out, 1000, func() {
		cmd.Wait()
		close(exited)
	})
	var log strings.Builder
	listening := map[string]bool{}
	timeout := time.After(60 * time.Second)
	for len(listening) < 2 {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("make run-cluster ended before both relays listened:\n%s", log.String())
			}
			log.WriteString(l + "\n")
			if strings.Contains(l, `msg="relay listening"`) {
				for _, n := range []string{"node=1", "node=2"} {
					if strings.Contains(l, n) {
						listening[n] = true
					}
				}
			}
		case <-timeout:
			t.Fatalf("relays did not both say they listen, naming their node:\n%s", log.String())
		}
	}
	time.Sleep(300 * time.Millisecond) // both joined
	syscall.Kill(-pgid, syscall.SIGINT)
	done := make(chan struct{})
	var rest strings.Builder
	go func() {
		for l := range lines {
			rest.WriteString(l + "\n")
		}
		close(done)
	}()
	select {
	case <-done:
		log.WriteString(rest.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("make run-cluster did not stop after Ctrl-C:\n%s", log.String())
	}
	<-exited
	got := log.String()
	for _, n := range []string{"node=1", "node=2"} {
		found := false
		for _, l := range strings.Split(got, "\n") {
			if strings.Contains(l, `msg="shutting down"`) && strings.Contains(l, n) {
				found = true
			}
		}
		if !found {
			t.Errorf("no shutdown line naming %s", n)
		}
	}
	if strings.Contains(got, "level=WARN") || strings.Contains(got, "level=ERROR") {
		t.Errorf("a relay warned while the cluster stopped")
	}
	if !strings.Contains(got, "relays stopped, then NATS") {
		t.Errorf("run-cluster did not say it stopped the relays, then NATS")
	}
	if t.Failed() {
		t.Logf("output:\n%s", got)
	}
}

// TestMakeHelpAlignsAndInstallWorks: make help starts every description in
// one column, however long the target's name, and make install puts a
// working pushrelay in PREFIX/bin.
func TestMakeHelpAlignsAndInstallWorks(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make not installed")
	}
	root, _ := filepath.Abs("../..")
	out, err := exec.Command("make", "--no-print-directory", "-C", root, "help").CombinedOutput()
	if err != nil {
		t.Fatalf("make help: %v\n%s", err, out)
	}
	col := -1
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	for _, l := range lines {
		name := strings.Fields(l)[0]
		afterName := l[strings.Index(l, name)+len(name):]
		c := len(l) - len(strings.TrimLeft(afterName, " ")) // where the description starts
		if col == -1 {
			col = c
		}
		if c != col {
			t.Errorf("make help: %q's description starts at column %d, the first's at %d:\n%s", name, c, col, out)
		}
	}
	for _, want := range []string{"install", "run-cluster", "tuning-diff"} {
		if !strings.Contains(string(out), "  "+want+" ") {
			t.Errorf("make help lacks %s", want)
		}
	}
	prefix := t.TempDir()
	// -o build: install the binary under test rather than build another.
	if b, err := exec.Command("make", "--no-print-directory", "-C", root, "-o", "build", "install", "PREFIX="+prefix, "BIN="+binary).CombinedOutput(); err != nil {
		t.Fatalf("make install: %v\n%s", err, b)
	}
	v, err := exec.Command(filepath.Join(prefix, "bin", "pushrelay"), "--version").Output()
	if err != nil || !strings.HasPrefix(string(v), "pushrelay ") {
		t.Fatalf("installed pushrelay --version: %v %q", err, v)
	}
}
