package stamp

import (
	"testing"
	"time"
)

func TestStampRoundTrip(t *testing.T) {
	now := time.Now()
	b := Append(nil, now)
	ts, ok := Parse(append(b, "rest:of:payload"...))
	if !ok || ts != now.UnixNano() {
		t.Fatalf("Parse = %d, %v", ts, ok)
	}
	for _, bad := range []string{"", "@pr1:", "@pr1:12", "@pr1:x:", "@pr2:1:", "@pr1::"} {
		if _, ok := Parse([]byte(bad)); ok {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("@pr1:1732200000123456789:x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, ok := Parse(b)
		if ok && ts < 0 {
			t.Fatalf("negative stamp %d from %q", ts, b)
		}
	})
}

func TestAppendPadded(t *testing.T) {
	now := time.Unix(0, 1732200000123456789)
	for _, size := range []int{0, 10, 25, 64} {
		got := AppendPadded([]byte("keep"), now, size)
		want := "keep@pr1:1732200000123456789:"
		for len(want)-4 < size {
			want += "x"
		}
		if string(got) != want {
			t.Errorf("AppendPadded(size %d) = %q, want %q", size, got, want)
		}
	}
}
