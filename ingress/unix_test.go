package ingress

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/ingress/client"
	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// env is a relay with its Unix ingress, both real, on loopback and in a
// temporary directory.
type env struct {
	t    *testing.T
	rel  *relay.Server
	unix *UnixServer
	path string
}

func newEnv(t *testing.T, rcfg relay.Config, icfg Config) *env {
	t.Helper()
	rcfg.Listen = "127.0.0.1:0"
	rcfg.Logger = quietLogger()
	rel, err := relay.New(rcfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := rel.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rel.Shutdown(context.Background()) })
	if icfg.Path == "" {
		icfg.Path = filepath.Join(t.TempDir(), "r.sock")
	}
	icfg.Logger = quietLogger()
	e := &env{t: t, rel: rel, path: icfg.Path}
	e.startIngress(icfg)
	return e
}

func (e *env) startIngress(icfg Config) {
	u, err := ListenUnix(icfg, e.rel, e.rel.Config().MaxMessage)
	if err != nil {
		e.t.Fatal(err)
	}
	go u.Serve()
	e.unix = u
	e.t.Cleanup(func() { u.Close() })
}

// tcpClient is a relay client: a TCP connection that reads frames.
type tcpClient struct {
	id string
	nc net.Conn
	fr *relay.FrameReader
}

func (e *env) connect() *tcpClient {
	e.t.Helper()
	nc, err := net.Dial("tcp", e.rel.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { nc.Close() })
	c := &tcpClient{nc: nc, fr: relay.NewFrameReader(nc, e.rel.Config().Framing, 0)}
	c.id = string(c.next(e.t))
	return c
}

func (c *tcpClient) next(t *testing.T) []byte {
	t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := c.fr.Next()
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	return append([]byte(nil), b...)
}

func (e *env) dial() *client.Client {
	e.t.Helper()
	cl, err := client.Dial(e.path, client.Options{})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cl.Close() })
	return cl
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestEveryOperationThroughTheGoClient(t *testing.T) {
	e := newEnv(t, relay.Config{}, Config{})
	a, b := e.connect(), e.connect()
	cl := e.dial()
	x := ctx(t)

	if c, err := cl.Send(x, a.id, []byte("one")); err != nil || c.Queued != 1 {
		t.Fatalf("Send = %+v, %v", c, err)
	}
	if got := a.next(t); string(got) != "one" {
		t.Fatalf("a got %q", got)
	}
	if c, err := cl.Send(x, "AAAAAAAAAAAAAAAAAAAAAA", []byte("x")); err != nil || c.UnknownID != 1 {
		t.Fatalf("Send to unknown = %+v, %v; want unknown 1", c, err)
	}
	if c, err := cl.SendMany(x, []string{a.id, b.id, "BBBBBBBBBBBBBBBBBBBBBB"}, []byte("many")); err != nil || c.Queued != 2 || c.UnknownID != 1 {
		t.Fatalf("SendMany = %+v, %v", c, err)
	}
	a.next(t)
	b.next(t)
	if n, err := cl.Subscribe(x, b.id, "news", "sport"); err != nil || n != 2 {
		t.Fatalf("Subscribe = %d, %v", n, err)
	}
	if c, err := cl.Publish(x, "news", []byte("headline")); err != nil || c.Queued != 1 {
		t.Fatalf("Publish = %+v, %v", c, err)
	}
	if got := b.next(t); string(got) != "headline" {
		t.Fatalf("b got %q", got)
	}
	if n, err := cl.Unsubscribe(x, b.id, "news"); err != nil || n != 1 {
		t.Fatalf("Unsubscribe = %d, %v", n, err)
	}
	if c, err := cl.Broadcast(x, []byte("all")); err != nil || c.Queued != 2 {
		t.Fatalf("Broadcast = %+v, %v", c, err)
	}
	a.next(t)
	b.next(t)
	info, err := cl.Info(x, a.id)
	if err != nil || !info.Connected || !strings.HasPrefix(info.Remote, "127.0.0.1:") || time.Since(info.Since) > time.Minute {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	ids, next, err := cl.List(x, "", 100)
	if err != nil || len(ids) != 2 || next != "" {
		t.Fatalf("List = %v, %q, %v", ids, next, err)
	}
	stats, err := cl.Stats(x)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range stats {
		if s.Name == "pushrelay_connections_open" && s.Value == 2 {
			found = true
		}
	}
	if !found {
		t.Fatalf("stats lack pushrelay_connections_open 2: %v", stats)
	}
	if err := cl.Kick(x, a.id); err != nil {
		t.Fatal(err)
	}
	a.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.fr.Next(); err != io.EOF {
		t.Fatalf("kicked client read %v, want EOF", err)
	}
	err = cl.Kick(x, a.id)
	if client.StatusOf(err) != wire.StatusUnknownID {
		t.Fatalf("second kick: %v, want unknown_id", err)
	}
	if err := cl.Ping(x); err != nil {
		t.Fatal(err)
	}
}

func TestErrorsNameTheProblem(t *testing.T) {
	e := newEnv(t, relay.Config{Framing: relay.FramingLine, MaxMessage: 1000, MaxTopicsPerConn: 1}, Config{MaxIDs: 3, MaxTopics: 2})
	a := e.connect()
	cl := e.dial()
	x := ctx(t)
	cases := []struct {
		name string
		call func() error
		want wire.Status
		msg  string
	}{
		{"too large", func() error { _, err := cl.Send(x, a.id, make([]byte, 1001)); return err }, wire.StatusTooLarge, "max-message is 1000"},
		{"newline under line framing", func() error { _, err := cl.Send(x, a.id, []byte("a\nb")); return err }, wire.StatusBadRequest, "offset 1"},
		{"not an ID", func() error { _, err := cl.Send(x, "no spaces allowed", []byte("x")); return err }, wire.StatusBadRequest, "not a client ID"},
		{"too many IDs", func() error { _, err := cl.SendMany(x, []string{a.id, a.id, a.id, a.id}, []byte("x")); return err }, wire.StatusLimit, "most in one request is 3"},
		{"too many topics", func() error { _, err := cl.Subscribe(x, a.id, "a", "b", "c"); return err }, wire.StatusLimit, "most in one request is 2"},
		{"topic limit", func() error { _, err := cl.Subscribe(x, a.id, "a", "b"); return err }, wire.StatusLimit, "in 1 topics"},
		{"bad topic", func() error { _, err := cl.Publish(x, "has space", []byte("x")); return err }, wire.StatusBadRequest, "offset 3"},
		{"subscribe unknown", func() error { _, err := cl.Subscribe(x, "AAAAAAAAAAAAAAAAAAAAAA", "t"); return err }, wire.StatusUnknownID, "unknown client ID"},
		{"bad cursor", func() error { _, _, err := cl.List(x, "garbage", 10); return err }, wire.StatusBadRequest, "invalid cursor"},
	}
	for _, tc := range cases {
		err := tc.call()
		var re *client.Error
		if !errors.As(err, &re) || re.Status != tc.want || !strings.Contains(re.Message, tc.msg) {
			t.Errorf("%s: got %v, want %v mentioning %q", tc.name, err, tc.want, tc.msg)
		}
	}
	// The connection survived every one of them.
	if c, err := cl.Send(x, a.id, []byte("fine")); err != nil || c.Queued != 1 {
		t.Fatalf("after errors: %+v, %v", c, err)
	}
}

// rawConn speaks the wire protocol by hand, to send what no client would.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func (e *env) raw() *rawConn {
	nc, err := net.Dial("unix", e.path)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { nc.Close() })
	return &rawConn{t: e.t, nc: nc, br: bufio.NewReader(nc)}
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

func frame(op wire.Op, flags uint8, req uint32, body []byte) []byte {
	return append(wire.AppendHeader(nil, uint8(op), flags, req, len(body)), body...)
}

// read returns the next frame, or an error (io.EOF when the relay hung up).
func (r *rawConn) read() (wire.Header, []byte, error) {
	r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hdr [wire.HeaderLen]byte
	if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
		return wire.Header{}, nil, err
	}
	h, err := wire.ParseHeader(hdr[:], 1<<30)
	if err != nil {
		return h, nil, err
	}
	body := make([]byte, h.BodyLen())
	_, err = io.ReadFull(r.br, body)
	return h, body, err
}

func TestMalformedRequests(t *testing.T) {
	e := newEnv(t, relay.Config{}, Config{MaxRequest: 80 << 10})
	a := e.connect()
	r := e.raw()

	// Unknown operation: an error reply, and the connection goes on.
	r.write(frame(0x7f, 0, 1, nil))
	h, body, err := r.read()
	if err != nil || h.Request != 1 || wire.Status(h.Flags) != wire.StatusUnknownOp {
		t.Fatalf("unknown op: %+v %v", h, err)
	}
	if rd := wire.NewReader(body); !strings.Contains(string(rd.Str16("msg")), "0x7f") {
		t.Fatalf("message %q does not name the op", body)
	}
	// An unknown op whose reply kind would have been the event kind.
	r.write(frame(0x40, 0, 7, nil))
	if h, _, err := r.read(); err != nil || h.Kind != wire.ReplyBit || h.Request != 7 || wire.Status(h.Flags) != wire.StatusUnknownOp {
		t.Fatalf("op 0x40: %+v %v; want kind 0x80, request 7, unknown_op", h, err)
	}
	// Unknown flag bits.
	r.write(frame(wire.OpPing, 0x02, 8, nil))
	if h, _, err := r.read(); err != nil || h.Request != 8 || wire.Status(h.Flags) != wire.StatusBadRequest {
		t.Fatalf("unknown flag bits: %+v %v", h, err)
	}
	// Every operation that takes an ID refuses a malformed one alike.
	for i, op := range []wire.Op{wire.OpKick, wire.OpInfo} {
		r.write(frame(op, 0, uint32(20+i), wire.AppendStr8(nil, "not an id")))
		if h, body, err := r.read(); err != nil || wire.Status(h.Flags) != wire.StatusBadRequest || !strings.Contains(string(body), "not a client ID") {
			t.Fatalf("%s of a malformed ID: %+v %q %v", op, h, body, err)
		}
	}
	// A body that ends early: bad request, connection goes on.
	r.write(frame(wire.OpSend, 0, 2, []byte{40, 'x'}))
	if h, _, err := r.read(); err != nil || h.Request != 2 || wire.Status(h.Flags) != wire.StatusBadRequest {
		t.Fatalf("short body: %+v %v", h, err)
	}
	// Trailing bytes where none belong.
	r.write(frame(wire.OpKick, 0, 3, append(wire.AppendStr8(nil, a.id), 9, 9)))
	if h, _, err := r.read(); err != nil || wire.Status(h.Flags) != wire.StatusBadRequest {
		t.Fatalf("trailing bytes: %+v %v", h, err)
	}
	// No-reply: silence on success, a reply on failure.
	r.write(frame(wire.OpSend, wire.FlagNoReply, 4, append(wire.AppendStr8(nil, a.id), "quiet"...)))
	r.write(frame(wire.OpSend, wire.FlagNoReply, 5, append(wire.AppendStr8(nil, "bad id"), "x"...)))
	r.write(frame(wire.OpPing, 0, 6, []byte("echo")))
	h, _, _ = r.read()
	if h.Request != 5 || wire.Status(h.Flags) != wire.StatusBadRequest {
		t.Fatalf("no-reply failure: got reply %+v, want the error for request 5", h)
	}
	h, body, _ = r.read()
	if h.Request != 6 || string(body) != "echo" {
		t.Fatalf("ping after no-reply: %+v %q", h, body)
	}
	if got := a.next(t); string(got) != "quiet" {
		t.Fatalf("no-reply send delivered %q", got)
	}
	// A frame too large to accept: an error with request 0, then hang-up.
	big := make([]byte, wire.HeaderLen)
	binary.BigEndian.PutUint32(big, 100<<10)
	big[4] = byte(wire.OpBroadcast)
	r.write(big)
	h, body, err = r.read()
	if err != nil || h.Request != 0 || wire.Status(h.Flags) != wire.StatusTooLarge {
		t.Fatalf("oversized frame: %+v %v", h, err)
	}
	if rd := wire.NewReader(body); !strings.Contains(string(rd.Str16("msg")), "closing the connection") {
		t.Fatalf("message %q does not say the connection closes", body)
	}
	if _, _, err := r.read(); err != io.EOF {
		t.Fatalf("after an untrustworthy frame: %v, want EOF", err)
	}
	// A length below the fixed fields.
	r2 := e.raw()
	r2.write([]byte{0, 0, 0, 2})
	if h, _, err := r2.read(); err != nil || wire.Status(h.Flags) != wire.StatusBadRequest {
		t.Fatalf("short length: %+v %v", h, err)
	}
	// Other connections never noticed.
	cl := e.dial()
	if c, err := cl.Send(ctx(t), a.id, []byte("still")); err != nil || c.Queued != 1 {
		t.Fatalf("after bad frames: %+v %v", c, err)
	}
	if got := e.unix.Counters().BadFrames.Load(); got != 2 {
		t.Fatalf("BadFrames = %d, want 2", got)
	}
}

func TestPipelinedRequestsFromEightGoroutines(t *testing.T) {
	e := newEnv(t, relay.Config{}, Config{})
	cl := e.dial()
	var clients []*tcpClient
	for i := 0; i < 8; i++ {
		clients = append(clients, e.connect())
	}
	const per = 500
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				c, err := cl.Send(context.Background(), clients[g].id, []byte(fmt.Sprintf("g%d-%d", g, i)))
				if err != nil || c.Queued != 1 {
					errs <- fmt.Errorf("goroutine %d push %d: %+v %v", g, i, c, err)
					return
				}
			}
		}(g)
	}
	// Each client gets its goroutine's pushes, in order.
	for g, c := range clients {
		for i := 0; i < per; i++ {
			if got, want := string(c.next(t)), fmt.Sprintf("g%d-%d", g, i); got != want {
				t.Fatalf("client %d got %q, want %q", g, got, want)
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := e.unix.Counters().Requests.Load(); got != 8*per {
		t.Fatalf("Requests = %d, want %d", got, 8*per)
	}
}

func TestWatchReportsConnectAndDisconnect(t *testing.T) {
	e := newEnv(t, relay.Config{}, Config{})
	cl := e.dial()
	w, err := cl.Watch(ctx(t), 0)
	if err != nil {
		t.Fatal(err)
	}
	if w.Instance != e.rel.Instance() {
		t.Fatalf("instance %q, want %q", w.Instance, e.rel.Instance())
	}
	a := e.connect()
	cl.Kick(ctx(t), a.id)
	var got []client.Event
	timeout := time.After(5 * time.Second)
	for len(got) < 2 {
		select {
		case ev := <-w.Events():
			got = append(got, ev)
		case <-timeout:
			t.Fatalf("events so far: %+v", got)
		}
	}
	if got[0].Kind != wire.EventConnect || got[0].ID != a.id || !strings.HasPrefix(got[0].Remote, "127.0.0.1:") {
		t.Fatalf("first event %+v", got[0])
	}
	if got[1].Kind != wire.EventDisconnect || got[1].Reason != "kicked" || got[1].Seq != got[0].Seq+1 {
		t.Fatalf("second event %+v", got[1])
	}
	// Replaying from the first sequence number gives the same events.
	w2, err := e.dial().Watch(ctx(t), got[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if ev := <-w2.Events(); ev.Seq != got[0].Seq || ev.ID != a.id {
		t.Fatalf("replayed %+v", ev)
	}
}

func TestSocketFileLifecycle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "r.sock")
	e := newEnv(t, relay.Config{}, Config{Path: path})
	fi, err := os.Stat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket %v, %v: want a socket with mode 0660", fi.Mode(), err)
	}
	// A live relay's socket is refused, not stolen.
	if _, err := ListenUnix(Config{Path: path, Logger: quietLogger()}, e.rel, relay.DefaultMaxMessage); err == nil || !strings.Contains(err.Error(), "already answers") {
		t.Fatalf("second ListenUnix on a live socket: %v", err)
	}
	// Not a socket: refused.
	plain := filepath.Join(dir, "file")
	os.WriteFile(plain, []byte("x"), 0o600)
	if _, err := ListenUnix(Config{Path: plain, Logger: quietLogger()}, e.rel, relay.DefaultMaxMessage); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("ListenUnix on a plain file: %v", err)
	}
	// A stale socket (nobody listening) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	ln, _ := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	ln.SetUnlinkOnClose(false)
	ln.Close()
	u, err := ListenUnix(Config{Path: stale, Logger: quietLogger()}, e.rel, relay.DefaultMaxMessage)
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	go u.Serve()
	u.Close()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("socket left behind after Close: %v", err)
	}
}

func TestConnectionLimitIsExplained(t *testing.T) {
	e := newEnv(t, relay.Config{}, Config{MaxConns: 2})
	e.dial()
	e.dial()
	r := e.raw()
	h, body, err := r.read()
	if err != nil || wire.Status(h.Flags) != wire.StatusNotAllowed {
		t.Fatalf("third connection: %+v %v", h, err)
	}
	if rd := wire.NewReader(body); !strings.Contains(string(rd.Str16("m")), "too many ingress connections") {
		t.Fatalf("message %q", body)
	}
	if _, _, err := r.read(); err != io.EOF {
		t.Fatalf("refused connection left open: %v", err)
	}
}

func TestClientReconnectsAfterRestart(t *testing.T) {
	e := newEnv(t, relay.Config{}, Config{})
	cl := e.dial()
	a := e.connect()
	if _, err := cl.Send(ctx(t), a.id, []byte("before")); err != nil {
		t.Fatal(err)
	}
	e.unix.Close() // the ingress goes away, as in a relay restart
	if _, err := cl.Send(ctx(t), a.id, []byte("during")); err == nil {
		t.Fatal("send while the relay is down succeeded")
	}
	e.startIngress(Config{Path: e.path, Logger: quietLogger()})
	var err error
	for i := 0; i < 50; i++ {
		if _, err = cl.Send(ctx(t), a.id, []byte("after")); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("client did not reconnect: %v", err)
	}
	if got := a.next(t); string(got) != "before" {
		t.Fatalf("got %q", got)
	}
	if got := a.next(t); string(got) != "after" {
		t.Fatalf("got %q", got)
	}
}

func TestShutdownAnswersShuttingDown(t *testing.T) {
	e := newEnv(t, relay.Config{}, Config{})
	a := e.connect()
	cl := e.dial()
	e.rel.Shutdown(context.Background())
	_, err := cl.Send(ctx(t), a.id, []byte("late"))
	if client.StatusOf(err) != wire.StatusShuttingDown {
		t.Fatalf("push after shutdown: %v, want shutting_down", err)
	}
}
