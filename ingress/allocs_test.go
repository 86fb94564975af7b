//go:build !race

package ingress

import (
	"io"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// TestUnixSendAllocatesNothing guards the claim that a push through the
// Unix socket costs no heap allocation in steady state. Each run writes a
// send request, reads its reply and reads the delivered frame on the
// client: the ingress goroutine, the relay and its loop are all inside the
// measurement (AllocsPerRun counts every goroutine's allocations).
func TestUnixSendAllocatesNothing(t *testing.T) {
	e := newEnv(t, relay.Config{}, Config{})
	a := e.connect()
	a.nc.SetReadDeadline(time.Time{})
	r := e.raw()
	r.nc.SetReadDeadline(time.Time{})
	payload := []byte(`{"event":"price","symbol":"XYZ","value":101.25}`)
	req := frame(wire.OpSend, 0, 1, append(wire.AppendStr8(nil, a.id), payload...))
	reply := make([]byte, wire.HeaderLen+wire.CountsLen)
	roundTrip := func() {
		if _, err := r.nc.Write(req); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(r.br, reply); err != nil {
			t.Fatal(err)
		}
		if got, err := a.fr.Next(); err != nil || len(got) != len(payload) {
			t.Fatalf("delivered %d bytes, %v", len(got), err)
		}
	}
	for i := 0; i < 1000; i++ {
		roundTrip()
	}
	if allocs := testing.AllocsPerRun(5000, roundTrip); allocs > 0.01 {
		t.Fatalf("a push through the Unix socket allocates %.3f objects, want 0", allocs)
	}
	if st := wire.Status(reply[5]); st != wire.StatusOK {
		t.Fatalf("reply status %v", st)
	}
}
