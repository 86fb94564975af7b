package loadgen

import (
	"os/exec"
	"strings"
	"testing"
)

// TestWireBasicsLinkNoServer: the load generator, the Go client and the
// pkg/ wire basics build without the relay's packages and dependencies, so
// a client of pushrelay does not link gnet, zap, fasthttp or NATS.
func TestWireBasicsLinkNoServer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	server := []string{"github.com/panjf2000/gnet", "go.uber.org/zap", "github.com/valyala/fasthttp", "github.com/nats-io/", "github.com/pushrelay/pushrelay/relay", "github.com/pushrelay/pushrelay/cluster"}
	for _, pkg := range []string{"github.com/pushrelay/pushrelay/loadgen", "github.com/pushrelay/pushrelay/ingress/client", "github.com/pushrelay/pushrelay/pkg/..."} {
		out, err := exec.Command(goTool, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, s := range server {
				if strings.HasPrefix(dep, s) {
					t.Errorf("%s links %s", pkg, dep)
				}
			}
		}
	}
}
