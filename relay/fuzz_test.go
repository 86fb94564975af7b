package relay

import (
	"bytes"
	"testing"
	"unicode/utf8"
)

// FuzzCheck: Check must refuse exactly the payloads holding a byte the
// framing cannot carry.
func FuzzCheck(f *testing.F) {
	f.Add([]byte("plain"))
	f.Add([]byte("x\ny"))
	f.Add([]byte("x\x00y"))
	f.Fuzz(func(t *testing.T, p []byte) {
		hasNul, hasNL := bytes.IndexByte(p, 0) >= 0, bytes.IndexByte(p, '\n') >= 0
		if got := FramingNUL.Check(p) != nil; got != hasNul {
			t.Fatalf("nul Check(%q) refused=%v, want %v", p, got, hasNul)
		}
		if got := FramingLine.Check(p) != nil; got != (hasNul || hasNL) {
			t.Fatalf("line Check(%q) refused=%v, want %v", p, got, hasNul || hasNL)
		}
		if FramingLen32.Check(p) != nil {
			t.Fatalf("len32 refused %q", p)
		}
		for _, fr := range []Framing{FramingNUL, FramingLine, FramingLen32} {
			if got, want := fr.Carries(p), fr.Check(p) == nil; got != want {
				t.Fatalf("%s Carries(%q) = %v, Check says %v", fr, p, got, want)
			}
		}
		if i := invalidUTF8(p); (i < 0) != utf8.Valid(p) || i >= 0 && !utf8.Valid(p[:i]) {
			t.Fatalf("invalidUTF8(%q) = %d, utf8.Valid %v", p, i, utf8.Valid(p))
		}
	})
}
