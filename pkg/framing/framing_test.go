package framing

import (
	"strings"
	"testing"
)

var allFramings = []Framing{NUL, Line, Len32}

func TestFramingNamesRoundTrip(t *testing.T) {
	for _, f := range allFramings {
		got, err := Parse(f.String())
		if err != nil || got != f {
			t.Errorf("Parse(%q) = %v, %v", f.String(), got, err)
		}
	}
	if _, err := Parse("xml"); err == nil || !strings.Contains(err.Error(), "nul, line or len32") {
		t.Errorf("Parse(xml) error %v does not list the choices", err)
	}
}

func TestAppendFrameBytes(t *testing.T) {
	cases := []struct {
		f    Framing
		in   string
		want string
	}{
		{NUL, "hi", "hi\x00"},
		{Line, "hi", "hi\n"},
		{Len32, "hi", "\x00\x00\x00\x02hi"},
		{Len32, "", "\x00\x00\x00\x00"},
		{NUL, "", "\x00"},
	}
	for _, tc := range cases {
		if got := string(tc.f.AppendFrame(nil, []byte(tc.in))); got != tc.want {
			t.Errorf("%s.AppendFrame(%q) = %q, want %q", tc.f, tc.in, got, tc.want)
		}
	}
}
