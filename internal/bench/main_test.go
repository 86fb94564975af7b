package bench

import (
	"testing"

	"github.com/pushrelay/pushrelay/internal/proctest"
)

// relayBin is the pushrelay binary proctest.Main built: the benches
// measure the real binary, its serve and its bench child.
var relayBin string

func TestMain(m *testing.M) { proctest.Main(m, &relayBin) }

// testRelayCommand is the command that serves with the built binary.
func testRelayCommand(t *testing.T) []string {
	t.Helper()
	return []string{relayBin, "serve"}
}

// testChildCommand is the command that starts a child: the built binary's
// `bench child`, as DefaultChildCommand is in production.
func testChildCommand(t *testing.T) []string {
	t.Helper()
	return []string{relayBin, "bench", "child"}
}
