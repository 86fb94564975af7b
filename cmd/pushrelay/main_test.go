package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/internal/proctest"
	"github.com/pushrelay/pushrelay/relay"
)

// binary is the pushrelay executable built once for these tests: the
// behaviour tested here is the binary's (flags, environment, signals, exit
// codes), so the tests run the real thing.
var binary string

func TestMain(m *testing.M) { proctest.Main(m, &binary) }

// relayProc is a running `pushrelay serve`.
type relayProc struct {
	*proctest.Proc
	cmd    *exec.Cmd
	sock   string // ingress socket
	addr   string // client listener
	policy string // policy listener, if any
	web    string // web listener, if any
	http   string // HTTP API's TCP listener, if any
	exited chan error
}

// startRelay runs `pushrelay serve` with args and env, waits for it to
// be ready, and kills it at the end of the test if it is still running.
func startRelay(t *testing.T, env []string, args ...string) *relayProc {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "r.sock")
	if !strings.Contains(strings.Join(append(env, args...), " "), "ingress") {
		args = append(args, "--ingress", sock)
	}
	if !strings.Contains(strings.Join(append(env, args...), " "), "http") {
		args = append(args, "--http", "127.0.0.1:0") // tests run side by side
	}
	if !strings.Contains(strings.Join(append(env, args...), " "), "web") {
		args = append(args, "--web", "127.0.0.1:0")
	}
	pp := proctest.Start(t, env, args...)
	return newRelayProc(pp, sock)
}

// newRelayProc wraps a started process; exited receives its exit once.
func newRelayProc(pp *proctest.Proc, sock string) *relayProc {
	p := &relayProc{Proc: pp, cmd: pp.Cmd, sock: sock, addr: pp.Ready.Listen, policy: pp.Ready.Policy,
		web: pp.Ready.Web, http: pp.Ready.HTTP, exited: make(chan error, 1)}
	go func() { p.exited <- pp.Err() }()
	return p
}

func (p *relayProc) logs() string { return p.Logs() }

func readID(t *testing.T, nc net.Conn, framing relay.Framing) (string, *relay.FrameReader) {
	t.Helper()
	fr := relay.NewFrameReader(nc, framing, 0)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	id, err := fr.Next()
	if err != nil || !relay.ValidID(string(id)) {
		t.Fatalf("first frame %q, %v: want an ID", id, err)
	}
	return string(id), fr
}

func TestServeSendsIDsAndStopsCleanlyOnSIGTERM(t *testing.T) {
	p := startRelay(t, nil, "--listen", "127.0.0.1:0", "--heartbeat", "50ms")
	var conns []net.Conn
	for i := 0; i < 20; i++ {
		nc, _, _ := p.client(t)
		conns = append(conns, nc)
	}
	p.stop(t)
	// Every client sees an orderly end of stream (after any heartbeats).
	for i, nc := range conns {
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, nc); err != nil {
			t.Fatalf("client %d: %v, want a clean EOF", i, err)
		}
	}
	if !strings.Contains(p.logs(), "relay stopped") {
		t.Fatalf("no shutdown log line:\n%s", p.logs())
	}
}

func TestEnvironmentConfiguresServe(t *testing.T) {
	p := startRelay(t, []string{"PUSHRELAY_FRAMING=line", "PUSHRELAY_LISTEN=127.0.0.1:0", "PUSHRELAY_MAX_CONNS=3"})
	nc, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	buf := make([]byte, 64)
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.ReadAtLeast(nc, buf, relay.IDLen+1)
	if err != nil || buf[n-1] != '\n' {
		t.Fatalf("ID frame %q, %v: want line framing from PUSHRELAY_FRAMING", buf[:n], err)
	}
	if !strings.Contains(p.logs(), "max_conns=3") {
		t.Fatalf("PUSHRELAY_MAX_CONNS not applied:\n%s", p.logs())
	}
	// A flag beats its variable.
	p2 := startRelay(t, []string{"PUSHRELAY_FRAMING=line"}, "--framing", "len32", "--listen", "127.0.0.1:0")
	nc2, err := net.Dial("tcp", p2.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	readID(t, nc2, relay.FramingLen32)
}

func TestFlashPolicyThroughTheBinary(t *testing.T) {
	p := startRelay(t, nil, "--listen", "127.0.0.1:0", "--flash-policy-listen", "127.0.0.1:0")
	got := askPolicy(t, p.policy)
	_, port, _ := net.SplitHostPort(p.addr)
	if !strings.HasSuffix(got, "</cross-domain-policy>\x00") || !strings.Contains(got, `to-ports="`+port+`"`) {
		t.Fatalf("policy %q", got)
	}
}

// run runs the binary to completion and returns its exit code and output.
func runBinary(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("pushrelay %v did not exit", args)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

func TestServeErrorsAreClearAndExitNonZero(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases := []struct {
		env      []string
		args     []string
		wantCode int
		wantErr  string
	}{
		{nil, []string{"serve", "--framing", "xml"}, 2, "unknown framing"},
		{nil, []string{"serve", "--slow", "maybe"}, 2, "--slow"},
		{nil, []string{"serve", "--max-outbound", "lots"}, 2, "byte count"},
		{nil, []string{"serve", "--max-conns", "1000000000"}, 2, "open-file limit"},
		{nil, []string{"serve", "--bogus"}, 2, "flag provided but not defined"},
		{[]string{"PUSHRELAY_HEARTBEAT=often"}, []string{"serve"}, 2, "PUSHRELAY_HEARTBEAT"},
		{nil, []string{"serve", "--listen", busy.Addr().String()}, 1, "address already in use"},
		{nil, []string{"serve", "--flash-policy-file", "/nonexistent"}, 2, "flash-policy-file"},
		{nil, []string{"frobnicate"}, 2, "unknown command"},
	}
	for _, tc := range cases {
		code, _, stderr := runBinary(t, tc.env, tc.args...)
		if code != tc.wantCode || !strings.Contains(stderr, tc.wantErr) {
			t.Errorf("pushrelay %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, tc.wantCode, tc.wantErr)
		}
		if n := strings.Count(strings.TrimSpace(stderr), "\n"); n > 0 {
			t.Errorf("pushrelay %v: %d lines of errors, want one clear line:\n%s", tc.args, n+1, stderr)
		}
	}
}

func TestHelpListsEveryFlagWithDefaultAndVariable(t *testing.T) {
	code, out, _ := runBinary(t, nil, "serve", "--help")
	if code != 0 {
		t.Fatalf("serve --help exit %d", code)
	}
	for _, want := range []string{
		"--listen HOST:PORT", "default :8843; env PUSHRELAY_LISTEN",
		"--max-outbound", "default 256KiB; env PUSHRELAY_MAX_OUTBOUND",
		"--max-inbound", "default 1KiB", "--slow", "--max-conns", "--keepalive", "--write-timeout",
		"--heartbeat", "--drain-timeout", "--flash-policy-listen", "--flash-policy-file", "--framing", "--loops",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("serve --help lacks %q", want)
		}
	}
	code, out, _ = runBinary(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "pushrelay ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

// cli runs a client command against p's socket.
func (p *relayProc) cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	// Flags go before the arguments: send, publish and broadcast take every
	// word after the ID or topic as the message.
	return runBinary(t, nil, append([]string{args[0], "--ingress", p.sock}, args[1:]...)...)
}

func TestSendThroughTheBinaryReachesTheClient(t *testing.T) {
	p := startRelay(t, nil, "--listen", "127.0.0.1:0")
	nc, id, fr := p.client(t)
	if code, _, stderr := p.cli(t, "send", id, "hello from the CLI"); code != 0 {
		t.Fatalf("send: exit %d: %s", code, stderr)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := fr.Next(); err != nil || string(got) != "hello from the CLI" {
		t.Fatalf("client got %q, %v", got, err)
	}
	// Unknown ID: exit 4 (no such client), one clear line.
	code, _, stderr := p.cli(t, "send", "AAAAAAAAAAAAAAAAAAAAAA", "x")
	if code != 4 || !strings.Contains(stderr, "unknown client ID AAAAAAAAAAAAAAAAAAAAAA") {
		t.Fatalf("send to an unknown ID: exit %d, %q", code, stderr)
	}
	// Topics and broadcast.
	if code, out, stderr := p.cli(t, "subscribe", id, "news"); code != 0 || !strings.Contains(out, "subscribed to 1 of 1") {
		t.Fatalf("subscribe: %d %q %q", code, out, stderr)
	}
	if code, out, _ := p.cli(t, "publish", "news", "headline"); code != 0 || !strings.Contains(out, "queued for 1 subscribers") {
		t.Fatalf("publish: %d %q", code, out)
	}
	if code, out, _ := p.cli(t, "broadcast", "everyone"); code != 0 || !strings.Contains(out, "queued for 1 clients") {
		t.Fatalf("broadcast: %d %q", code, out)
	}
	for _, want := range []string{"headline", "everyone"} {
		if got, err := fr.Next(); err != nil || string(got) != want {
			t.Fatalf("client got %q, %v; want %q", got, err, want)
		}
	}
	if code, out, _ := p.cli(t, "clients"); code != 0 || strings.TrimSpace(out) != id {
		t.Fatalf("clients: %d %q", code, out)
	}
	if code, out, _ := p.cli(t, "stats", "--raw"); code != 0 || !strings.Contains(out, "pushrelay_connections_open 1\n") {
		t.Fatalf("stats --raw: %d %q", code, out)
	}
	// The table: a header, then metric, labels and value in columns.
	code, out, _ := p.cli(t, "stats")
	if code != 0 || !regexp.MustCompile(`(?m)^METRIC +LABELS +VALUE$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^connections_open +1$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^connections_closed_total +reason=kicked +0$`).MatchString(out) {
		t.Fatalf("stats: %d\n%s", code, out)
	}
	if code, out, _ := p.cli(t, "stats", "--json"); code != 0 || !strings.Contains(out, `"pushrelay_connections_open": 1`) {
		t.Fatalf("stats --json: %d %q", code, out)
	}
	if code, _, _ := p.cli(t, "kick", id); code != 0 {
		t.Fatalf("kick: %d", code)
	}
	if _, err := fr.Next(); err != io.EOF {
		t.Fatalf("after kick: %v", err)
	}
}

func TestClientCommandsWithoutARelay(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	code, _, stderr := runBinary(t, nil, "send", "--ingress", sock, "AAAAAAAAAAAAAAAAAAAAAA", "x")
	if code != 3 || !strings.Contains(stderr, "relay not reachable") || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Fatalf("send without a relay: exit %d, %q", code, stderr)
	}
	if code, _, stderr := runBinary(t, nil, "send", "onlyone"); code != 2 || !strings.Contains(stderr, "want arguments ID MSG") {
		t.Fatalf("send with one argument: exit %d, %q", code, stderr)
	}
}

func TestWatchThroughTheBinary(t *testing.T) {
	p := startRelay(t, nil, "--listen", "127.0.0.1:0")
	cmd := exec.Command(binary, "watch", "--ingress", p.sock)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(out)
	// Wait until the watch is established before connecting.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stderr.String(), "watching relay instance") {
		if time.Now().After(deadline) {
			t.Fatalf("watch did not start: %q", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	nc, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := readID(t, nc, relay.FramingNUL)
	nc.Close()
	lines := make(chan string, 4)
	go func() {
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var got []string
	for len(got) < 2 {
		select {
		case l := <-lines:
			got = append(got, l)
		case <-time.After(5 * time.Second):
			t.Fatalf("watch printed %q", got)
		}
	}
	if !strings.Contains(got[0], " connect "+id+" 127.0.0.1:") || !strings.Contains(got[1], " disconnect "+id+" ") || !strings.HasSuffix(got[1], "peer_closed") {
		t.Fatalf("watch lines %q", got)
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("watch after SIGINT: %v", err)
	}
}

func TestSIGTERMDeliversWhatWasQueued(t *testing.T) {
	p := startRelay(t, nil, "--listen", "127.0.0.1:0", "--framing", "len32", "--drain-timeout", "10s")
	// A client with a small receive buffer that does not read yet, so the
	// relay still holds most of what is queued when the signal comes.
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	nc, err := d.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	id, fr := readID(t, nc, relay.FramingLen32)
	payload := strings.Repeat("q", 8000)
	for i := 0; i < 25; i++ {
		if code, _, stderr := p.cli(t, "send", id, fmt.Sprintf("%03d%s", i, payload)); code != 0 {
			t.Fatalf("send %d: %s", i, stderr)
		}
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond) // the relay is draining, waiting on this reader
	for i := 0; i < 25; i++ {
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := fr.Next()
		if err != nil || !strings.HasPrefix(string(got), fmt.Sprintf("%03d", i)) {
			t.Fatalf("message %d after SIGTERM: %v", i, err)
		}
	}
	if _, err := fr.Next(); err != io.EOF {
		t.Fatalf("after the queue: %v, want EOF", err)
	}
	p.waitExit(t)
	if _, err := os.Stat(p.sock); !os.IsNotExist(err) {
		t.Fatalf("ingress socket left behind: %v", err)
	}
}

func TestLoadgenThroughTheBinary(t *testing.T) {
	p := startRelay(t, nil, "--listen", "127.0.0.1:0")
	dir := t.TempDir()
	jsonPath, idsPath := filepath.Join(dir, "run.json"), filepath.Join(dir, "ids")
	code, out, stderr := runBinary(t, nil, "loadgen", "--target", p.addr, "--conns", "300", "--procs", "2", "--duration", "300ms", "--json", jsonPath, "--ids", idsPath)
	if code != 0 || !strings.Contains(out, "300 of 300 connections established") {
		t.Fatalf("loadgen: exit %d\n%s\n%s", code, out, stderr)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil || !strings.Contains(string(b), `"established": 300`) || !strings.Contains(string(b), `"workers"`) {
		t.Fatalf("--json: %v\n%s", err, b)
	}
	ids, _ := os.ReadFile(idsPath)
	if n := len(strings.Fields(string(ids))); n != 300 {
		t.Fatalf("--ids holds %d IDs", n)
	}
	// Nothing listening: exit 1 and the errno.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	code, out, _ = runBinary(t, nil, "loadgen", "--target", dead, "--conns", "5", "--duration", "100ms")
	if code != 1 || !strings.Contains(out, "ECONNREFUSED 5") {
		t.Fatalf("loadgen against nothing: exit %d\n%s", code, out)
	}
}

// lockedBuffer is a strings.Builder that a process may write while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestLoadgenInAPrivateNetworkNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for ip netns")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("ip(8) not installed")
	}
	code, out, stderr := runBinary(t, nil, "loadgen", "--netns", "--target", "127.0.0.1:8843", "--conns", "500", "--duration", "200ms")
	if code != 0 || !strings.Contains(out, "500 of 500 connections established") || !strings.Contains(stderr, "in network namespace pushrelay-loadgen-") {
		t.Fatalf("loadgen --netns: exit %d\n%s\n%s", code, out, stderr)
	}
	list, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	if strings.Contains(string(list), "pushrelay-loadgen-") {
		t.Fatalf("namespace left behind: %s", list)
	}
	// --serve without --netns is a usage error.
	if code, _, stderr := runBinary(t, nil, "loadgen", "--serve", "x"); code != 2 || !strings.Contains(stderr, "--serve goes with --netns") {
		t.Fatalf("--serve alone: exit %d %q", code, stderr)
	}
}

func TestClientCommandsTakeIDsThatStartWithADash(t *testing.T) {
	p := startRelay(t, nil, "--listen", "127.0.0.1:0")
	// No such client, but the ID must reach the relay as an ID, not be
	// refused as an unknown flag.
	id := "-FGkhDgAAAAAAAAAAAAAAA"
	code, _, stderr := p.cli(t, "send", id, "hello")
	if code != 4 || !strings.Contains(stderr, "unknown client ID "+id) {
		t.Fatalf("send %s: exit %d, %q; want the relay's unknown-ID answer (exit 4)", id, code, stderr)
	}
	if code, _, stderr := p.cli(t, "kick", id); code != 4 || strings.Contains(stderr, "flag provided") {
		t.Fatalf("kick %s: exit %d, %q", id, code, stderr)
	}
}

// TestSIGTERMRightAfterStart: a signal the moment the relay says it
// listens still gets a clean stop and exit 0 (the handler is in place
// before anything listens).
func TestSIGTERMRightAfterStart(t *testing.T) {
	for i := 0; i < 5; i++ {
		p := startRelay(t, nil, "--listen", "127.0.0.1:0")
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-p.exited:
			if err != nil {
				t.Fatalf("run %d: exit %v after an early SIGTERM, want 0\n%s", i, err, p.logs())
			}
		case <-time.After(15 * time.Second):
			t.Fatal("no exit after SIGTERM")
		}
		if !strings.Contains(p.logs(), "relay stopped") {
			t.Fatalf("run %d: no clean stop:\n%s", i, p.logs())
		}
	}
}

// client connects to p's client listener and reads the ID (NUL framing);
// the connection is closed when the test ends.
func (p *relayProc) client(t *testing.T) (net.Conn, string, *relay.FrameReader) {
	t.Helper()
	nc, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	id, fr := readID(t, nc, relay.FramingNUL)
	return nc, id, fr
}

// stop sends SIGTERM and waits for the relay to exit with status 0.
func (p *relayProc) stop(t *testing.T) {
	t.Helper()
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.waitExit(t)
}

// waitExit fails the test unless the relay exits with status 0 within
// 15 s.
func (p *relayProc) waitExit(t *testing.T) {
	t.Helper()
	select {
	case <-p.Done():
		if err := p.Err(); err != nil {
			t.Fatalf("exit after SIGTERM: %v, want status 0\n%s", err, p.logs())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("pushrelay did not exit after SIGTERM")
	}
}

// scanLines hands over r's lines on a channel of size n, which it closes at
// r's end; then it calls done (typically to wait for the process writing r).
func scanLines(r io.Reader, n int, done func()) chan string {
	lines := make(chan string, n)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		done()
	}()
	return lines
}

// askPolicy asks the Flash policy listener at addr for the policy and
// returns the answer, read to the end of the stream.
func askPolicy(t *testing.T, addr string) string {
	t.Helper()
	pc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pc.Write([]byte("<policy-file-request/>\x00"))
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(pc)
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return string(got)
}
