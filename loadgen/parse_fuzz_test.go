package loadgen

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/relay"
)

// FuzzIncrementalParse feeds a stream to the pool's incremental parser in
// arbitrary pieces and checks it against relay.FrameReader reading the
// whole stream: same frames, same verdict on bad ones.
func FuzzIncrementalParse(f *testing.F) {
	id := "AAAAAAAAAAAAAAAAAAAAAA"
	for _, fr := range []relay.Framing{relay.FramingNUL, relay.FramingLine, relay.FramingLen32} {
		stream := fr.AppendFrame(nil, []byte(id))
		stream = fr.AppendFrame(stream, []byte("@pr1:1:hello"))
		stream = fr.AppendFrame(stream, nil)
		f.Add(uint8(fr), stream, []byte{1, 5, 30})
	}
	f.Fuzz(func(t *testing.T, which uint8, stream, cuts []byte) {
		framing := relay.Framing(which % 3)
		const limit = 64
		p := &Pool{opts: PoolOptions{Framing: framing, MaxFrame: limit}}
		c := &lconn{state: stWaitID}

		// What the reference reader makes of the whole stream.
		var want [][]byte
		ref := relay.NewFrameReader(bytes.NewReader(stream), framing, limit)
		refBad := false
		for {
			b, err := ref.Next()
			if err != nil {
				refBad = err != nil && !isEOF(err)
				break
			}
			want = append(want, append([]byte(nil), b...))
		}

		// Feed the same bytes in pieces.
		var got [][]byte
		var perr error
		rest := stream
		for i := 0; len(rest) > 0 && perr == nil; i++ {
			n := len(rest)
			if i < len(cuts) {
				n = min(n, int(cuts[i])+1)
			}
			chunk := append([]byte(nil), rest[:n]...) // the pool's read buffer is reused
			rest = rest[n:]
			before := c.msgs
			hadID := c.state == stIdle
			perr = p.parse(c, chunk)
			if !hadID && c.state == stIdle {
				got = append(got, []byte(c.id))
			}
			for k := before; k < c.msgs; k++ {
				got = append(got, nil) // counted, content checked by count below
			}
		}
		if perr != nil {
			if !refBad {
				// The pool may be stricter: the first frame must be an ID.
				if len(want) == 0 || relay.ValidID(string(want[0])) {
					t.Fatalf("pool failed (%v) where the reader did not", perr)
				}
			}
			return
		}
		if refBad {
			// The reader saw a bad frame the pool has not finished yet:
			// the pool must be holding it as a partial frame.
			return
		}
		if len(want) > 0 && !relay.ValidID(string(want[0])) {
			t.Fatalf("pool accepted a first frame %q that is not an ID", want[0])
		}
		if len(got) != len(want) {
			t.Fatalf("pool parsed %d frames, reader %d", len(got), len(want))
		}
		if len(got) > 0 && !bytes.Equal(got[0], want[0]) {
			t.Fatalf("ID %q, want %q", got[0], want[0])
		}
	})
}

func isEOF(err error) bool { return err.Error() == "EOF" }

// FuzzSplitTarget: --target's parser never panics, and what it accepts
// joins back to an address with a port that is not zero.
func FuzzSplitTarget(f *testing.F) {
	for _, s := range []string{"127.0.0.1:8843", "localhost", "localhost:", "[::1]:0", "[::1]:8843", ":8843", "a:b:c", "host:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		host, port, err := splitTarget(target)
		if err != nil {
			return
		}
		if strings.TrimLeft(port, "0") == "" {
			t.Fatalf("splitTarget(%q) accepted port %q", target, port)
		}
		if h, p, err := net.SplitHostPort(net.JoinHostPort(host, port)); err != nil || h != host || p != port {
			t.Fatalf("splitTarget(%q) = %q, %q: does not join back (%q %q %v)", target, host, port, h, p, err)
		}
	})
}
