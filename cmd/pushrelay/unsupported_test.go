package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestUnsupportedThroughTheBinary: `pushrelay send` to a client that
// cannot take the payload (an SSE client, bytes that are not UTF-8) exits
// 1 with the reason; publish and broadcast print how many could not take
// it.
func TestUnsupportedThroughTheBinary(t *testing.T) {
	p := startRelay(t, nil, "--listen", "127.0.0.1:0", "--web", "127.0.0.1:0")
	web := p.web
	nc, err := net.DialTimeout("tcp", web, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(nc, "GET /sse HTTP/1.1\r\nHost: relay.test\r\n\r\n")
	br := bufio.NewReader(nc)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("sse: %v %v", resp, err)
	}
	var id string
	for id == "" {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		id, _ = strings.CutPrefix(strings.TrimSuffix(line, "\n"), "data: ")
	}

	code, _, stderr := p.cli(t, "send", id, "caf\xe9")
	if code != 1 || !strings.Contains(stderr, "not UTF-8") || !strings.Contains(stderr, "offset 3") {
		t.Fatalf("send of Latin-1 to an SSE client: exit %d, %q; want 1 and the reason", code, stderr)
	}
	code, out, stderr := p.cli(t, "broadcast", "caf\xe9")
	if code != 0 || !strings.Contains(out, "queued for 0 clients; not sent to 1 whose transport cannot carry it") {
		t.Fatalf("broadcast: exit %d, %q %q", code, out, stderr)
	}
}
