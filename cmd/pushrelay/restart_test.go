package main

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// holdClients connects to the relay's three listeners and keeps the
// connections open without ever closing them: when the relay goes away,
// its side of each sits in FIN-WAIT-2 (then TIME_WAIT) on its port, as with
// real clients that are slow to notice.
func holdClients(t *testing.T, p *relayProc, web string) {
	t.Helper()
	for i := 0; i < 3; i++ {
		p.client(t)
	}
	// A browser that has not sent its request yet.
	wc, err := net.Dial("tcp", web)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { wc.Close() })
	// A Flash player that read its policy: the relay closed first.
	pc, err := net.Dial("tcp", p.policy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	pc.Write([]byte("<policy-file-request/>\x00"))
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(pc); err != nil {
		t.Fatalf("policy: %v", err)
	}
}

// servesAll checks that a relay on those addresses hands out IDs and the
// policy.
func servesAll(t *testing.T, p *relayProc) {
	t.Helper()
	p.client(t)
	if got := askPolicy(t, p.policy); !strings.HasSuffix(got, "</cross-domain-policy>\x00") {
		t.Fatalf("policy after restart: %q", got)
	}
}

// TestRestartRebindsEveryListenerAtOnce is issue 14's first defect: after a
// stop with clients connected, a new relay on the same client, web and
// policy ports must start at once (it failed for about a minute), after
// SIGTERM and after kill -9, while a second relay beside a live one is
// still refused with a clear error.
func TestRestartRebindsEveryListenerAtOnce(t *testing.T) {
	a := startRelay(t, nil, "--listen", "127.0.0.1:0", "--web", "127.0.0.1:0", "--flash-policy-listen", "127.0.0.1:0")
	web := a.web
	ports := []string{"--listen", a.addr, "--web", web, "--flash-policy-listen", a.policy}
	holdClients(t, a, web)

	// A second live relay on any of the three ports is refused.
	for _, args := range [][]string{
		{"--listen", a.addr},
		{"--listen", "127.0.0.1:0", "--web", web},
		{"--listen", "127.0.0.1:0", "--flash-policy-listen", a.policy},
	} {
		full := append([]string{"serve", "--http", "", "--ingress", t.TempDir() + "/r.sock"}, args...)
		if !strings.Contains(strings.Join(args, " "), "--web") {
			full = append(full, "--web", "")
		}
		code, _, stderr := runBinary(t, nil, full...)
		if code != 1 || !strings.Contains(stderr, "address already in use") || !strings.Contains(stderr, "another pushrelay") {
			t.Errorf("second relay with %v beside a live one: exit %d, %q; want exit 1 and address already in use", args, code, stderr)
		}
	}

	a.stop(t)
	// At once, on the same ports: it serves.
	b := startRelay(t, nil, ports...)
	servesAll(t, b)
	holdClients(t, b, web)

	// A crash (kill -9) leaves the same lingering connections.
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-b.exited
	c := startRelay(t, nil, ports...)
	servesAll(t, c)
}
