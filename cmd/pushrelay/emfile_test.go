package main

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pushrelay/pushrelay/internal/proctest"
	"github.com/pushrelay/pushrelay/relay"
)

// startPrefixed runs `pushrelay serve` under a wrapper command (prlimit)
// with a client, policy and HTTP listener on free loopback ports, and
// returns once all three listen.
func startPrefixed(t *testing.T, prefix []string, args ...string) (p *relayProc, httpAddr string) {
	t.Helper()
	args = append([]string{"--listen", "127.0.0.1:0", "--web", "", "--http", "127.0.0.1:0",
		"--flash-policy-listen", "127.0.0.1:0", "--ingress", t.TempDir() + "/r.sock"}, args...)
	p = newRelayProc(proctest.StartUnder(t, prefix, nil, args...), "")
	return p, p.http
}

// flood opens up to n connections to addr and holds them; it stops early
// when a dial fails or after 10 s.
func flood(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	end := time.Now().Add(10 * time.Second)
	for i := 0; i < n && time.Now().Before(end); i++ {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		conns = append(conns, nc)
	}
	return conns
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// eventually retries check every 50 ms for up to 10 s and fails with its
// last error.
func eventually(t *testing.T, what string, check func() error) {
	t.Helper()
	var err error
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if err = check(); err == nil {
			return
		}
	}
	t.Fatalf("%s: %v", what, err)
}

// getsID dials the client port and reads an ID.
func getsID(addr string) error {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	id, err := relay.NewFrameReader(nc, relay.FramingNUL, 0).Next()
	if err != nil || !relay.ValidID(string(id)) {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// answersPolicy asks the policy port for the policy.
func answersPolicy(addr string) error {
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.Write([]byte("<policy-file-request/>\x00"))
	nc.SetReadDeadline(time.Now().Add(2 * time.Second))
	got, err := io.ReadAll(nc)
	if err != nil {
		return err
	}
	if !strings.HasSuffix(string(got), "</cross-domain-policy>\x00") {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// httpGet returns the status and body of GET url.
func httpGet(url string) (int, string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metricValue finds one sample in a /metrics body.
func metricValue(body, sample string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

func needPrlimit(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) not installed")
	}
	return p
}

// TestDescriptorFloodLeavesTheRelayServing is issue 14's third defect:
// under a low file limit, a flood of the Flash policy port and the client
// port past the limit used to stop the policy listener for good (or the
// whole relay, when a client loop hit EMFILE first). Every listener now
// has a limit inside the descriptor budget: the extra connections are
// closed and counted, and both ports answer once the flood ends.
func TestDescriptorFloodLeavesTheRelayServing(t *testing.T) {
	const nofile = 300 // default --max-conns: 300 - 160 - 7 per loop - 32
	p, httpAddr := startPrefixed(t, []string{needPrlimit(t), "--nofile=" + strconv.Itoa(nofile) + ":" + strconv.Itoa(nofile)})
	policyFlood := flood(t, p.policy, nofile)
	clientFlood := flood(t, p.addr, nofile)
	// Let the relay accept what it will.
	eventually(t, "client refusals counted", func() error {
		_, body, err := httpGet("http://" + httpAddr + "/metrics")
		if err != nil {
			return err
		}
		if metricValue(body, `pushrelay_connections_rejected_total{reason="max_conns"}`) <= 0 {
			return io.ErrNoProgress
		}
		return nil
	})
	closeAll(policyFlood)
	closeAll(clientFlood)
	select {
	case err := <-p.exited:
		p.exited <- err
		t.Fatalf("the relay exited under the flood (%v):\n%s", err, p.logs())
	default:
	}
	eventually(t, "a client gets an ID after the flood", func() error { return getsID(p.addr) })
	eventually(t, "the policy port answers after the flood", func() error { return answersPolicy(p.policy) })
	code, body, err := httpGet("http://" + httpAddr + "/healthz")
	if err != nil || code != 200 {
		t.Fatalf("/healthz after the flood: %d %q %v, want 200", code, body, err)
	}
	_, body, err = httpGet("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v := metricValue(body, "pushrelay_policy_rejected_total"); v <= 0 {
		t.Fatalf("pushrelay_policy_rejected_total = %v, want the policy connections past its limit counted", v)
	}
}

// TestEMFILEInAcceptIsAPauseOrALoggedCause lowers the file limit of a
// running relay below what it holds, as an operator's prlimit or another
// part of the process could. The policy listener backs off, counts it and
// answers again once descriptors are back. A client loop cannot (gnet
// v2.10.0 stops its engine on any accept error), so the relay exits 1,
// with the cause and its fix in the log, never err=<nil>. With
// relay.Config.OwnAccept (no serve flag yet; off by default for its cost,
// docs/operations.md) it is a pause there too: relay's
// TestEMFILEInAcceptIsAPause.
func TestEMFILEInAcceptIsAPauseOrALoggedCause(t *testing.T) {
	needPrlimit(t)
	p, httpAddr := startPrefixed(t, nil)
	lower, raise := fileLimitLever(t, p)

	lower()
	policyFlood := flood(t, p.policy, 20)
	time.Sleep(200 * time.Millisecond) // the accept loop meets EMFILE and backs off
	closeAll(policyFlood)
	raise()
	eventually(t, "the policy port answers once descriptors are back", func() error { return answersPolicy(p.policy) })
	_, body, err := httpGet("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v := metricValue(body, "pushrelay_policy_accept_errors_total"); v <= 0 {
		t.Fatalf("pushrelay_policy_accept_errors_total = %v, want the EMFILE pauses counted", v)
	}
	if v := metricValue(body, "pushrelay_policy_up"); v != 1 {
		t.Fatalf("pushrelay_policy_up = %v, want 1", v)
	}
	if err := getsID(p.addr); err != nil {
		t.Fatalf("client after the policy's EMFILE: %v", err)
	}

	lower()
	clientFlood := flood(t, p.addr, 20)
	defer closeAll(clientFlood)
	select {
	case err := <-p.exited:
		p.exited <- err // for the cleanup
		var ee *exec.ExitError
		if err == nil || !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("exit %v, want status 1", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the relay still runs after EMFILE on a client loop; this test expects gnet v2.10.0 to stop it:\n%s", p.logs())
	}
	logs := p.logs()
	if strings.Contains(logs, "err=<nil>") || !strings.Contains(logs, "too many open files") || !strings.Contains(logs, "raise RLIMIT_NOFILE") {
		t.Fatalf("the log does not give the cause and its fix (or says err=<nil>):\n%s", logs)
	}
}

// fileLimitLever returns two switches for a running relay's RLIMIT_NOFILE:
// lower leaves no descriptor free above those open now (the limit caps new
// descriptor numbers, so the lowest free one must be below it), raise
// puts the original limit back.
func fileLimitLever(t *testing.T, p *relayProc) (lower, raise func()) {
	t.Helper()
	pid := p.cmd.Process.Pid
	var orig unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &orig); err != nil {
		t.Fatal(err)
	}
	lower = func() {
		t.Helper()
		fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: uint64(len(fds)), Max: orig.Max}, nil); err != nil {
			t.Fatal(err)
		}
	}
	raise = func() {
		t.Helper()
		if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &orig, nil); err != nil {
			t.Fatalf("raise the limit again: %v\n%s", err, p.logs())
		}
	}
	return lower, raise
}

// TestOwnAcceptMakesEMFILEAPause: with --own-accept, EMFILE on the client
// port is a pause, counted: the relay keeps running and serves new clients
// once descriptors are back.
func TestOwnAcceptMakesEMFILEAPause(t *testing.T) {
	needPrlimit(t)
	p, httpAddr := startPrefixed(t, nil, "--own-accept")
	lower, raise := fileLimitLever(t, p)
	lower()
	clientFlood := flood(t, p.addr, 20)
	time.Sleep(300 * time.Millisecond) // the acceptors meet EMFILE and back off
	select {
	case err := <-p.exited:
		p.exited <- err
		t.Fatalf("the relay exited (%v) on EMFILE with --own-accept:\n%s", err, p.logs())
	default:
	}
	closeAll(clientFlood)
	raise()
	eventually(t, "a client gets an ID once descriptors are back", func() error { return getsID(p.addr) })
	_, body, err := httpGet("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if v := metricValue(body, `pushrelay_accept_errors_total{listener="client"}`); v <= 0 {
		t.Fatalf("pushrelay_accept_errors_total = %v, want the EMFILE pauses counted", v)
	}
}
