package bench

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/pushrelay/pushrelay/internal/proctest"
	"github.com/pushrelay/pushrelay/relay"
)

// relayBin is the pushrelay binary proctest.Main built: the benches
// measure the real binary's serve.
var relayBin string

// childEnv makes the test binary act as `pushrelay bench child`. The
// children are this test binary, built with the race detector when the
// tests are, so their side is race-checked too; the built binary's child
// (without it) outran the load generator's readers in the tiny capacity
// run and failed it now and then.
const childEnv = "PUSHRELAY_BENCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(testChild(os.Args[1:]))
	}
	// Children inherit it; this process has already looked.
	os.Setenv(childEnv, "1")
	proctest.Main(m, &relayBin)
}

// testChild is the child's main: the same flags as `pushrelay bench child`.
func testChild(args []string) int {
	fs := flag.NewFlagSet("child", flag.ContinueOnError)
	server := fs.String("server", ServerRelay, "")
	listen := fs.String("listen", "127.0.0.1:0", "")
	framing := fs.String("framing", "nul", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	f, err := relay.ParseFraming(*framing)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := RunChild(ChildConfig{Server: *server, Listen: *listen, Framing: f}, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// testRelayCommand is the command that serves with the built binary.
func testRelayCommand(t *testing.T) []string {
	t.Helper()
	return []string{relayBin, "serve"}
}

// testChildCommand starts this test binary as a child.
func testChildCommand(t *testing.T) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	return []string{exe}
}
