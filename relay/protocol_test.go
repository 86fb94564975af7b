package relay

import (
	"strings"
	"testing"
)

func TestIDsAreWellFormedAndDistinct(t *testing.T) {
	var src idSource
	seen := map[string]bool{}
	for i := 0; i < 100000; i++ {
		raw := src.next()
		id := idString(&raw)
		if len(id) != IDLen || !ValidID(id) {
			t.Fatalf("ID %q is not %d URL-safe characters", id, IDLen)
		}
		if seen[id] {
			t.Fatalf("ID %q drawn twice", id)
		}
		seen[id] = true
	}
	for _, bad := range []string{"", "short", strings.Repeat("a", 65), "AAAAAAAAAAAAAAAAAAAA+/", "AAAAAAAAAAAAAAAAAAAAA="} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
}

func TestFramePoolReuse(t *testing.T) {
	f := encodeFrame(FramingNUL, []byte("abc"))
	if string(f.Bytes()) != "abc\x00" || cap(f.b) != 64 {
		t.Fatalf("frame %q cap %d, want \"abc\\x00\" in the 64-byte class", f.b, cap(f.b))
	}
	f.retain(2)
	f.release()
	f.release()
	f.release()
	defer func() {
		if recover() == nil {
			t.Fatal("releasing a frame once too often did not panic")
		}
	}()
	f.release()
}
