package ingress

import (
	"testing"

	"github.com/pushrelay/pushrelay/relay"
)

// TestWatchClosedWhileEventsArrive closes a client while its reader is
// still delivering a watch's replayed events. Close may run on any
// goroutine; the watch's channel must be closed only after the last event
// was sent on it (the race detector, or a "send on closed channel" panic,
// caught the old order).
func TestWatchClosedWhileEventsArrive(t *testing.T) {
	e := newEnv(t, relay.Config{}, Config{})
	for i := 0; i < 100; i++ {
		e.connect().nc.Close() // two events each: connect, disconnect
	}
	for i := 0; i < 30; i++ {
		cl := e.dial()
		w, err := cl.Watch(ctx(t), 1) // replays every event so far
		if err != nil {
			t.Fatal(err)
		}
		<-w.Events()
		cl.Close()
		n := 1
		for range w.Events() { // must end: Close ends the watch
			n++
		}
		if w.Err() == nil {
			t.Fatalf("watch ended after %d events with no error", n)
		}
	}
}
