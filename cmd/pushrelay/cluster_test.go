package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestServeClusterFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nats", "nats://127.0.0.1:1"}, "--nats needs --node"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--node", "70000"}, "--nats needs --node"},
		{[]string{"--node", "3"}, "--node needs --nats"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--node", "1", "--cluster-timeout", "0s"}, "--cluster-timeout"},
		{[]string{"--nats", "nats://127.0.0.1:1", "--node", "1", "--cluster-prefix", "a b"}, "subject prefix"},
		{[]string{"--reuse-port", "--listen", "127.0.0.1:0"}, "port 0 cannot be shared"},
	} {
		var out, errb bytes.Buffer
		code := run(append([]string{"serve", "--ingress", "", "--http", ""}, tc.args...), &out, &errb)
		if code == 0 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("serve %v: exit %d, stderr %q; want a failure naming %q", tc.args, code, errb.String(), tc.want)
		}
	}
}
