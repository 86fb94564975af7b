package bench

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/pushrelay/pushrelay/relay"
)

// childEnv makes the test binary act as `pushrelay bench child`, so the
// tests of RunIdle and RunStorm spawn real child processes without
// building the command first.
const childEnv = "PUSHRELAY_BENCH_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(testChild(os.Args[1:]))
	}
	// Children inherit it; this process has already looked.
	os.Setenv(childEnv, "1")
	os.Exit(m.Run())
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

// testChildCommand starts this test binary as a child.
func testChildCommand(t *testing.T) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	return []string{exe}
}
