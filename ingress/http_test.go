package ingress

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/pushrelay/pushrelay/internal/testutil"

	"github.com/pushrelay/pushrelay/relay"
)

// httpQuietLogger is silent unless PUSHRELAY_TEST_LOG is set.
func httpQuietLogger() *slog.Logger { return testutil.Logger() }

// httpStartRelay starts a relay on a free loopback port and stops it when the
// test ends.
func httpStartRelay(t *testing.T, cfg relay.Config) *relay.Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	cfg.Logger = httpQuietLogger()
	if cfg.MaxConns == 0 {
		cfg.MaxConns = 1000
	}
	srv, err := relay.New(cfg)
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	if err := srv.Start(); err != nil {
		t.Fatalf("relay Start: %v", err)
	}
	testutil.ShutdownAtEnd(t, 5*time.Second, srv.Shutdown)
	return srv
}

// httpStart serves the HTTP API for r on a free loopback port (unless cfg
// names only a Unix socket) and checks at the end that Serve returns nil
// after Close.
func httpStart(t *testing.T, r Relay, maxMessage int, cfg HTTPConfig) *HTTPServer {
	t.Helper()
	if cfg.Addr == "" && cfg.UnixPath == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	cfg.Logger = httpQuietLogger()
	s, err := ListenHTTP(cfg, r, maxMessage)
	if err != nil {
		t.Fatalf("ListenHTTP: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve after Close: got %v, want nil", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Serve did not return after Close")
		}
	})
	return s
}

// relayWithHTTP is the usual setup: a relay and its HTTP API.
func relayWithHTTP(t *testing.T, rcfg relay.Config, hcfg HTTPConfig) (*relay.Server, *httpAPI) {
	t.Helper()
	srv := httpStartRelay(t, rcfg)
	h := httpStart(t, srv, srv.Config().MaxMessage, hcfg)
	return srv, newHTTPAPI(t, "http://"+h.Addr(), nil, hcfg.Token)
}

// relayClient is a client of the relay: a real TCP connection and its ID.
type relayClient struct {
	t    *testing.T
	conn net.Conn
	fr   *relay.FrameReader
	id   string
}

func dialRelayClient(t *testing.T, srv *relay.Server) *relayClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", srv.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial relay: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &relayClient{t: t, conn: conn, fr: relay.NewFrameReader(conn, srv.Config().Framing, 0)}
	id, err := c.next(5 * time.Second)
	if err != nil {
		t.Fatalf("read ID frame: %v", err)
	}
	if !relay.ValidID(string(id)) {
		t.Fatalf("first frame %q is not an ID", id)
	}
	c.id = string(id)
	return c
}

func (c *relayClient) next(d time.Duration) ([]byte, error) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	return c.fr.Next()
}

// expect reads one frame and fails unless it is want, byte for byte.
func (c *relayClient) expect(want []byte) {
	c.t.Helper()
	got, err := c.next(5 * time.Second)
	if err != nil {
		c.t.Fatalf("client %s: read frame: %v (want %q)", c.id, err, want)
	}
	if !bytes.Equal(got, want) {
		c.t.Fatalf("client %s: got frame %q, want %q", c.id, got, want)
	}
}

// expectSilence fails if a frame arrives within d.
func (c *relayClient) expectSilence(d time.Duration) {
	c.t.Helper()
	got, err := c.next(d)
	if err == nil {
		c.t.Fatalf("client %s: unexpected frame %q", c.id, got)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("client %s: want silence, got %v", c.id, err)
	}
}

// httpAPI calls the HTTP API with net/http.
type httpAPI struct {
	t      *testing.T
	base   string
	client *http.Client
	token  string
}

func newHTTPAPI(t *testing.T, base string, tr *http.Transport, token string) *httpAPI {
	if tr == nil {
		tr = &http.Transport{}
	}
	tr.ExpectContinueTimeout = 5 * time.Second
	t.Cleanup(tr.CloseIdleConnections)
	return &httpAPI{t: t, base: base, client: &http.Client{Transport: tr, Timeout: 10 * time.Second}, token: token}
}

type httpResponse struct {
	code   int
	header http.Header
	body   []byte
}

// do sends a request; headers come in name, value pairs.
func (a *httpAPI) do(method, path string, body []byte, headers ...string) httpResponse {
	a.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		a.t.Fatalf("new request %s %s: %v", method, path, err)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	if path == "/v1/send" || path == "/v1/subscriptions" || path == "/v1/batch" {
		req.Header.Set("Content-Type", "application/json") // as a web app would; headers may override it
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := a.client.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		a.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return httpResponse{res.StatusCode, res.Header, b}
}

// want checks the status code and, for JSON, that the body is valid.
func (r httpResponse) want(t *testing.T, code int) httpResponse {
	t.Helper()
	if r.code != code {
		t.Fatalf("got status %d, want %d (body %s)", r.code, code, r.body)
	}
	if strings.HasPrefix(r.header.Get("Content-Type"), "application/json") && !json.Valid(r.body) {
		t.Fatalf("body is not valid JSON: %q", r.body)
	}
	return r
}

// wantError checks an error reply: code, JSON, status word and, if given,
// a piece of the message.
func (r httpResponse) wantError(t *testing.T, code int, status, msgPart string) map[string]any {
	t.Helper()
	r.want(t, code)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type %q, want application/json", ct)
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	if m["status"] != status {
		t.Fatalf("got status word %v, want %q (body %s)", m["status"], status, r.body)
	}
	msg, _ := m["error"].(string)
	if msg == "" || !strings.Contains(msg, msgPart) {
		t.Fatalf("error message %q does not mention %q", msg, msgPart)
	}
	return m
}

func (r httpResponse) wantCounts(t *testing.T, queued, unknown, dropped, overloaded int) {
	t.Helper()
	r.want(t, http.StatusOK)
	want := fmt.Sprintf(`{"queued":%d,"unknown":%d,"dropped":%d,"overloaded":%d,"unsupported":0}`+"\n", queued, unknown, dropped, overloaded)
	if string(r.body) != want {
		t.Fatalf("got counts %q, want %q", r.body, want)
	}
}

// A made-up ID of the right shape that no client has.
const httpAbsentID = "AAAAAAAAAAAAAAAAAAAAAA"

func TestHTTPSendToOneID(t *testing.T) {
	srv, a := relayWithHTTP(t, relay.Config{MaxMessage: 4096}, HTTPConfig{})
	c1, c2 := dialRelayClient(t, srv), dialRelayClient(t, srv)

	a.do("POST", "/v1/send/"+c1.id, []byte("hello one")).wantCounts(t, 1, 0, 0, 0)
	c1.expect([]byte("hello one"))
	c2.expectSilence(100 * time.Millisecond)

	// An empty body is refused: the client would read it as a heartbeat.
	a.do("POST", "/v1/send/"+c2.id, []byte{}).wantError(t, 400, "bad_request", "heartbeat")
	c2.expectSilence(50 * time.Millisecond)

	a.do("POST", "/v1/send/"+httpAbsentID, []byte("x")).wantError(t, 404, "unknown_id", httpAbsentID)
	a.do("POST", "/v1/send/not-an-id", []byte("x")).wantError(t, 400, "bad_request", "not a client ID")
	a.do("POST", "/v1/send/"+c1.id, bytes.Repeat([]byte("x"), 4097)).wantError(t, 413, "too_large", "max-message is 4096")
	a.do("POST", "/v1/send/"+c1.id, []byte("a\x00b")).wantError(t, 400, "bad_request", "0x00")
	a.do("POST", "/v1/send/"+c1.id, []byte("x"), "Content-Encoding", "gzip").wantError(t, 400, "bad_request", "Content-Encoding")
	c1.expectSilence(50 * time.Millisecond)
}

func TestHTTPLineFramingRefusesNewlines(t *testing.T) {
	srv, a := relayWithHTTP(t, relay.Config{Framing: relay.FramingLine}, HTTPConfig{})
	c := dialRelayClient(t, srv)
	a.do("POST", "/v1/send/"+c.id, []byte("two\nlines")).wantError(t, 400, "bad_request", "0x0a")
	a.do("POST", "/v1/broadcast", []byte("two\nlines")).wantError(t, 400, "bad_request", "0x0a")
	a.do("POST", "/v1/send", []byte(`{"ids":["`+c.id+`"],"data":"a\nb"}`)).wantError(t, 400, "bad_request", "0x0a")
	a.do("POST", "/v1/send/"+c.id, []byte("one line")).wantCounts(t, 1, 0, 0, 0)
	c.expect([]byte("one line"))
}

func TestHTTPSendMany(t *testing.T) {
	srv, a := relayWithHTTP(t, relay.Config{Framing: relay.FramingLen32, MaxMessage: 1024}, HTTPConfig{MaxIDs: 3})
	c1, c2, c3 := dialRelayClient(t, srv), dialRelayClient(t, srv), dialRelayClient(t, srv)

	// Every byte value, through base64, arrives byte-exact.
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	body := fmt.Sprintf(`{"ids":[%q,%q,%q],"data_base64":%q}`, c1.id, c2.id, httpAbsentID, base64.StdEncoding.EncodeToString(binary))
	a.do("POST", "/v1/send", []byte(body)).wantCounts(t, 2, 1, 0, 0)
	c1.expect(binary)
	c2.expect(binary)
	c3.expectSilence(100 * time.Millisecond)

	// Unpadded base64 too.
	body = fmt.Sprintf(`{"ids":[%q],"data_base64":%q}`, c3.id, base64.RawStdEncoding.EncodeToString([]byte{0xff, 0, 1, 2, 3}))
	a.do("POST", "/v1/send", []byte(body)).wantCounts(t, 1, 0, 0, 0)
	c3.expect([]byte{0xff, 0, 1, 2, 3})

	// Text, with JSON escapes.
	a.do("POST", "/v1/send", []byte(`{"ids":["`+c3.id+`"],"data":"caf\u00e9 \"q\"\n"}`)).wantCounts(t, 1, 0, 0, 0)
	c3.expect([]byte("café \"q\"\n"))

	ids := fmt.Sprintf(`"ids":[%q]`, c1.id)
	for _, tc := range []struct {
		name, body, code, status, part string
	}{
		{"empty body", ``, "400", "bad_request", "empty"},
		{"truncated JSON", `{"ids":[`, "400", "bad_request", "not the JSON"},
		{"not an object", `[1,2]`, "400", "bad_request", "array"},
		{"ids not strings", `{"ids":[1],"data":"x"}`, "400", "bad_request", `"ids"`},
		{"unknown field", `{` + ids + `,"data":"x","topic":"y"}`, "400", "bad_request", "topic"},
		{"trailing data", `{` + ids + `,"data":"x"} {}`, "400", "bad_request", "after the JSON object"},
		{"no ids", `{"data":"x"}`, "400", "bad_request", `no "ids"`},
		{"no data", `{` + ids + `}`, "400", "bad_request", "neither"},
		{"both data", `{` + ids + `,"data":"x","data_base64":"eA=="}`, "400", "bad_request", "both"},
		{"bad base64", `{` + ids + `,"data_base64":"!!!"}`, "400", "bad_request", "base64"},
		{"bad ID", `{"ids":["short"],"data":"x"}`, "400", "bad_request", `ID 0, "short"`},
		{"too many IDs", `{"ids":["` + c1.id + `","` + c2.id + `","` + c3.id + `","` + httpAbsentID + `"],"data":"x"}`, "422", "limit", "4 IDs, the most in one request is 3"},
		{"too large", `{` + ids + `,"data":"` + strings.Repeat("x", 1025) + `"}`, "413", "too_large", "max-message is 1024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _ := strconv.Atoi(tc.code)
			a.do("POST", "/v1/send", []byte(tc.body)).wantError(t, code, tc.status, tc.part)
		})
	}
	c1.expectSilence(50 * time.Millisecond)
}

func TestHTTPTopics(t *testing.T) {
	srv, a := relayWithHTTP(t, relay.Config{}, HTTPConfig{})
	c1, c2, c3 := dialRelayClient(t, srv), dialRelayClient(t, srv), dialRelayClient(t, srv)

	sub := func(method, id string, topics ...string) httpResponse {
		b, _ := json.Marshal(map[string]any{"id": id, "topics": topics})
		return a.do(method, "/v1/subscriptions", b)
	}
	wantChanged := func(r httpResponse, n int) {
		t.Helper()
		r.want(t, 200)
		if want := fmt.Sprintf(`{"changed":%d}`+"\n", n); string(r.body) != want {
			t.Fatalf("got %q, want %q", r.body, want)
		}
	}
	wantChanged(sub("POST", c1.id, "news/eu", "sport"), 2)
	wantChanged(sub("POST", c2.id, "news/eu"), 1)
	wantChanged(sub("POST", c2.id, "news/eu"), 0) // already in

	// '/' may be sent as is or percent-encoded.
	a.do("POST", "/v1/publish/news/eu", []byte("eu 1")).wantCounts(t, 2, 0, 0, 0)
	a.do("POST", "/v1/publish/news%2Feu", []byte("eu 2")).wantCounts(t, 2, 0, 0, 0)
	for _, c := range []*relayClient{c1, c2} {
		c.expect([]byte("eu 1"))
		c.expect([]byte("eu 2"))
	}
	c3.expectSilence(100 * time.Millisecond)

	a.do("POST", "/v1/publish/nobody-here", []byte("x")).wantCounts(t, 0, 0, 0, 0)
	a.do("POST", "/v1/publish/a%20b", []byte("x")).wantError(t, 400, "bad_request", "0x20")

	wantChanged(sub("DELETE", c1.id, "news/eu", "never-joined"), 1)
	a.do("POST", "/v1/publish/news/eu", []byte("eu 3")).wantCounts(t, 1, 0, 0, 0)
	c2.expect([]byte("eu 3"))
	c1.expectSilence(50 * time.Millisecond)

	a.do("POST", "/v1/broadcast", []byte("all")).wantCounts(t, 3, 0, 0, 0)
	for _, c := range []*relayClient{c1, c2, c3} {
		c.expect([]byte("all"))
	}

	sub("POST", httpAbsentID, "x").wantError(t, 404, "unknown_id", "unknown client ID")
	sub("DELETE", httpAbsentID, "x").wantError(t, 404, "unknown_id", "unknown client ID")
	sub("POST", c1.id, "has space").wantError(t, 400, "bad_request", "invalid topic")
	sub("POST", "bad", "x").wantError(t, 400, "bad_request", "not a client ID")
	a.do("POST", "/v1/subscriptions", []byte(`{"id":"`+c1.id+`"}`)).wantError(t, 400, "bad_request", `no "topics"`)
	a.do("POST", "/v1/subscriptions", []byte(`{"id":`)).wantError(t, 400, "bad_request", "JSON")
}

func TestHTTPTopicLimits(t *testing.T) {
	srv, a := relayWithHTTP(t, relay.Config{MaxTopicsPerConn: 1}, HTTPConfig{MaxTopics: 2})
	c := dialRelayClient(t, srv)
	// The first topic is added, the second hits the relay's limit: 422,
	// and the reply says one subscription was made.
	r := a.do("POST", "/v1/subscriptions", []byte(`{"id":"`+c.id+`","topics":["a","b"]}`))
	m := r.wantError(t, 422, "limit", "1 topics")
	if m["changed"] != float64(1) {
		t.Fatalf("changed = %v, want 1 (body %s)", m["changed"], r.body)
	}
	a.do("POST", "/v1/subscriptions", []byte(`{"id":"`+c.id+`","topics":["a","b","c"]}`)).
		wantError(t, 422, "limit", "3 topics, the most in one request is 2")
}

func TestHTTPClients(t *testing.T) {
	srv, a := relayWithHTTP(t, relay.Config{}, HTTPConfig{})
	c1, c2, c3 := dialRelayClient(t, srv), dialRelayClient(t, srv), dialRelayClient(t, srv)

	var info struct {
		ID        string `json:"id"`
		Connected bool   `json:"connected"`
		Since     string `json:"since"`
		Remote    string `json:"remote"`
	}
	r := a.do("GET", "/v1/clients/"+c1.id, nil).want(t, 200)
	if err := json.Unmarshal(r.body, &info); err != nil {
		t.Fatal(err)
	}
	since, err := time.Parse(time.RFC3339Nano, info.Since)
	if err != nil {
		t.Fatalf("since %q: %v", info.Since, err)
	}
	if info.ID != c1.id || !info.Connected || info.Remote != c1.conn.LocalAddr().String() || time.Since(since) > time.Minute {
		t.Fatalf("got %+v; want ID %s, connected, remote %s, since just now", info, c1.id, c1.conn.LocalAddr())
	}
	m := a.do("GET", "/v1/clients/"+httpAbsentID, nil).wantError(t, 404, "unknown_id", "no client")
	if m["connected"] != false || m["id"] != httpAbsentID {
		t.Fatalf("got %v, want connected false and the ID", m)
	}
	a.do("GET", "/v1/clients/x", nil).wantError(t, 400, "bad_request", "not a client ID")

	// Page through the list two at a time.
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatalf("more pages than clients: %v", got)
		}
		var page struct {
			IDs  []string `json:"ids"`
			Next string   `json:"next"`
		}
		r := a.do("GET", "/v1/clients?limit=2&cursor="+cursor, nil).want(t, 200)
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.IDs) > 2 {
			t.Fatalf("page of %d IDs, limit 2", len(page.IDs))
		}
		got = append(got, page.IDs...)
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	want := []string{c1.id, c2.id, c3.id}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	a.do("GET", "/v1/clients?limit=zero", nil).wantError(t, 400, "bad_request", "limit")
	a.do("GET", "/v1/clients?limit=0", nil).wantError(t, 400, "bad_request", "limit")
	a.do("GET", "/v1/clients?cursor=garbage", nil).wantError(t, 400, "bad_request", "cursor")

	// Kick: the client sees the connection end.
	a.do("DELETE", "/v1/clients/"+c2.id, nil).want(t, 200)
	if _, err := c2.next(5 * time.Second); !errors.Is(err, io.EOF) {
		t.Fatalf("kicked client: got %v, want EOF", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.Connected(c2.id) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	a.do("DELETE", "/v1/clients/"+c2.id, nil).wantError(t, 404, "unknown_id", "no client")
}

func TestHTTPRoutesAndMethods(t *testing.T) {
	_, a := relayWithHTTP(t, relay.Config{}, HTTPConfig{})
	for _, tc := range []struct {
		method, path, allow string
	}{
		{"GET", "/v1/broadcast", "POST"},
		{"PUT", "/v1/send/" + httpAbsentID, "POST"},
		{"GET", "/v1/subscriptions", "POST, DELETE"},
		{"POST", "/v1/clients/" + httpAbsentID, "GET, HEAD, DELETE"},
		{"DELETE", "/v1/stats", "GET, HEAD"},
		{"POST", "/metrics", "GET, HEAD"},
		{"POST", "/healthz", "GET, HEAD"},
	} {
		r := a.do(tc.method, tc.path, nil)
		r.wantError(t, 405, "method_not_allowed", tc.method)
		if got := r.header.Get("Allow"); got != tc.allow {
			t.Errorf("%s %s: Allow %q, want %q", tc.method, tc.path, got, tc.allow)
		}
	}
	for _, path := range []string{"/", "/v1", "/v1/send/", "/v1/publish/", "/v1/broadcast/", "/v2/send", "/v1/clients/"} {
		a.do("POST", path, nil).wantError(t, 404, "not_found", "no route")
	}
	r := a.do("GET", "/healthz", nil).want(t, 200)
	if string(r.body) != "ok\n" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("healthz: got %q (%s), want ok", r.body, r.header.Get("Content-Type"))
	}
	if r := a.do("HEAD", "/healthz", nil).want(t, 200); len(r.body) != 0 {
		t.Fatalf("HEAD returned a body: %q", r.body)
	}
}

func TestHTTPMalformedRequests(t *testing.T) {
	_, a := relayWithHTTP(t, relay.Config{}, HTTPConfig{})
	addr := strings.TrimPrefix(a.base, "http://")
	for _, tc := range []struct{ name, req, want string }{
		{"bad escape in topic", "POST /v1/publish/%zz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\nx", "400"},
		{"bad escape in ID", "POST /v1/send/%zz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\nx", "400"},
		{"garbage", "HELLO\r\n\r\n", "400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := rawHTTPRequest(t, addr, tc.req)
			if !strings.Contains(status, " "+tc.want+" ") {
				t.Fatalf("got %q, want %s", status, tc.want)
			}
			if !json.Valid(body) {
				t.Fatalf("body %q is not JSON", body)
			}
		})
	}
}

// rawHTTPRequest writes req as is and returns the status line and body.
func rawHTTPRequest(t *testing.T, addr, req string) (string, []byte) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read httpResponse: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return "HTTP/1.1 " + res.Status + " ", body
}

func TestHTTPBodyLimit(t *testing.T) {
	srv, a := relayWithHTTP(t, relay.Config{MaxMessage: 4096}, HTTPConfig{MaxBody: 8192})
	c := dialRelayClient(t, srv)
	big := bytes.Repeat([]byte("x"), 64<<10)
	a.do("POST", "/v1/broadcast", big).wantError(t, 413, "too_large", "8192 bytes")
	// With Expect: 100-continue the refusal comes before the body.
	a.do("POST", "/v1/broadcast", big, "Expect", "100-continue").wantError(t, 413, "too_large", "8192 bytes")
	// Over max-message, under the body limit.
	a.do("POST", "/v1/broadcast", big[:4097]).wantError(t, 413, "too_large", "max-message is 4096")
	a.do("POST", "/v1/broadcast", big[:4096]).wantCounts(t, 1, 0, 0, 0)
	c.expect(big[:4096])
}

func TestHTTPAuth(t *testing.T) {
	const token = "s3cret-token-for-tests"
	srv := httpStartRelay(t, relay.Config{})
	h := httpStart(t, srv, srv.Config().MaxMessage, HTTPConfig{Token: token})
	c := dialRelayClient(t, srv)
	anon := newHTTPAPI(t, "http://"+h.Addr(), nil, "")
	wrong := newHTTPAPI(t, "http://"+h.Addr(), nil, "not-the-token")
	right := newHTTPAPI(t, "http://"+h.Addr(), nil, token)

	for _, a := range []*httpAPI{anon, wrong} {
		for _, path := range []string{"/v1/stats", "/metrics", "/v1/clients", "/no/such/route"} {
			r := a.do("GET", path, nil)
			r.wantError(t, 401, "unauthorized", "token")
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("WWW-Authenticate %q, want Bearer", r.header.Get("WWW-Authenticate"))
			}
		}
		a.do("POST", "/v1/send/"+c.id, []byte("nope")).wantError(t, 401, "unauthorized", "token")
		a.do("GET", "/healthz", nil).want(t, 200)
	}
	c.expectSilence(50 * time.Millisecond)
	right.do("POST", "/v1/send/"+c.id, []byte("yes")).wantCounts(t, 1, 0, 0, 0)
	c.expect([]byte("yes"))
	right.do("GET", "/v1/stats", nil).want(t, 200)
	anon.do("GET", "/v1/stats", nil, "Authorization", "bearer "+token).want(t, 200)
	anon.do("GET", "/v1/stats", nil, "Authorization", "Basic "+token).wantError(t, 401, "unauthorized", "token")
	anon.do("GET", "/v1/stats", nil, "Authorization", "Bearer "+token+"x").wantError(t, 401, "unauthorized", "token")
}

func TestHTTPRefusesOpenAddressWithoutToken(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		_, err := ListenHTTP(HTTPConfig{Addr: addr, Logger: httpQuietLogger()}, nil, 1024)
		if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "token") {
			t.Fatalf("%s without a token: got %v, want ErrBadConfig about the token", addr, err)
		}
	}
	s, err := ListenHTTP(HTTPConfig{Addr: "0.0.0.0:0", Token: "tok", Logger: httpQuietLogger()}, nil, 1024)
	if err != nil {
		t.Fatalf("0.0.0.0:0 with a token: %v", err)
	}
	s.Close()
	for _, addr := range []string{"127.0.0.1:0", "localhost:0"} {
		s, err := ListenHTTP(HTTPConfig{Addr: addr, Logger: httpQuietLogger()}, nil, 1024)
		if err != nil {
			t.Fatalf("%s without a token: %v", addr, err)
		}
		s.Close()
	}
}

func TestHTTPConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  HTTPConfig
		part string
	}{
		{"no address", HTTPConfig{}, "no address"},
		{"bad address", HTTPConfig{Addr: "nonsense"}, "nonsense"},
		{"token with space", HTTPConfig{Addr: "127.0.0.1:0", Token: "a b"}, "0x20"},
		{"body below message", HTTPConfig{Addr: "127.0.0.1:0", MaxBody: 100}, "max-message"},
		{"negative conns", HTTPConfig{Addr: "127.0.0.1:0", MaxConns: -1}, "positive"},
		{"long socket path", HTTPConfig{UnixPath: "/" + strings.Repeat("x", 120)}, "107"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = httpQuietLogger()
			_, err := ListenHTTP(tc.cfg, nil, 1024)
			if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tc.part) {
				t.Fatalf("got %v, want ErrBadConfig mentioning %q", err, tc.part)
			}
		})
	}
}

func TestHTTPUnixSocket(t *testing.T) {
	srv := httpStartRelay(t, relay.Config{})
	path := filepath.Join(t.TempDir(), "http.sock")
	h := httpStart(t, srv, srv.Config().MaxMessage, HTTPConfig{UnixPath: path})
	if h.Addr() != "" {
		t.Fatalf("Addr() = %q without a TCP listener, want empty", h.Addr())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	a := newHTTPAPI(t, "http://relay", tr, "")
	c := dialRelayClient(t, srv)
	a.do("GET", "/healthz", nil).want(t, 200)
	a.do("POST", "/v1/broadcast", []byte("over unix")).wantCounts(t, 1, 0, 0, 0)
	c.expect([]byte("over unix"))

	// A second server on the same live socket is refused.
	if _, err := ListenHTTP(HTTPConfig{UnixPath: path, Logger: httpQuietLogger()}, srv, srv.Config().MaxMessage); err == nil || !strings.Contains(err.Error(), "already answers") {
		t.Fatalf("second server on a live socket: got %v", err)
	}
	tr.CloseIdleConnections()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file after Close: %v, want gone", err)
	}
}

func TestHTTPBothListenersShareTheLimit(t *testing.T) {
	srv := httpStartRelay(t, relay.Config{})
	path := filepath.Join(t.TempDir(), "h.sock")
	h := httpStart(t, srv, srv.Config().MaxMessage, HTTPConfig{Addr: "127.0.0.1:0", UnixPath: path, MaxConns: 1})
	tcp := newHTTPAPI(t, "http://"+h.Addr(), nil, "")
	tcp.do("GET", "/healthz", nil).want(t, 200) // holds the one connection (keep-alive)

	// The Unix listener is over the limit while the TCP connection is open.
	res, err := unixRawGet(t, path, "/healthz", "x")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 503 {
		t.Fatalf("second connection: status %d, want 503", res.StatusCode)
	}
	// fasthttp counts the refusal after writing the 503, and the refused
	// connection leaves the gauge only once closed: wait for both.
	stats := httpStats(t, tcp)
	for deadline := time.Now().Add(5 * time.Second); (stats["pushrelay_http_refused_total"] != 1 || stats["pushrelay_http_connections"] != 1) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		stats = httpStats(t, tcp)
	}
	if stats["pushrelay_http_refused_total"] != 1 || stats["pushrelay_http_connections"] != 1 {
		t.Fatalf("refused %v, connections %v; want 1 and 1", stats["pushrelay_http_refused_total"], stats["pushrelay_http_connections"])
	}
}

// unixRawGet sends GET target with Host: host on a new connection to the
// Unix socket at path and reads the response; the connection stays open
// until the test ends.
func unixRawGet(t *testing.T, path, target, host string) (*http.Response, error) {
	t.Helper()
	uc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	uc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(uc, "GET "+target+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
	return http.ReadResponse(bufio.NewReader(uc), nil)
}

func httpStats(t *testing.T, a *httpAPI) map[string]float64 {
	t.Helper()
	r := a.do("GET", "/v1/stats", nil).want(t, 200)
	var m map[string]float64
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("stats %q: %v", r.body, err)
	}
	return m
}

func TestHTTPStatsAndMetrics(t *testing.T) {
	srv := httpStartRelay(t, relay.Config{})
	extra := func() []relay.Metric {
		return []relay.Metric{{Name: "test_extra_total", Labels: `kind="x"`, Type: "counter", Help: "An extra.\nSecond line \\.", Value: 7}}
	}
	h := httpStart(t, srv, srv.Config().MaxMessage, HTTPConfig{Extra: extra})
	a := newHTTPAPI(t, "http://"+h.Addr(), nil, "")
	c1 := dialRelayClient(t, srv)
	dialRelayClient(t, srv)
	a.do("DELETE", "/v1/clients/"+c1.id, nil).want(t, 200)
	deadline := time.Now().Add(5 * time.Second)
	for srv.Len() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	a.do("POST", "/v1/send/"+httpAbsentID, []byte("x")).want(t, 404)

	stats := httpStats(t, a)
	for key, want := range map[string]float64{
		"pushrelay_connections_open":                                         1,
		`pushrelay_connections_closed_total{reason="kicked"}`:                1,
		`test_extra_total{kind="x"}`:                                         7,
		`pushrelay_http_errors_total{status="unknown_id"}`:                   1,
		`pushrelay_http_requests_total{route="/v1/send/{id}",code="4xx"}`:    1,
		`pushrelay_http_requests_total{route="/v1/clients/{id}",code="2xx"}`: 1,
	} {
		if got, ok := stats[key]; !ok || got != want {
			t.Errorf("stats[%s] = %v (present %v), want %v", key, got, ok, want)
		}
	}

	r := a.do("GET", "/metrics", nil).want(t, 200)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("Content-Type %q, want text/plain; version=0.0.4", ct)
	}
	samples := parsePrometheus(t, string(r.body))
	for key, want := range map[string]float64{
		"pushrelay_connections_open":                                  1,
		`pushrelay_connections_closed_total{reason="kicked"}`:         1,
		`test_extra_total{kind="x"}`:                                  7,
		`pushrelay_http_requests_total{route="/v1/stats",code="2xx"}`: 1,
	} {
		if got, ok := samples[key]; !ok || got != want {
			t.Errorf("/metrics %s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	if !strings.Contains(string(r.body), "# HELP test_extra_total An extra.\\nSecond line \\\\.\n") {
		t.Errorf("help text not escaped:\n%s", r.body)
	}
}

var (
	promSample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"(?:, ?[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (\S+)$`)
	promMeta   = regexp.MustCompile(`^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*)(?: (.*))?$`) // an empty HELP is allowed (the go_* families have one)
)

// parsePrometheus checks text against the exposition format 0.0.4 as the
// relay writes it and returns its samples by name{labels}: HELP and TYPE
// exactly once per name and before its samples, known types, every sample
// line `name{labels} value`, and the samples of a name together.
func parsePrometheus(t *testing.T, text string) map[string]float64 {
	t.Helper()
	if !strings.HasSuffix(text, "\n") {
		t.Fatalf("exposition does not end with a newline")
	}
	help, typ := map[string]bool{}, map[string]string{}
	done := map[string]bool{}
	current := ""
	samples := map[string]float64{}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if m := promMeta.FindStringSubmatch(line); m != nil {
			if m[1] == "TYPE" {
				if !slices.Contains([]string{"counter", "gauge", "untyped", "histogram", "summary"}, m[3]) {
					t.Fatalf("line %d: unknown type %q", i+1, m[3])
				}
				if typ[m[2]] != "" {
					t.Fatalf("line %d: second TYPE for %s", i+1, m[2])
				}
				typ[m[2]] = m[3]
				continue
			}
			if help[m[2]] {
				t.Fatalf("line %d: second HELP for %s", i+1, m[2])
			}
			help[m[2]] = true
			continue
		}
		m := promSample.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("line %d is not `name{labels} value`: %q", i+1, line)
		}
		name := m[1]
		// A histogram's or summary's samples carry suffixes.
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(m[1], suffix); ok && typ[m[1]] == "" && (typ[base] == "histogram" || typ[base] == "summary") {
				name = base
			}
		}
		if !help[name] || typ[name] == "" {
			t.Fatalf("line %d: sample of %s before its HELP and TYPE", i+1, name)
		}
		if name != current {
			if done[name] {
				t.Fatalf("line %d: samples of %s are not together", i+1, name)
			}
			done[current] = true
			current = name
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("line %d: value %q: %v", i+1, m[3], err)
		}
		key := m[1] + m[2]
		if _, dup := samples[key]; dup {
			t.Fatalf("line %d: duplicate sample %s", i+1, key)
		}
		samples[key] = v
	}
	return samples
}

func TestAppendPrometheusGroupsNames(t *testing.T) {
	ms := []relay.Metric{
		{Name: "a_total", Labels: `x="1"`, Type: "counter", Help: "A."},
		{Name: "b", Type: "gauge", Help: "B.", Value: 2.5},
		{Name: "a_total", Labels: `x="2"`, Type: "counter", Help: "A.", Value: 1e21},
		{Name: "c", Help: "C."},
	}
	got := string(AppendPrometheus(nil, ms))
	want := "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 0\na_total{x=\"2\"} 1e+21\n" +
		"# HELP b B.\n# TYPE b gauge\nb 2.5\n" +
		"# HELP c C.\n# TYPE c untyped\nc 0\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	parsePrometheus(t, got)
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "ctl\x00\x01\x1f\n\r\t", "utf8 é ✓", "bad \xff\xfe utf8", `key{reason="kicked"}`} {
		b := appendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q encodes to invalid JSON %s: %v", s, b, err)
		}
		want := strings.ToValidUTF8(s, "\ufffd")
		if s == "bad \xff\xfe utf8" {
			want = "bad \ufffd\ufffd utf8"
		}
		if back != want {
			t.Fatalf("%q round-trips to %q, want %q", s, back, want)
		}
	}
}

// statusRelay is a real relay whose pushes report a chosen status, for the
// outcomes a test cannot provoke on a healthy relay.
type statusRelay struct {
	Relay
	st relay.Status
}

func (r statusRelay) Send(string, []byte) relay.Status { return r.st }
func (r statusRelay) Broadcast([]byte) (relay.Counts, relay.Status) {
	return relay.Counts{}, r.st
}
func (r statusRelay) SendMany(ids []string, _ []byte) (relay.Counts, relay.Status) {
	return relay.Counts{Overloaded: len(ids)}, relay.Queued
}

func TestHTTPOverloadedAndShuttingDown(t *testing.T) {
	srv := httpStartRelay(t, relay.Config{})
	h := httpStart(t, statusRelay{Relay: srv, st: relay.Overloaded}, srv.Config().MaxMessage, HTTPConfig{})
	a := newHTTPAPI(t, "http://"+h.Addr(), nil, "")
	r := a.do("POST", "/v1/send/"+httpAbsentID, []byte("x"))
	r.wantError(t, 503, "overloaded", "retry later")
	if r.header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q, want 1", r.header.Get("Retry-After"))
	}
	a.do("POST", "/v1/broadcast", []byte("x")).wantError(t, 503, "overloaded", "queue is full")
	// For many recipients, overload is per recipient: counted, not failed.
	a.do("POST", "/v1/send", []byte(`{"ids":["`+httpAbsentID+`"],"data":"x"}`)).wantCounts(t, 0, 0, 0, 1)

	// A draining relay: pushes and health say so.
	srv2, a2 := relayWithHTTP(t, relay.Config{}, HTTPConfig{})
	dialRelayClient(t, srv2)
	a2.do("GET", "/healthz", nil).want(t, 200)
	if err := srv2.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	r = a2.do("GET", "/healthz", nil).want(t, 503)
	if !strings.Contains(string(r.body), "stopped") && !strings.Contains(string(r.body), "shutting down") {
		t.Fatalf("healthz body %q", r.body)
	}
	a2.do("POST", "/v1/broadcast", []byte("x")).wantError(t, 503, "shutting_down", "shutting down")
	a2.do("POST", "/v1/subscriptions", []byte(`{"id":"`+httpAbsentID+`","topics":["a"]}`)).wantError(t, 503, "shutting_down", "closed")
	a2.do("DELETE", "/v1/clients/"+httpAbsentID, nil).wantError(t, 503, "shutting_down", "shutting down")
	// A batch says how far it got: nothing, here.
	if m := a2.do("POST", "/v1/batch", []byte(`{"broadcast":true,"data":"x"}`+"\n")).wantError(t, 503, "shutting_down", "shutting down"); m["done"] != float64(0) {
		t.Fatalf("batch on a draining relay: %v; want \"done\":0", m)
	}
}

func TestHTTPCloseBeforeServe(t *testing.T) {
	s, err := ListenHTTP(HTTPConfig{Addr: "127.0.0.1:0", Logger: httpQuietLogger()}, nil, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatalf("Serve after Close: %v, want nil", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// httpRaceEnabled reports whether the test binary was built with -race, under
// which sync.Pool drops items on purpose and allocation counts mean little.
func httpRaceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// queuedRelay accepts every push without doing anything, so the handler's
// own allocations can be counted.
type queuedRelay struct{ Relay }

func (queuedRelay) Send(string, []byte) relay.Status { return relay.Queued }
func (queuedRelay) Publish(string, []byte) (relay.Counts, relay.Status) {
	return relay.Counts{Queued: 3}, relay.Queued
}
func (queuedRelay) Broadcast([]byte) (relay.Counts, relay.Status) {
	return relay.Counts{Queued: 1000}, relay.Queued
}

// httpHandlerCtx returns a request context for method and uri with body, as
// fasthttp hands one to the handler.
func httpHandlerCtx(method, uri string, body []byte) *fasthttp.RequestCtx {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI(uri)
	req.Header.SetHost("127.0.0.1:8844")
	req.SetBody(body)
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	return &ctx
}

func TestHTTPPushAllocs(t *testing.T) {
	if httpRaceEnabled() {
		t.Skip("allocation counts are not meaningful under -race")
	}
	s, err := ListenHTTP(HTTPConfig{Addr: "127.0.0.1:0", Token: "tok", Logger: httpQuietLogger()}, queuedRelay{}, 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, uri := range []string{"/v1/send/" + httpAbsentID, "/v1/publish/news/eu", "/v1/broadcast"} {
		ctx := httpHandlerCtx("POST", uri, []byte("payload"))
		ctx.Request.Header.Set("Authorization", "Bearer tok")
		allocs := testing.AllocsPerRun(200, func() {
			ctx.Response.Reset()
			s.handle(ctx)
		})
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("POST %s: status %d: %s", uri, ctx.Response.StatusCode(), ctx.Response.Body())
		}
		if allocs != 0 {
			t.Errorf("POST %s: %v allocations per request, want 0", uri, allocs)
		}
	}
}

func BenchmarkHTTPSendHandler(b *testing.B) {
	s, err := ListenHTTP(HTTPConfig{Addr: "127.0.0.1:0", Token: "tok", Logger: httpQuietLogger()}, queuedRelay{}, 1024)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := httpHandlerCtx("POST", "/v1/send/"+httpAbsentID, []byte("payload"))
	ctx.Request.Header.Set("Authorization", "Bearer tok")
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		s.handle(ctx)
	}
}
