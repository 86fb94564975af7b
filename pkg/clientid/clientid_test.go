package clientid

import "testing"

func TestParseIDRefusesWhatTheRelayNeverIssues(t *testing.T) {
	for _, id := range []string{"", "short", "q7PmX2cT9bLk4VwZ0sRgYA0", "q7PmX2cT9bLk4VwZ0sRg+A", "q7PmX2cT9bLk4VwZ0sRg=A"} {
		if _, ok := Parse(id); ok {
			t.Errorf("Parse(%q) ok; want refused", id)
		}
		if _, ok := NodeOf(id); ok && len(id) != Len {
			t.Errorf("NodeOf(%q) ok; want refused", id)
		}
	}
	if _, ok := NodeOf("+7PmX2cT9bLk4VwZ0sRgYA"); ok {
		t.Error("NodeOf accepted a '+' in the node part")
	}
	// The last character carries 2 bits of the ID and 4 unused ones: only
	// A, Q, g and w end an ID the relay issued, so each ID has one
	// spelling ("...YB" would name the same bytes as "...YA").
	if _, ok := Parse("q7PmX2cT9bLk4VwZ0sRgYA"); !ok {
		t.Error("Parse refused a canonical ID")
	}
	if _, ok := Parse("q7PmX2cT9bLk4VwZ0sRgYB"); ok {
		t.Error("Parse accepted an ID whose unused bits are set")
	}
}

// FuzzParse: whatever Parse accepts is Valid, formats to text that parses
// back to the same bytes, and
// carries in its first two bytes the node NodeOf reads.
func FuzzParse(f *testing.F) {
	f.Add("AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("EjRq7PmX2cT9bLk4VwZ0sR")
	f.Add("+7PmX2cT9bLk4VwZ0sRgYA")
	f.Add("q7PmX2cT9bLk4VwZ0sRgYA0")
	f.Fuzz(func(t *testing.T, id string) {
		raw, ok := Parse(id)
		node, nodeOK := NodeOf(id)
		if !ok {
			if nodeOK && len(id) != Len {
				t.Fatalf("NodeOf(%q) ok for an ID Parse refuses", id)
			}
			return
		}
		if !Valid(id) {
			t.Fatalf("Parse accepted %q, which Valid refuses", id)
		}
		// Parse refuses set unused bits: each ID has one spelling.
		if Format(&raw) != id {
			t.Fatalf("Format(Parse(%q)) = %q; want the same text", id, Format(&raw))
		}
		if want := uint16(raw[0])<<8 | uint16(raw[1]); !nodeOK || node != want {
			t.Fatalf("NodeOf(%q) = %d, %v; want %d", id, node, nodeOK, want)
		}
		var set [Bytes]byte
		SetNode(&set, node)
		if node != 0 && (set[0] != raw[0] || set[1] != raw[1]) {
			t.Fatalf("SetNode(%d) wrote %x, the ID holds %x", node, set[:2], raw[:2])
		}
	})
}
