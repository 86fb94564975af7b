package doctor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// applyScript runs kernel-tuning/apply-sysctl.sh on a copy of a snapshot's
// /proc/sys (PUSHRELAY_SYSCTL_ROOT), never on the kernel's.
func applyScript(t *testing.T, sysctlRoot string, env []string, args ...string) (string, error) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	script, err := filepath.Abs(filepath.Join("..", "apply-sysctl.sh"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bash, append([]string{script}, args...)...)
	cmd.Env = append(append(os.Environ(), "PUSHRELAY_SYSCTL_ROOT="+sysctlRoot), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// copySysctls copies a snapshot's proc/sys into a temporary directory.
func copySysctls(t *testing.T, snap string) string {
	t.Helper()
	src := filepath.Join("testdata", snap, "proc", "sys")
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// lineFor returns the output line about key.
func lineFor(out, key string) string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == key {
			return l
		}
	}
	return ""
}

func TestApplySysctlDryRun(t *testing.T) {
	root := copySysctls(t, "default")
	before, _ := os.ReadFile(filepath.Join(root, "fs", "file-max"))
	out, err := applyScript(t, root, nil, "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	for _, tt := range []struct {
		key  string
		want []string // substrings of the key's line
	}{
		{"fs.file-max", []string{"2466177", "-> 4194304", "*"}},
		{"net.ipv4.tcp_mem", []string{"287901 383868 575802", "-> 983040 1310720 1966080", "*"}},
		{"net.ipv4.ip_local_port_range", []string{"32768 60999", "-> 10000 65535"}},
		{"net.ipv4.tcp_syncookies", []string{"(unchanged)"}},
		// Raise only: the running value is higher and is kept.
		{"fs.epoll.max_user_watches", []string{"5491511", "kept"}},
	} {
		line := lineFor(out, tt.key)
		for _, w := range tt.want {
			if !strings.Contains(line, w) {
				t.Errorf("%s: got line %q, want %q in it", tt.key, line, w)
			}
		}
	}
	if !strings.Contains(out, "dry run: 14 to change (*), 4 unchanged, 1 kept higher, 0 skipped; nothing written") {
		t.Errorf("dry-run summary missing or wrong:\n%s", out)
	}
	after, _ := os.ReadFile(filepath.Join(root, "fs", "file-max"))
	if string(after) != string(before) {
		t.Errorf("dry run wrote fs.file-max: %q -> %q", before, after)
	}
}

func TestApplySysctlSkipsAbsentKeys(t *testing.T) {
	root := copySysctls(t, "default")
	if err := os.RemoveAll(filepath.Join(root, "net", "netfilter")); err != nil {
		t.Fatal(err)
	}
	out, err := applyScript(t, root, nil, "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	if line := lineFor(out, "net.netfilter.nf_conntrack_max"); !strings.Contains(line, "skipped") {
		t.Errorf("conntrack not loaded: got %q, want it skipped", line)
	}
}

func TestApplySysctlWrites(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the script writes only as root")
	}
	root := copySysctls(t, "default")
	out, err := applyScript(t, root, nil)
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if !strings.Contains(out, "14 written, 4 unchanged, 1 kept higher, 0 skipped, 0 failed") {
		t.Errorf("apply summary missing or wrong:\n%s", out)
	}
	got, _ := os.ReadFile(filepath.Join(root, "net", "ipv4", "tcp_mem"))
	if strings.Join(strings.Fields(string(got)), " ") != "983040 1310720 1966080" {
		t.Errorf("tcp_mem after apply: got %q", got)
	}
	// Applied once, there is nothing left to change.
	out, err = applyScript(t, root, nil, "--dry-run")
	if err != nil || !strings.Contains(out, "dry run: 0 to change") {
		t.Errorf("dry run after apply: %v\n%s", err, out)
	}
}

func TestApplySysctlRefusesNonRoot(t *testing.T) {
	// A stand-in `id` that answers as an ordinary user.
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "id"), []byte("#!/bin/sh\necho 1000\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	root := copySysctls(t, "default")
	out, err := applyScript(t, root, []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")})
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(out, "needs root") {
		t.Errorf("as a non-root user: got %v\n%s\nwant exit status 2 and a refusal", err, out)
	}
	b, _ := os.ReadFile(filepath.Join(root, "fs", "file-max"))
	if strings.TrimSpace(string(b)) != "2466177" {
		t.Errorf("refused, yet fs.file-max became %q", b)
	}
	// A dry run needs no privilege.
	if out, err := applyScript(t, root, []string{"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH")}, "--dry-run"); err != nil {
		t.Errorf("dry run as a non-root user: %v\n%s", err, out)
	}
}

func TestApplySysctlUsage(t *testing.T) {
	for _, args := range [][]string{{"--bogus"}, {"a.conf", "b.conf"}, {"/nonexistent.conf"}} {
		out, err := applyScript(t, t.TempDir(), nil, args...)
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("%v: got %v, want exit status 2\n%s", args, err, out)
		}
	}
}
