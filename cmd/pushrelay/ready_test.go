package main

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

// waitReadyFile waits for serve's ready file and returns what it holds.
func waitReadyFile(t *testing.T, path string, cmd *exec.Cmd) map[string]any {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("ready file %q: %v", b, err)
		}
		return got
	}
	t.Fatalf("no ready file %s after 10s", path)
	return nil
}

// TestReadyFileHasEveryAddress: serve --ready-file (here through its
// variable) writes, once it serves, the pid, version, node and every
// address as bound, each of which answers; it is gone after the exit.
// Listeners that are off are "".
func TestReadyFileHasEveryAddress(t *testing.T) {
	dir := t.TempDir()
	ready, sock := filepath.Join(dir, "ready.json"), filepath.Join(dir, "r.sock")
	cmd := exec.Command(binary, "serve", "--listen", "127.0.0.1:0", "--web", "127.0.0.1:0", "--http", "127.0.0.1:0",
		"--flash-policy-listen", "127.0.0.1:0", "--ingress", sock)
	cmd.Env = append(os.Environ(), "PUSHRELAY_READY_FILE="+ready)
	var log strings.Builder
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	got := waitReadyFile(t, ready, cmd)
	want := []string{"pid", "version", "node", "listen", "web", "policy", "http", "ingress"}
	if len(got) != len(want) {
		t.Errorf("ready file has %d keys %v, want %v", len(got), got, want)
	}
	if pid, _ := got["pid"].(float64); int(pid) != cmd.Process.Pid {
		t.Errorf("pid %v, want %d", got["pid"], cmd.Process.Pid)
	}
	if v, _ := got["version"].(string); v == "" {
		t.Errorf("version %v, want one", got["version"])
	}
	if n, ok := got["node"].(float64); !ok || n != 0 {
		t.Errorf("node %v, want 0 for a standalone relay", got["node"])
	}
	if got["ingress"] != sock {
		t.Errorf("ingress %v, want %s", got["ingress"], sock)
	}
	addr := func(key string) string {
		a, _ := got[key].(string)
		if h, port, err := net.SplitHostPort(a); err != nil || h != "127.0.0.1" || port == "0" {
			t.Fatalf("%s %q: want 127.0.0.1 and the port bound", key, a)
		}
		return a
	}
	nc, err := net.Dial("tcp", addr("listen"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	readID(t, nc, relay.FramingNUL)
	for _, u := range []string{"http://" + addr("http") + "/healthz", "http://" + addr("web") + "/"} {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(u)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v, want 200", u, resp, err)
		}
		resp.Body.Close()
	}
	if got := askPolicy(t, addr("policy")); !strings.Contains(got, "cross-domain-policy") {
		t.Fatalf("policy: %q", got)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("%d files in the ready file's directory, want ready.json and r.sock (no temporary file left)", len(ents))
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("exit %v after SIGTERM, want 0\n%s", err, log.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
	if _, err := os.Stat(ready); !os.IsNotExist(err) {
		t.Errorf("ready file after the exit: %v, want it removed", err)
	}

	// What is off is "".
	p := startRelay(t, nil, "--listen", "127.0.0.1:0", "--web", "", "--http", "", "--ingress", "")
	if r := p.Ready; r.Web != "" || r.HTTP != "" || r.Policy != "" || r.Ingress != "" || r.Listen != p.addr || r.Listen == "" {
		t.Errorf("ready file with only the client listener: %+v", r)
	}
}
