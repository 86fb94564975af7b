package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

const unitFile = "../../kernel-tuning/pushrelay.service"

// unitSettings reads the [Service] settings of a unit file, key to values.
func unitSettings(t *testing.T, path string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			m[k] = append(m[k], v)
		}
	}
	return m
}

// worldReadableBinary copies the test binary where an unprivileged user
// can run it (the test's own temporary directories are 0700).
func worldReadableBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pushrelay-unit-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "pushrelay")
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

// TestSystemdUnitStartsAsItsUser runs the unit's ExecStart as systemd
// would: as an unprivileged user (nobody, when the test runs as root), in
// the unit's working directory (/ if it names none), with its
// RuntimeDirectory freshly made and owned by that user, and only
// /etc/default/pushrelay's kind of variables added (ports free for a
// test). The relay must start, serve a client, and take a push through the
// ingress socket in the runtime directory.
func TestSystemdUnitStartsAsItsUser(t *testing.T) {
	u := unitSettings(t, unitFile)
	if len(u["ExecStart"]) != 1 || len(u["RuntimeDirectory"]) != 1 {
		t.Fatalf("want one ExecStart and one RuntimeDirectory, got %q and %q", u["ExecStart"], u["RuntimeDirectory"])
	}
	runDir := "/run/" + u["RuntimeDirectory"][0]
	fresh, err := os.MkdirTemp("", "pushrelay-unit-run-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(fresh) })
	mode := uint64(0o755)
	if m := u["RuntimeDirectoryMode"]; len(m) == 1 {
		mode, _ = strconv.ParseUint(m[0], 8, 32)
	}
	os.Chmod(fresh, os.FileMode(mode))
	subst := func(s string) string {
		if s == runDir || strings.HasPrefix(s, runDir+"/") {
			return fresh + strings.TrimPrefix(s, runDir)
		}
		return s
	}
	argv := strings.Fields(u["ExecStart"][0])
	argv[0] = worldReadableBinary(t)
	for i := range argv[1:] {
		argv[i+1] = subst(argv[i+1])
	}
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Skip("running as root without setpriv (util-linux) to drop to an unprivileged user")
		}
		// systemd creates the runtime directory owned by User=.
		os.Chown(fresh, 65534, 65534)
		cmd = exec.Command(setpriv, append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", "--"}, argv...)...)
	} else {
		cmd = exec.Command(argv[0], argv[1:]...)
	}
	cmd.Dir = "/"
	if wd := u["WorkingDirectory"]; len(wd) == 1 {
		cmd.Dir = subst(wd[0])
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PUSHRELAY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "PUSHRELAY_LISTEN=127.0.0.1:0", "PUSHRELAY_HTTP=127.0.0.1:0", "PUSHRELAY_WEB=127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	lines := scanLines(stderr, 100, func() { exited <- cmd.Wait() })
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	}()
	addrRE := regexp.MustCompile(`msg="relay listening" addr=(\S+)`)
	sockRE := regexp.MustCompile(`msg="ingress listening" socket=(\S+)`)
	var addr, sock string
	var log strings.Builder
	timeout := time.After(10 * time.Second)
	for addr == "" || sock == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the unit's ExecStart %q exited in %s:\n%s", u["ExecStart"][0], cmd.Dir, log.String())
			}
			log.WriteString(l + "\n")
			if m := addrRE.FindStringSubmatch(l); m != nil {
				addr = m[1]
			}
			if m := sockRE.FindStringSubmatch(l); m != nil {
				sock = m[1]
			}
		case <-timeout:
			t.Fatalf("the unit's ExecStart did not start serving:\n%s", log.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	if filepath.Dir(sock) != fresh {
		t.Errorf("ingress socket %s, want it in the runtime directory %s", sock, runDir)
	}
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	id, fr := readID(t, nc, relay.FramingNUL)
	if code, _, stderr := runBinary(t, nil, "send", "--ingress", sock, id, "hello from the web app"); code != 0 {
		t.Fatalf("send through %s: exit %d %s", sock, code, stderr)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := fr.Next(); err != nil || string(got) != "hello from the web app" {
		t.Fatalf("client got %q, %v", got, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("stop: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the relay did not stop on SIGTERM")
	}
}

// TestSystemdUnitVerifies runs systemd-analyze verify on the unit, with
// ExecStart pointing at the built binary, where systemd-analyze exists.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "pushrelay.service")
	os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/pushrelay", binary)), 0o644)
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestFileReserveIsOneNumber: the systemd files state the descriptors the
// relay keeps back, which relay.FileReserve defines.
func TestFileReserveIsOneNumber(t *testing.T) {
	re := regexp.MustCompile(`(?:reserve of|plus) (\d+)`)
	for _, f := range []string{unitFile, "../../kernel-tuning/pushrelay-limits.conf"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ms := re.FindAllStringSubmatch(string(b), -1)
		if len(ms) == 0 {
			t.Errorf("%s does not state the reserve", f)
		}
		for _, m := range ms {
			if m[1] != strconv.Itoa(relay.FileReserve) {
				t.Errorf("%s says %q; relay.FileReserve is %d", f, m[0], relay.FileReserve)
			}
		}
	}
}
