package framing

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzFrameReader feeds arbitrary bytes to the client-side frame reader in
// every framing: it must never panic, never return a payload above its
// limit, and never return a payload holding its own delimiter.
func FuzzFrameReader(f *testing.F) {
	f.Add(uint8(0), []byte("AAAAAAAAAAAAAAAAAAAAAA\x00hello\x00"))
	f.Add(uint8(1), []byte("id\nline one\nunterminated"))
	f.Add(uint8(2), []byte("\x00\x00\x00\x05hello\x00\x00\x00\x00"))
	f.Add(uint8(2), []byte("\xff\xff\xff\xffhuge"))
	f.Add(uint8(2), []byte("\x00\x00"))
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		framing := Framing(which % 3)
		const limit = 64
		fr := NewReader(bytes.NewReader(data), framing, limit)
		consumed := 0
		for i := 0; i < len(data)+1; i++ {
			p, err := fr.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			if len(p) > limit {
				t.Fatalf("payload of %d bytes passed a %d-byte limit", len(p), limit)
			}
			switch framing {
			case NUL:
				if bytes.IndexByte(p, 0) >= 0 {
					t.Fatalf("nul payload %q holds its delimiter", p)
				}
			case Line:
				if bytes.IndexByte(p, '\n') >= 0 {
					t.Fatalf("line payload %q holds its delimiter", p)
				}
			}
			consumed += len(p) + framing.Overhead()
			if consumed > len(data) {
				t.Fatalf("reader returned more bytes (%d) than it was given (%d)", consumed, len(data))
			}
		}
		t.Fatal("reader returned more frames than there are bytes")
	})
}

// FuzzFramingRoundTrip checks that whatever Check accepts, AppendFrame
// encodes so that Reader gives back exactly, in every framing.
func FuzzFramingRoundTrip(f *testing.F) {
	f.Add([]byte("hello"), []byte(""), []byte("<msg a=\"1\"/>"))
	f.Add([]byte("a\nb"), []byte("\x00"), []byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, a, b, c []byte) {
		for _, framing := range allFramings {
			var wire []byte
			var want [][]byte
			for _, p := range [][]byte{a, b, c} {
				if framing.Check(p) != nil {
					continue
				}
				wire = framing.AppendFrame(wire, p)
				want = append(want, p)
			}
			fr := NewReader(bytes.NewReader(wire), framing, 0)
			for i, w := range want {
				got, err := fr.Next()
				if err != nil {
					t.Fatalf("%s: frame %d: %v", framing, i, err)
				}
				if !bytes.Equal(got, w) {
					t.Fatalf("%s: frame %d: got %q, want %q", framing, i, got, w)
				}
			}
			if _, err := fr.Next(); err != io.EOF {
				t.Fatalf("%s: after the frames: %v, want EOF", framing, err)
			}
		}
	})
}
