package relay

import "testing"

func TestNodeIDInClientIDs(t *testing.T) {
	for _, node := range []uint16{1, 2, 255, 256, 0x1234, 0xffff} {
		src := idSource{node: node}
		seen := map[[IDBytes]byte]bool{}
		for i := 0; i < 200; i++ {
			raw := src.next()
			id := FormatID(&raw)
			if len(id) != IDLen || !ValidID(id) {
				t.Fatalf("node %d: ID %q is not valid", node, id)
			}
			got, ok := NodeOf(id)
			if !ok || got != node {
				t.Fatalf("NodeOf(%q) = %d, %v; want %d", id, got, ok, node)
			}
			back, ok := ParseID(id)
			if !ok || back != raw {
				t.Fatalf("ParseID(%q) = %x, %v; want %x", id, back, ok, raw)
			}
			if seen[raw] {
				t.Fatalf("node %d: ID %q drawn twice", node, id)
			}
			seen[raw] = true
		}
	}
}

func TestStandaloneIDsAreAllRandom(t *testing.T) {
	var src idSource
	var first [2]byte
	same := 0
	for i := 0; i < 64; i++ {
		raw := src.next()
		if i == 0 {
			first = [2]byte{raw[0], raw[1]}
		} else if raw[0] == first[0] && raw[1] == first[1] {
			same++
		}
	}
	if same > 4 {
		t.Fatalf("%d of 63 standalone IDs share their first two bytes: not random", same)
	}
}
