package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// browserPage is served by the test from its own origin, so the page's
// connections to the relay are cross-origin: SSE needs the relay's CORS
// answer. It reports every message it gets back to the test server.
const browserPage = `<!doctype html><meta charset="utf-8"><title>pushrelay browser test</title>
<script>
const relay = %q;
function report(t, kind, data) {
  fetch("/report", {method: "POST", body: JSON.stringify({t, kind, data})});
}
let wsID = null, sseID = null;
const ws = new WebSocket("ws://" + relay + "/ws");
ws.onmessage = (e) => {
  const data = typeof e.data === "string" ? e.data : "binary:" + new Uint8Array(e.data).length;
  if (wsID === null) { wsID = data; report("ws", "id", data); } else { report("ws", "msg", data); }
};
ws.onclose = (e) => report("ws", "close", String(e.code));
ws.onopen = () => report("ws", "ext", ws.extensions);
const es = new EventSource("http://" + relay + "/sse");
es.onmessage = (e) => {
  if (sseID === null) { sseID = e.data; report("sse", "id", e.data); } else { report("sse", "msg", e.data); }
};
es.onerror = () => report("sse", "error", String(es.readyState));
</script>`

type browserReport struct{ T, Kind, Data string }

// findChromium returns Debian's Chromium, or "" when it is not installed.
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// TestBrowserReceivesPushes: headless Chromium (an independent WebSocket
// and EventSource implementation) opens a page, gets its IDs over
// WebSocket and SSE, and shows what the test pushes through the ingress,
// including a 2 KiB JSON message it had to inflate (permessage-deflate).
func TestBrowserReceivesPushes(t *testing.T) {
	chromium := findChromium()
	if chromium == "" {
		t.Skip("chromium is not installed (apt-get install chromium); .ci/run installs it")
	}
	p := startRelay(t, nil, "--listen", "127.0.0.1:0", "--web", "127.0.0.1:0", "--web-compress")
	relayWeb := p.web

	reports := make(chan browserReport, 64)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, browserPage, relayWeb)
	})
	mux.HandleFunc("/report", func(w http.ResponseWriter, r *http.Request) {
		var rep browserReport
		body, _ := io.ReadAll(r.Body)
		if json.Unmarshal(body, &rep) == nil {
			reports <- rep
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	page := &http.Server{Handler: mux}
	go page.Serve(ln)
	t.Cleanup(func() { page.Close() })

	// Chromium runs in its own process group so the test stops it and
	// every helper process it started, and nothing else.
	cmd := exec.Command(chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(t.TempDir(), "profile"), "http://"+ln.Addr().String()+"/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var chromeLog strings.Builder
	var logMu sync.Mutex
	cmd.Stdout, cmd.Stderr = lockedWriter{&chromeLog, &logMu}, lockedWriter{&chromeLog, &logMu}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})

	got := map[string]string{}
	await := func(what string, cond func(browserReport) bool) browserReport {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case r := <-reports:
				got[r.T+"/"+r.Kind] = r.Data
				if cond(r) {
					return r
				}
			case <-timeout:
				logMu.Lock()
				defer logMu.Unlock()
				t.Fatalf("the browser never reported %s; it reported %v\nchromium:\n%s\nrelay:\n%s", what, got, chromeLog.String(), p.logs())
			}
		}
	}
	wsID := await("a WebSocket ID", func(r browserReport) bool { return r.T == "ws" && r.Kind == "id" }).Data
	if got["ws/ext"] == "" {
		await("the WebSocket's extensions", func(r browserReport) bool { return r.T == "ws" && r.Kind == "ext" })
	}
	if ext := got["ws/ext"]; !strings.Contains(ext, "permessage-deflate") {
		t.Fatalf("Chromium did not negotiate permessage-deflate: extensions %q", ext)
	}
	sseID := got["sse/id"]
	if sseID == "" {
		sseID = await("an SSE ID", func(r browserReport) bool { return r.T == "sse" && r.Kind == "id" }).Data
	}

	push := func(id, msg string) {
		t.Helper()
		if code, out, stderr := runBinary(t, nil, "send", "--ingress", p.sock, id, msg); code != 0 {
			t.Fatalf("pushrelay send: exit %d %s %s", code, out, stderr)
		}
	}
	var big strings.Builder
	big.WriteString(`{"quotes":[`)
	for i := 0; big.Len() < 2048; i++ {
		fmt.Fprintf(&big, `{"symbol":"S%03d","bid":%d.25,"ask":%d.75},`, i, 100+i, 100+i)
	}
	bigMsg := strings.TrimSuffix(big.String(), ",") + "]}"

	push(wsID, "hello, websocket")
	await("the WebSocket push", func(r browserReport) bool { return r.T == "ws" && r.Kind == "msg" && r.Data == "hello, websocket" })
	push(wsID, bigMsg)
	await("the compressed 2 KiB message", func(r browserReport) bool { return r.T == "ws" && r.Kind == "msg" && r.Data == bigMsg })
	push(sseID, "hello,\nevent stream")
	await("the SSE push", func(r browserReport) bool {
		return r.T == "sse" && r.Kind == "msg" && r.Data == "hello,\nevent stream"
	})

	code, out, _ := runBinary(t, nil, "stats", "--raw", "--ingress", p.sock)
	if code != 0 || !strings.Contains(out, "pushrelay_web_compressed_total") {
		t.Fatalf("stats: exit %d\n%s", code, out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "pushrelay_web_compressed_total") && strings.HasSuffix(strings.TrimSpace(line), " 0") {
			t.Fatalf("the 2 KiB message was not compressed: %s", line)
		}
	}
}

// lockedWriter serialises writes from Chromium's two output pipes.
type lockedWriter struct {
	b  *strings.Builder
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
