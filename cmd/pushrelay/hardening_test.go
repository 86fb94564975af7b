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

// The flags of issue 14's hardening reach the relay: bad values are one
// clear line and exit 2; good ones are in force.
func TestHardeningFlagsThroughTheBinary(t *testing.T) {
	quiet := []string{"--listen", "127.0.0.1:0", "--web", "", "--ingress", "", "--http", "127.0.0.1:0"}
	for _, tc := range []struct{ flag, value, want string }{
		{"--ingress-frame-timeout", "0s", "--ingress-frame-timeout"},
		{"--http-hosts", "http://relay.internal", "--http-hosts"},
		{"--http-origins", "app.example.com", "--http-origins"},
	} {
		args := append([]string{"serve", tc.flag, tc.value}, quiet...)
		code, _, stderr := runBinary(t, nil, args...)
		if code != 2 || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
			t.Errorf("%s %s: exit %d, stderr %q; want exit 2 and one line naming %s", tc.flag, tc.value, code, stderr, tc.want)
		}
	}

	// Flags and their variables both; startRelay adds no --ingress or --http
	// when an argument names them, so both are given here.
	sock := t.TempDir() + "/r.sock"
	p := startRelay(t, []string{"PUSHRELAY_HTTP_ORIGINS=https://app.example.com", "PUSHRELAY_INGRESS_FRAME_TIMEOUT=200ms"},
		"--listen", "127.0.0.1:0", "--web", "127.0.0.1:0", "--ingress", sock, "--http", "127.0.0.1:0", "--http-hosts", "relay.internal")
	p.sock = sock
	addr := p.http
	get := func(headers string) *http.Response {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /v1/stats HTTP/1.1\r\n"+headers+"\r\n")
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	for _, tc := range []struct {
		headers string
		want    int
	}{
		{"Host: " + addr + "\r\n", 200},
		{"Host: relay.internal:8844\r\n", 200},
		{"Host: evil.example:8844\r\n", 403},
		{"Host: localhost\r\nOrigin: https://app.example.com\r\n", 200},
		{"Host: localhost\r\nOrigin: https://evil.example\r\n", 403},
	} {
		if res := get(tc.headers); res.StatusCode != tc.want {
			t.Errorf("%q: status %d, want %d", tc.headers, res.StatusCode, tc.want)
		}
	}

	// A partial ingress frame is answered and closed after 200ms.
	nc, err := net.Dial("unix", p.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.Write([]byte{0, 0, 0})
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(nc)
	if err != nil || !strings.Contains(string(b), "not completed within 200ms") {
		t.Fatalf("a partial ingress frame: read %q, %v; want the error reply naming 200ms, then EOF", b, err)
	}
}
