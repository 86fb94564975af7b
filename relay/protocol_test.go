package relay

import (
	"strings"
	"testing"
)

func TestFramingNamesRoundTrip(t *testing.T) {
	for _, f := range allFramings {
		got, err := ParseFraming(f.String())
		if err != nil || got != f {
			t.Errorf("ParseFraming(%q) = %v, %v", f.String(), got, err)
		}
	}
	if _, err := ParseFraming("xml"); err == nil || !strings.Contains(err.Error(), "nul, line or len32") {
		t.Errorf("ParseFraming(xml) error %v does not list the choices", err)
	}
}

func TestAppendFrameBytes(t *testing.T) {
	cases := []struct {
		f    Framing
		in   string
		want string
	}{
		{FramingNUL, "hi", "hi\x00"},
		{FramingLine, "hi", "hi\n"},
		{FramingLen32, "hi", "\x00\x00\x00\x02hi"},
		{FramingLen32, "", "\x00\x00\x00\x00"},
		{FramingNUL, "", "\x00"},
	}
	for _, tc := range cases {
		if got := string(tc.f.AppendFrame(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("%s.AppendFrame(%q) = %q, want %q", tc.f, tc.in, got, tc.want)
		}
	}
}

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
