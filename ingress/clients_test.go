package ingress

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

// The copy-paste clients in docs/clients, run against a real relay: each
// test runs a driver script that uses the client library and prints one
// JSON line per step, and checks every step and what the TCP client got.

const clientsDir = "../docs/clients"

// pythonDriver exercises docs/clients/pushrelay_client.py.
// Arguments: client dir, socket, connected ID, unknown ID.
const pythonDriver = `
import json, sys
sys.path.insert(0, sys.argv[1])
from pushrelay_client import Client, Counts, PushRelayError

sock, cid, unknown = sys.argv[2], sys.argv[3], sys.argv[4]
c = Client(sock)

def out(step, **kw):
    kw["step"] = step
    print(json.dumps(kw), flush=True)

def counts(step, c):
    out(step, queued=c.queued, unknown=c.unknown, dropped=c.dropped, overloaded=c.overloaded)

counts("send", c.send(cid, b"from-send"))
out("subscribe", n=c.subscribe(cid, ["news"]))
ids, cursor, count = c.presence("news")
out("presence", ids=ids, next=cursor, count=count, all=list(c.presence_all("news", page=1)))
counts("publish", c.publish("news", "from-publish"))
counts("broadcast", c.broadcast(b"from-broadcast"))
i = c.info(cid)
out("info", connected=i.connected, remote=i.remote, since_ns=i.since_ns)
ids, cursor = c.list()
out("list", ids=ids, next=cursor, all=list(c.list_all(page=1)))
out("stats", open=[s.value for s in c.stats() if s.name == "pushrelay_connections_open"])
counts("unknown", c.send(unknown, b"nobody"))
try:
    c.send(cid, b"x" * 70000)
    out("too_large", raised=False)
except PushRelayError as e:
    out("too_large", raised=True, status=e.status, code=e.code, message=e.message)
p = c.pipeline()
for n in range(100):
    p.send(cid, "pipe-%d" % n, no_reply=n % 2 == 1)
p.send("not an id", b"x", no_reply=True)
res = p.execute(raise_on_error=False)
out("pipeline", queued=sum(r.queued for r in res if isinstance(r, Counts)),
    quiet=sum(1 for r in res if r is None),
    errors=[e.status for e in res if isinstance(e, PushRelayError)])
out("ping", echo=c.ping(b"pong").decode())
w = Client(sock).watch()
out("watching", last=w.last)
ev = next(w)
out("event", kind=ev.kind, id=ev.id, remote=ev.remote)
`

// nodeDriver exercises docs/clients/pushrelay_client.js, with the same
// steps and output.
const nodeDriver = `
const path = require('path');
const [dir, sock, cid, unknown] = process.argv.slice(2);
const { Client, PushRelayError } = require(path.resolve(dir, 'pushrelay_client.js'));

function out(step, kw) {
  console.log(JSON.stringify({ ...kw, step }, (k, v) => (typeof v === 'bigint' ? Number(v) : v)));
}
function counts(step, c) {
  out(step, { queued: c.queued, unknown: c.unknown, dropped: c.dropped, overloaded: c.overloaded });
}

(async () => {
  const c = new Client(sock);
  counts('send', await c.send(cid, Buffer.from('from-send')));
  out('subscribe', { n: await c.subscribe(cid, ['news']) });
  const p = await c.presence('news');
  const pall = [];
  for await (const id of c.presenceAll('news', 1)) pall.push(id);
  out('presence', { ids: p.ids, next: p.next, count: p.count, all: pall });
  counts('publish', await c.publish('news', 'from-publish'));
  counts('broadcast', await c.broadcast('from-broadcast'));
  const i = await c.info(cid);
  out('info', { connected: i.connected, remote: i.remote, since_ns: i.sinceNs });
  const { ids, next } = await c.list();
  const all = [];
  for await (const id of c.listAll(1)) all.push(id);
  out('list', { ids, next, all });
  out('stats', { open: (await c.stats()).filter((s) => s.name === 'pushrelay_connections_open').map((s) => s.value) });
  counts('unknown', await c.send(unknown, 'nobody'));
  try {
    await c.send(cid, 'x'.repeat(70000));
    out('too_large', { raised: false });
  } catch (e) {
    if (!(e instanceof PushRelayError)) throw e;
    out('too_large', { raised: true, status: e.status, code: e.code, message: e.relayMessage });
  }
  const errors = [];
  c.on('noReplyError', (e) => errors.push(e.status));
  const res = [];
  for (let n = 0; n < 100; n++) res.push(c.send(cid, 'pipe-' + n, { noReply: n % 2 === 1 }));
  res.push(c.send('not an id', 'x', { noReply: true }));
  const done = await Promise.all(res);
  await c.ping(); // every error reply before the ping's reply has arrived
  out('pipeline', {
    queued: done.filter((r) => r).reduce((a, r) => a + r.queued, 0),
    quiet: done.filter((r) => r === undefined).length - errors.length,
    errors,
  });
  out('ping', { echo: (await c.ping('pong')).toString() });
  c.close();
  const wc = new Client(sock);
  const w = await wc.watch();
  out('watching', { last: w.last });
  for await (const ev of w) {
    out('event', { kind: ev.kind, id: ev.id, remote: ev.remote });
    break;
  }
  wc.close();
})().catch((e) => { console.error(e); process.exit(1); });
`

func TestPythonClient(t *testing.T) {
	testScriptClient(t, "python3", "pushrelay_client.py", ".py", pythonDriver)
}

func TestNodeClient(t *testing.T) {
	testScriptClient(t, "node", "pushrelay_client.js", ".js", nodeDriver)
}

func testScriptClient(t *testing.T, interp, client, ext, driver string) {
	bin, err := exec.LookPath(interp)
	if err != nil {
		t.Skipf("%s not installed", interp)
	}
	t.Parallel()
	e := newEnv(t, relay.Config{}, Config{})
	a := e.connect()
	const unknown = "Xr4nB8vQ1mTz6KpL3wYdHe"
	dir, err := filepath.Abs(clientsDir)
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "driver"+ext)
	if err := os.WriteFile(script, []byte(driver), 0o644); err != nil {
		t.Fatal(err)
	}
	x, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(x, bin, script, dir, e.path, a.id, unknown)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan map[string]any)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"step": "garbage", "line": sc.Text()}
			}
			lines <- m
		}
	}()
	next := func(step string) map[string]any {
		t.Helper()
		select {
		case m, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("%s: the driver ended before step %s:\n%s", interp, step, stderr.String())
			}
			if m["step"] != step {
				t.Fatalf("%s: got step %v, want %s: %v\n%s", interp, m["step"], step, m, stderr.String())
			}
			return m
		case <-x.Done():
			t.Fatalf("%s: timed out waiting for step %s:\n%s", interp, step, stderr.String())
		}
		return nil
	}
	want := func(step string, m map[string]any, key string, v any) {
		t.Helper()
		if got := m[key]; !reflect.DeepEqual(got, v) {
			t.Errorf("%s %s: got %s %#v, want %#v", interp, step, key, got, v)
		}
	}
	wantCounts := func(step string, queued, unknown float64) {
		t.Helper()
		m := next(step)
		want(step, m, "queued", queued)
		want(step, m, "unknown", unknown)
		want(step, m, "dropped", 0.0)
		want(step, m, "overloaded", 0.0)
	}

	wantCounts("send", 1, 0)
	want("subscribe", next("subscribe"), "n", 1.0)
	m := next("presence")
	want("presence", m, "ids", []any{a.id})
	want("presence", m, "next", "")
	want("presence", m, "count", 1.0)
	want("presence", m, "all", []any{a.id})
	wantCounts("publish", 1, 0)
	wantCounts("broadcast", 1, 0)
	m = next("info")
	want("info", m, "connected", true)
	if r, _ := m["remote"].(string); !strings.HasPrefix(r, "127.0.0.1:") {
		t.Errorf("%s info: remote %q, want 127.0.0.1:port", interp, r)
	}
	if ns, _ := m["since_ns"].(float64); time.Since(time.Unix(0, int64(ns))) > time.Minute {
		t.Errorf("%s info: since %v, want about now", interp, time.Unix(0, int64(ns)))
	}
	m = next("list")
	want("list", m, "ids", []any{a.id})
	want("list", m, "next", "")
	want("list", m, "all", []any{a.id})
	want("stats", next("stats"), "open", []any{1.0})
	wantCounts("unknown", 0, 1)
	m = next("too_large")
	want("too_large", m, "raised", true)
	want("too_large", m, "status", "too_large")
	want("too_large", m, "code", 3.0)
	want("too_large", m, "message", fmt.Sprintf("send: payload too large: 70000 bytes, max-message is %d", relay.DefaultMaxMessage))
	m = next("pipeline")
	want("pipeline", m, "queued", 50.0)
	want("pipeline", m, "quiet", 50.0)
	want("pipeline", m, "errors", []any{"bad_request"})
	want("ping", next("ping"), "echo", "pong")

	// The TCP client got every push, in order.
	wantMsgs := []string{"from-send", "from-publish", "from-broadcast"}
	for n := 0; n < 100; n++ {
		wantMsgs = append(wantMsgs, fmt.Sprintf("pipe-%d", n))
	}
	for _, w := range wantMsgs {
		if got := a.next(t); string(got) != w {
			t.Fatalf("%s: the TCP client got %q, want %q", interp, got, w)
		}
	}

	// The watch sees a new client arrive.
	next("watching")
	b := e.connect()
	m = next("event")
	want("event", m, "kind", "connect")
	want("event", m, "id", b.id)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s driver: %v\n%s", interp, err, stderr.String())
	}

	// The command line: a push, then an unknown ID with exit status 4.
	out, err := exec.CommandContext(x, bin, filepath.Join(dir, client), e.path, "send", a.id, "from-cli").CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"queued": 1`) && !strings.Contains(string(out), `"queued":1`) {
		t.Errorf("%s %s send: %v\n%s", interp, client, err, out)
	}
	if got := a.next(t); string(got) != "from-cli" {
		t.Errorf("%s CLI: the TCP client got %q", interp, got)
	}
	out, err = exec.CommandContext(x, bin, filepath.Join(dir, client), e.path, "kick", unknown).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 || !strings.Contains(string(out), "unknown_id") {
		t.Errorf("%s %s kick of an unknown ID: %v, want exit status 4 naming unknown_id\n%s", interp, client, err, out)
	}
}
