package relay

import (
	"testing"
	"unsafe"
)

// TestSessionSize guards the per-client memory: a session is one object
// of the 112-byte size class; a field that pushes it to 128 costs 16 bytes
// per idle client (160 MB at ten million).
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > 112 {
		t.Fatalf("session is %d bytes, want at most 112", n)
	}
}
