package main

import (
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestMessageAfterTheIDIsTheMessage: whatever follows the ID (or topic) is
// the message, even words that look like flags.
func TestMessageAfterTheIDIsTheMessage(t *testing.T) {
	p := startRelay(t, nil, "--listen", "127.0.0.1:0")
	nc, id, fr := p.client(t)
	if code, out, stderr := p.cli(t, "subscribe", id, "weather"); code != 0 {
		t.Fatalf("subscribe: exit %d %s %s", code, out, stderr)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"send", id, "-5 degrees"}, "-5 degrees"},
		{[]string{"send", id, "-5", "degrees"}, "-5 degrees"},
		{[]string{"send", id, "--help"}, "--help"},
		{[]string{"send", id, "--timeout", "1s"}, "--timeout 1s"},
		{[]string{"send", "--", id, "--"}, "--"},
		{[]string{"publish", "weather", "-5 degrees"}, "-5 degrees"},
		{[]string{"publish", "weather", "--ingress", "/nonexistent"}, "--ingress /nonexistent"},
		{[]string{"broadcast", "--", "-v"}, "-v"},
	}
	for _, tc := range cases {
		code, out, stderr := p.cli(t, tc.args...)
		if code != 0 {
			t.Errorf("pushrelay %q: exit %d, stdout %q, stderr %q", tc.args, code, out, stderr)
			continue
		}
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := fr.Next()
		if err != nil || string(got) != tc.want {
			t.Fatalf("pushrelay %q: client got %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
	// send prints its count as publish and broadcast do.
	if code, out, _ := p.cli(t, "send", id, "x"); code != 0 || strings.TrimSpace(out) != "queued for 1 client" {
		t.Errorf("send: exit %d, stdout %q; want \"queued for 1 client\"", code, out)
	}
	// A broadcast whose message starts with '-' needs "--", and the error
	// says so.
	if code, _, stderr := p.cli(t, "broadcast", "-5 degrees"); code != 2 || !strings.Contains(stderr, `goes after --: pushrelay broadcast -- "-5 degrees"`) {
		t.Errorf("broadcast '-5 degrees': exit %d, stderr %q; want 2 and how to send it", code, stderr)
	}
	// --help before the ID still asks for help.
	if code, out, _ := runBinary(t, nil, "send", "--help"); code != 0 || !strings.Contains(out, "Usage: pushrelay send") {
		t.Errorf("send --help: exit %d, %q", code, out)
	}
}

// TestErrorsNameTheFixOnce: a mistyped flag gets the nearest name, and a
// relay's refusal is printed with one prefix.
func TestErrorsNameTheFixOnce(t *testing.T) {
	p := startRelay(t, nil, "--listen", "127.0.0.1:0")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"send", "--ingres", "x", "AAAAAAAAAAAAAAAAAAAAAA", "m"}, "did you mean --ingress?"},
		{[]string{"serve", "--framng", "nul"}, "did you mean --framing?"},
		{[]string{"loadgen", "--con", "5"}, "did you mean --conns?"},
		{[]string{"stats", "--jsn"}, "did you mean --json?"},
	}
	for _, tc := range cases {
		code, _, stderr := runBinary(t, nil, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("pushrelay %q: exit %d, stderr %q; want exit 2 and one line with %q", tc.args, code, stderr, tc.want)
		}
	}
	code, _, stderr := p.cli(t, "send", "AAAA", "x")
	if code != 1 || !strings.HasPrefix(stderr, "pushrelay send: \"AAAA\" is not a client ID") {
		t.Errorf("send to a malformed ID: exit %d, %q; want one \"pushrelay send: \" prefix", code, stderr)
	}
}

// TestEveryEnvironmentVariableHasOneMeaning walks every command's flags
// (each run with --help): one variable must stand for one flag name of
// one type, whichever command reads it.
func TestEveryEnvironmentVariableHasOneMeaning(t *testing.T) {
	var sets []*flagSet
	flagSetMade = func(fs *flagSet) { sets = append(sets, fs) }
	defer func() { flagSetMade = nil }()
	var names [][]string
	for _, c := range commands() {
		names = append(names, []string{c.name})
	}
	for _, b := range benchCommands() {
		names = append(names, []string{"bench", b.name})
	}
	for _, args := range names {
		run(append(args, "--help"), io.Discard, io.Discard)
	}
	type meaning struct {
		cmd, flag string
		typ       reflect.Type
	}
	seen := map[string]meaning{}
	n := 0
	for _, fs := range sets {
		fs.VisitAll(func(f *flag.Flag) {
			n++
			env, m := fs.env(f.Name), meaning{fs.Name(), f.Name, reflect.TypeOf(f.Value)}
			if old, ok := seen[env]; ok && (old.flag != m.flag || old.typ != m.typ) {
				t.Errorf("%s is %s --%s (%v) and %s --%s (%v)", env, old.cmd, old.flag, old.typ, m.cmd, m.flag, m.typ)
			}
			seen[env] = m
		})
	}
	if n < 100 {
		t.Fatalf("walked %d flags in %d flag sets; the walk misses commands", n, len(sets))
	}
	// The variables the issue found with three meanings each.
	for _, c := range []struct{ args []string }{{[]string{"doctor", "--help"}}, {[]string{"loadgen", "--help"}}, {[]string{"stats", "--help"}}, {[]string{"bench", "ingress", "--help"}}} {
		_, out, _ := runBinary(t, nil, c.args...)
		for _, bad := range []string{"env PUSHRELAY_TARGET\n", "env PUSHRELAY_JSON\n", "env PUSHRELAY_CONNS\n"} {
			if strings.Contains(out, bad) {
				t.Errorf("pushrelay %s reads %s", strings.Join(c.args, " "), strings.TrimSpace(bad))
			}
		}
	}
}

// TestVersionAndHelpListEverything: --version and -v work as the version
// command does, help lists every bench mode, and a mistyped command gets
// the nearest one.
func TestVersionAndHelpListEverything(t *testing.T) {
	for _, arg := range []string{"version", "--version", "-v"} {
		if code, out, _ := runBinary(t, nil, arg); code != 0 || !strings.HasPrefix(out, "pushrelay ") {
			t.Errorf("pushrelay %s: exit %d, %q", arg, code, out)
		}
	}
	_, out, _ := runBinary(t, nil, "help")
	for _, b := range benchCommands() {
		if b.name != "child" && !strings.Contains(out, b.name) {
			t.Errorf("pushrelay help does not list bench %s:\n%s", b.name, out)
		}
	}
	if !strings.Contains(out, "connect") {
		t.Errorf("pushrelay help does not list connect")
	}
	if code, _, stderr := runBinary(t, nil, "sned"); code != 2 || !strings.Contains(stderr, "did you mean send?") {
		t.Errorf("pushrelay sned: exit %d, %q", code, stderr)
	}
}
