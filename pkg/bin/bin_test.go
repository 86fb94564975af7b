package bin

import (
	"bytes"
	"testing"
)

func TestReaderFields(t *testing.T) {
	msg := []byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0, 0, 0, 0, 0, 0, 0, 0x08, 2, 'h', 'i', 0, 1, 'x', 'r', 'e', 's', 't'}
	r := New(msg)
	if got := r.U8("a"); got != 0x01 {
		t.Errorf("U8 = %#x, want 0x01", got)
	}
	if got := r.U16("b"); got != 0x0203 {
		t.Errorf("U16 = %#x, want 0x0203", got)
	}
	if got := r.U32("c"); got != 0x04050607 {
		t.Errorf("U32 = %#x, want 0x04050607", got)
	}
	if got := r.U64("d"); got != 8 {
		t.Errorf("U64 = %d, want 8", got)
	}
	if got := r.Str8("e"); string(got) != "hi" || cap(got) != 2 {
		t.Errorf("Str8 = %q (cap %d), want \"hi\" (cap 2)", got, cap(got))
	}
	if got := r.Str16("f"); string(got) != "x" {
		t.Errorf("Str16 = %q, want \"x\"", got)
	}
	if r.Len() != 4 {
		t.Errorf("Len = %d, want 4", r.Len())
	}
	if got := r.Rest(); string(got) != "rest" || r.Len() != 0 || r.Failed() {
		t.Errorf("Rest = %q, then Len %d, failed %v", got, r.Len(), r.Failed())
	}
}

func TestFirstFailureSticks(t *testing.T) {
	r := New([]byte{0, 0, 0})
	if got := r.U32("count"); got != 0 || !r.Failed() {
		t.Fatalf("U32 of 3 bytes = %d, failed %v; want 0, true", got, r.Failed())
	}
	if what, left := r.Failure(); what != "count" || left != 3 {
		t.Errorf("Failure = %q, %d; want \"count\", 3", what, left)
	}
	r.Fail("later")
	if r.U8("next") != 0 || r.Str8("s") != nil || r.Take(0, "t") != nil || r.Rest() != nil {
		t.Error("a failed reader still returned data")
	}
	if what, _ := r.Failure(); what != "count" {
		t.Errorf("Failure = %q after later failures, want the first, \"count\"", what)
	}
	r = New([]byte{5, 'a', 'b'})
	if got := r.Str8("name"); got != nil || !r.Failed() {
		t.Errorf("Str8 of 2 bytes claiming 5 = %q, failed %v", got, r.Failed())
	}
	if what, left := r.Failure(); what != "name" || left != 2 {
		t.Errorf("Failure = %q, %d; want \"name\", 2", what, left)
	}
}

// FuzzReader runs a program of reads over arbitrary bytes: the reader
// never panics, never hands out more bytes than it holds, and after its
// first failure hands out nothing.
func FuzzReader(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6}, []byte{0x01, 0x02, 0x03, 0x04, 0x00, 0x01, 0x02})
	f.Add([]byte{2, 'h', 'i', 0, 1, 'x'}, []byte{5, 6, 7})
	f.Add([]byte{0xff}, []byte{5, 5, 7})
	f.Fuzz(func(t *testing.T, prog, data []byte) {
		orig := append([]byte(nil), data...)
		r := New(data)
		given := 0
		for _, op := range prog {
			before := r.Len()
			wasFailed := r.Failed()
			var out []byte
			switch op % 8 {
			case 0:
				r.U8("u8")
			case 1:
				r.U16("u16")
			case 2:
				r.U32("u32")
			case 3:
				r.U64("u64")
			case 4:
				out = r.Str8("str8")
			case 5:
				out = r.Str16("str16")
			case 6:
				out = r.Take(int(op>>3), "take")
			case 7:
				out = r.Rest()
			}
			given += before - r.Len()
			if wasFailed && (out != nil || r.Len() != 0) {
				t.Fatalf("op %d on a failed reader gave %q, %d bytes left", op%8, out, r.Len())
			}
			if r.Len() > before || given > len(data) {
				t.Fatalf("reader handed out %d bytes of %d", given, len(data))
			}
			if out != nil && !bytes.Contains(orig, out) {
				t.Fatalf("op %d gave %q, not in the message", op%8, out)
			}
		}
		if r.Failed() {
			if _, left := r.Failure(); left > len(data) {
				t.Fatalf("failure with %d bytes left of %d", left, len(data))
			}
		}
	})
}
