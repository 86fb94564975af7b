package ingress

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

// A page open in a browser on the relay's host can reach the loopback API:
// a cross-site push (Origin set, text/plain) and a read through DNS
// rebinding (Host naming the attacker's domain) are refused, counted, and
// push nothing; what curl, web apps and the docs send still works.
func TestHTTPRefusesCrossSiteRequests(t *testing.T) {
	srv := httpStartRelay(t, relay.Config{})
	unixPath := filepath.Join(t.TempDir(), "h.sock")
	h := httpStart(t, srv, srv.Config().MaxMessage, HTTPConfig{UnixPath: unixPath, Addr: "127.0.0.1:0"})
	addr := h.Addr()
	_, port, _ := net.SplitHostPort(addr)
	c := dialRelayClient(t, srv)
	a := newHTTPAPI(t, "http://"+addr, nil, "")

	// A browser's cross-site pushes.
	for _, tc := range []struct{ method, path, ctype, body string }{
		{"POST", "/v1/broadcast", "text/plain", "pwned"},
		{"POST", "/v1/send/" + c.id, "text/plain", "pwned"},
		{"POST", "/v1/send", "text/plain", `{"ids":["` + c.id + `"],"data":"pwned"}`},
		{"DELETE", "/v1/clients/" + c.id, "", ""},
	} {
		a.do(tc.method, tc.path, []byte(tc.body), "Origin", "http://evil.example", "Content-Type", tc.ctype).
			wantError(t, 403, "forbidden_origin", "--http-origins")
	}
	a.do("POST", "/v1/broadcast", []byte("pwned"), "Origin", "null").wantError(t, 403, "forbidden_origin", "null")
	c.expectSilence(100 * time.Millisecond)

	// DNS rebinding: the page's own name in Host.
	for _, host := range []string{"evil.example:" + port, "evil.example", "127.0.0.1.evil.example:" + port, "localhost.evil.example"} {
		status, body := rawHTTPRequest(t, addr, "GET /v1/clients HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
		if !strings.Contains(status, " 403 ") || !strings.Contains(string(body), `"forbidden_host"`) || !strings.Contains(string(body), "--http-hosts") {
			t.Errorf("Host %q: got %q %s; want 403 forbidden_host naming --http-hosts", host, status, body)
		}
		if strings.Contains(string(body), c.id) {
			t.Errorf("Host %q: the body shows a client ID: %s", host, body)
		}
	}
	// HTTP/1.0 may leave Host out: that names nothing.
	if status, body := rawHTTPRequest(t, addr, "GET /v1/clients HTTP/1.0\r\n\r\n"); !strings.Contains(status, " 403 ") || strings.Contains(string(body), c.id) {
		t.Errorf("HTTP/1.0 without Host: got %q %s; want 403", status, body)
	}
	// IP literals and localhost name the relay itself, with or without the
	// port (a port mapping may change it).
	for _, host := range []string{addr, "127.0.0.1", "localhost:" + port, "LOCALHOST", "localhost.", "[::1]:" + port, "[::1]", "10.1.2.3:8844"} {
		status, body := rawHTTPRequest(t, addr, "GET /v1/clients HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
		if !strings.Contains(status, " 200 ") || !strings.Contains(string(body), c.id) {
			t.Errorf("Host %q: got %q %s; want 200 with the IDs", host, status, body)
		}
	}
	// The Unix socket is out of a browser's reach: its Host is not checked.
	if res, err := unixRawGet(t, unixPath, "/v1/clients", "anything.example"); err != nil || res.StatusCode != 200 {
		t.Fatalf("Unix socket with any Host: %v %v; want 200", res, err)
	}

	// JSON routes want a JSON content type: a form or text/plain body is
	// what a browser may send without asking.
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		a.do("POST", "/v1/send", []byte(`{"ids":["`+c.id+`"],"data":"x"}`), "Content-Type", ct).
			wantError(t, 415, "unsupported_media_type", "Content-Type: application/json")
		a.do("POST", "/v1/subscriptions", []byte(`{"id":"`+c.id+`","topics":["a"]}`), "Content-Type", ct).
			wantError(t, 415, "unsupported_media_type", "Content-Type: application/json")
	}
	c.expectSilence(50 * time.Millisecond)
	a.do("POST", "/v1/send", []byte(`{"ids":["`+c.id+`"],"data":"ok"}`), "Content-Type", "application/json; charset=utf-8").wantCounts(t, 1, 0, 0, 0)
	c.expect([]byte("ok"))
	// Payload routes take any body type, as the docs' curl sends it.
	a.do("POST", "/v1/send/"+c.id, []byte("form"), "Content-Type", "application/x-www-form-urlencoded").wantCounts(t, 1, 0, 0, 0)
	c.expect([]byte("form"))

	stats := httpStats(t, a)
	for status, want := range map[string]float64{"forbidden_origin": 5, "forbidden_host": 5, "unsupported_media_type": 6} {
		if got := stats[`pushrelay_http_errors_total{status="`+status+`"}`]; got != want {
			t.Errorf("errors counted as %s: %v, want %v", status, got, want)
		}
	}
}

// Names in Hosts are accepted as Host; origins in Origins are served, with
// CORS headers and preflights, and others still refused.
func TestHTTPAllowedHostsAndOrigins(t *testing.T) {
	srv := httpStartRelay(t, relay.Config{})
	h := httpStart(t, srv, srv.Config().MaxMessage, HTTPConfig{Hosts: []string{"relay.internal"}, Origins: []string{"https://app.example.com"}})
	addr := h.Addr()
	c := dialRelayClient(t, srv)
	a := newHTTPAPI(t, "http://"+addr, nil, "")

	if status, body := rawHTTPRequest(t, addr, "GET /v1/clients HTTP/1.1\r\nHost: Relay.Internal:9000\r\n\r\n"); !strings.Contains(status, " 200 ") {
		t.Errorf("a configured name: %q %s; want 200", status, body)
	}
	if status, _ := rawHTTPRequest(t, addr, "GET /v1/clients HTTP/1.1\r\nHost: other.internal\r\n\r\n"); !strings.Contains(status, " 403 ") {
		t.Errorf("a name not configured: %q; want 403", status)
	}

	r := a.do("POST", "/v1/send/"+c.id, []byte("from the app"), "Origin", "https://app.example.com").want(t, 200)
	if got := r.header.Get("Access-Control-Allow-Origin"); got != "https://app.example.com" {
		t.Errorf("Access-Control-Allow-Origin %q, want the origin", got)
	}
	c.expect([]byte("from the app"))
	r = a.do("OPTIONS", "/v1/send", nil, "Origin", "https://app.example.com", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type")
	r.want(t, 204)
	if m, hd := r.header.Get("Access-Control-Allow-Methods"), r.header.Get("Access-Control-Allow-Headers"); m != "POST" || !strings.Contains(hd, "Content-Type") || !strings.Contains(hd, "Authorization") {
		t.Errorf("preflight: methods %q, headers %q", m, hd)
	}
	r = a.do("POST", "/v1/broadcast", []byte("x"), "Origin", "https://evil.example")
	r.wantError(t, 403, "forbidden_origin", "evil.example")
	if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("a refused origin got Access-Control-Allow-Origin %q; want none", got)
	}
	c.expectSilence(50 * time.Millisecond)

	for _, cfg := range []HTTPConfig{{Hosts: []string{"relay:8844"}}, {Hosts: []string{"http://relay"}}, {Origins: []string{"app.example.com"}}, {Origins: []string{"https://app.example.com/"}}} {
		cfg.Addr, cfg.Logger = "127.0.0.1:0", httpQuietLogger()
		if _, err := ListenHTTP(cfg, srv, 1024); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: got %v, want ErrBadConfig", cfg, err)
		}
	}
}

// Silent connections up to the connection limit, as any host can open
// against --http 0.0.0.0 --http-token, do not keep a token holder out:
// their places go to newcomers, and they are closed after the request
// timeout.
func TestHTTPSilentConnectionsDoNotLockOutTokenHolders(t *testing.T) {
	const token, maxConns = "tok-for-silence", 4
	srv := httpStartRelay(t, relay.Config{})
	h := httpStart(t, srv, srv.Config().MaxMessage, HTTPConfig{Token: token, MaxConns: maxConns})
	addr := h.Addr()
	c := dialRelayClient(t, srv)

	dial := func() net.Conn {
		nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return nc
	}
	var silent []net.Conn
	for i := 0; i < 2*maxConns; i++ {
		silent = append(silent, dial())
	}
	// One more sends headers a byte at a time and never finishes.
	trickle := dial()
	io.WriteString(trickle, "POST /v1/broadcast HTTP/1.1\r\nHost: 127.0.0.1\r\n")
	time.Sleep(50 * time.Millisecond) // let the acceptor admit them all

	start := time.Now()
	holder := dial()
	holder.SetDeadline(time.Now().Add(10 * time.Second))
	hr := bufio.NewReader(holder)
	push := func(payload string) int {
		fmt.Fprintf(holder, "POST /v1/send/%s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", c.id, addr, token, len(payload), payload)
		res, err := http.ReadResponse(hr, nil)
		if err != nil {
			t.Fatalf("the token holder's push %q: %v", payload, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	if code := push("still served"); code != 200 {
		t.Fatalf("the token holder's push: status %d, want 200", code)
	}
	waited := time.Since(start)
	c.expect([]byte("still served"))
	t.Logf("a token holder was served %v after %d silent connections", waited, len(silent)+1)
	// Its keep-alive connection is trusted now: newcomers do not evict it.
	for i := 0; i < maxConns; i++ {
		dial()
	}
	time.Sleep(50 * time.Millisecond)
	if code := push("and again"); code != 200 {
		t.Fatalf("the token holder's second push on its connection: status %d, want 200", code)
	}
	c.expect([]byte("and again"))
	// 9 untrusted into 4 places, the holder's, then 4 more.
	if got, want := h.Metrics(), float64(len(silent)+1-maxConns+1+maxConns); metricValue(got, "pushrelay_http_evicted_total") != want {
		t.Errorf("evicted %v connections, want %v", metricValue(got, "pushrelay_http_evicted_total"), want)
	}

	// A silent connection still open is closed within the request timeout.
	last := dial()
	start = time.Now()
	last.SetReadDeadline(time.Now().Add(httpReadTimeout + 5*time.Second))
	b, err := io.ReadAll(last)
	took := time.Since(start)
	if err != nil || took > httpReadTimeout+2*time.Second {
		t.Fatalf("a silent connection: read %q, %v after %v; want it closed within %v", b, err, took, httpReadTimeout)
	}
	t.Logf("a silent connection was closed after %v (%q)", took.Round(10*time.Millisecond), firstLine(b))
}

func metricValue(ms []relay.Metric, name string) float64 {
	for _, m := range ms {
		if m.Name == name {
			return m.Value
		}
	}
	return -1
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\r\n")
	return s
}

// A host that churns connections at the limit evicts its own, not a token
// holder's first request still in flight from another host: the holder
// sends its headers, pauses as a slow network would, then its body, and is
// served every time. (Before eviction was by source, the churn closed most
// such requests.)
func TestHTTPChurnDoesNotEvictAnotherHostsRequest(t *testing.T) {
	const token, maxConns, tries = "tok-for-churn", 4, 8
	srv := httpStartRelay(t, relay.Config{})
	h := httpStart(t, srv, srv.Config().MaxMessage, HTTPConfig{Token: token, MaxConns: maxConns})
	addr := h.Addr()
	c := dialRelayClient(t, srv)

	// The attacker: 127.0.0.1, opening connections and leaving them silent
	// until evicted; bounded in count and time.
	stop := make(chan struct{})
	churned := make(chan int)
	go func() {
		n := 0
		defer func() { churned <- n }()
		end := time.Now().Add(20 * time.Second)
		var held []net.Conn
		defer func() {
			for _, nc := range held {
				nc.Close()
			}
		}()
		for n < 200000 && time.Now().Before(end) {
			select {
			case <-stop:
				return
			default:
			}
			nc, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				continue
			}
			n++
			held = append(held, nc)
			if len(held) > 64 {
				held[0].Close()
				held = held[1:]
			}
		}
	}()

	// The token holder: another host, 127.0.0.2.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
	served := 0
	for i := 0; i < tries; i++ {
		nc, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial from 127.0.0.2: %v", err)
		}
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		payload := fmt.Sprintf("push %d", i)
		fmt.Fprintf(nc, "POST /v1/send/%s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", c.id, addr, token, len(payload))
		time.Sleep(100 * time.Millisecond) // the body comes a round trip later
		io.WriteString(nc, payload)
		res, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == 200 {
				served++
				c.expect([]byte(payload))
			} else {
				t.Logf("try %d: status %d", i, res.StatusCode)
			}
		} else {
			t.Logf("try %d: %v", i, err)
		}
		nc.Close()
	}
	close(stop)
	n := <-churned
	evicted := metricValue(h.Metrics(), "pushrelay_http_evicted_total")
	t.Logf("%d of %d served while 127.0.0.1 opened %d connections (%v evicted)", served, tries, n, evicted)
	if evicted < maxConns {
		t.Fatalf("only %v evictions: the churn never reached the limit, so this proves nothing", evicted)
	}
	if served != tries {
		t.Fatalf("the token holder was served %d times of %d; want every time", served, tries)
	}
}
