package wire_test

import (
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/internal/testutil"
)

// The request examples of docs/protocol.md, built with this package's
// encoders. Each must equal the hex in the table (spaces there only mark
// fields), and the doc must show the same bytes in the block after its
// marker, <!-- dump: NAME -->. The replies beside them in the doc come from
// a real relay: ingress/docs_test.go checks those.
//
// go test ./ingress/wire -run DocRequests -dumps prints the blocks.

var printDumps = flag.Bool("dumps", false, "print the doc's request blocks")

// The IDs the doc uses. Real IDs are random; these have the same shape.
const (
	exampleID = "q7PmX2cT9bLk4VwZ0sRgYA" // a connected client
	unknownID = "Xr4nB8vQ1mTz6KpL3wYdHe" // an ID no client has
)

// request builds one request frame; body appends its fields.
func request(op wire.Op, flags uint8, req uint32, body func([]byte) []byte) []byte {
	b, start := wire.BeginFrame(nil, uint8(op), flags, req)
	b = body(b)
	wire.PatchLen(b, start)
	return b
}

func str8s(b []byte, ss ...string) []byte {
	for _, s := range ss {
		b = wire.AppendStr8(b, s)
	}
	return b
}

func u16(b []byte, n int) []byte    { return binary.BigEndian.AppendUint16(b, uint16(n)) }
func u64(b []byte, n uint64) []byte { return binary.BigEndian.AppendUint64(b, n) }

// The IDs as str8 fields, in hex.
const (
	exID = "16 7137506d58326354 39624c6b3456775a 307352675941"
	unID = "16 5872346e42387651 316d547a364b704c 337759644865"
)

var docRequests = []struct {
	name  string
	frame []byte
	hex   string // length, kind, flags, request ID, then the body's fields
}{
	{"watch.request", request(wire.OpWatch, 0, 1, func(b []byte) []byte { return u64(b, 0) }),
		"0000000e 0b 00 00000001  0000000000000000"},
	{"ping.request", request(wire.OpPing, 0, 1, func(b []byte) []byte { return append(b, "hi"...) }),
		"00000008 0c 00 00000001  6869"},
	{"send.request", request(wire.OpSend, 0, 2, func(b []byte) []byte { return append(str8s(b, exampleID), "hello"...) }),
		"00000022 01 00 00000002  " + exID + "  68656c6c6f"},
	{"send-noreply.request", request(wire.OpSend, wire.FlagNoReply, 3, func(b []byte) []byte { return append(str8s(b, exampleID), "quiet"...) }),
		"00000022 01 01 00000003  " + exID + "  7175696574"},
	{"send_many.request", request(wire.OpSendMany, 0, 4, func(b []byte) []byte {
		return append(str8s(u16(b, 2), exampleID, unknownID), "hello all"...)
	}),
		"0000003f 02 00 00000004  0002  " + exID + "  " + unID + "  68656c6c6f20616c6c"},
	{"subscribe.request", request(wire.OpSubscribe, 0, 5, func(b []byte) []byte {
		return str8s(u16(str8s(b, exampleID), 2), "news", "sport")
	}),
		"0000002a 05 00 00000005  " + exID + "  0002  04 6e657773  05 73706f7274"},
	{"publish.request", request(wire.OpPublish, 0, 6, func(b []byte) []byte { return append(str8s(b, "news"), "headline"...) }),
		"00000013 03 00 00000006  04 6e657773  686561646c696e65"},
	{"unsubscribe.request", request(wire.OpUnsubscribe, 0, 7, func(b []byte) []byte {
		return str8s(u16(str8s(b, exampleID), 1), "sport")
	}),
		"00000025 06 00 00000007  " + exID + "  0001  05 73706f7274"},
	{"broadcast.request", request(wire.OpBroadcast, 0, 8, func(b []byte) []byte { return append(b, "to everyone"...) }),
		"00000011 04 00 00000008  746f2065766572796f6e65"},
	{"info.request", request(wire.OpInfo, 0, 9, func(b []byte) []byte { return str8s(b, exampleID) }),
		"0000001d 08 00 00000009  " + exID},
	{"list.request", request(wire.OpList, 0, 10, func(b []byte) []byte { return u16(str8s(b, ""), 100) }),
		"00000009 09 00 0000000a  00  0064"},
	{"presence.request", request(wire.OpPresence, 0, 20, func(b []byte) []byte { return u16(str8s(str8s(b, "news"), ""), 100) }),
		"0000000e 0d 00 00000014  04 6e657773  00  0064"},
	{"stats.request", request(wire.OpStats, 0, 11, func(b []byte) []byte { return b }),
		"00000006 0a 00 0000000b"},
	{"kick.request", request(wire.OpKick, 0, 12, func(b []byte) []byte { return str8s(b, exampleID) }),
		"0000001d 07 00 0000000c  " + exID},
	{"kick-unknown.request", request(wire.OpKick, 0, 13, func(b []byte) []byte { return str8s(b, exampleID) }),
		"0000001d 07 00 0000000d  " + exID},
	{"unknown-op.request", request(0x3f, 0, 14, func(b []byte) []byte { return b }),
		"00000006 3f 00 0000000e"},
	{"bad-topic.request", request(wire.OpPublish, 0, 15, func(b []byte) []byte { return append(str8s(b, "has space"), "x"...) }),
		"00000011 03 00 0000000f  09 68617320 73706163 65  78"},
	{"noreply-error.request", request(wire.OpSend, wire.FlagNoReply, 17, func(b []byte) []byte { return append(str8s(b, "nope"), "x"...) }),
		"0000000c 01 01 00000011  04 6e6f7065  78"},
	// Only the header of a frame of 1 MiB plus the 4 bytes of its length,
	// over the default limit: the relay refuses it once it has the length.
	{"frame-too-large.request", wire.AppendHeader(nil, uint8(wire.OpBroadcast), 0, 18, 1<<20-6),
		"00100000 04 00 00000012"},
	{"watch-lost.request", request(wire.OpWatch, 0, 1, func(b []byte) []byte { return u64(b, 1) }),
		"0000000e 0b 00 00000001  0000000000000001"},
}

func TestDocRequests(t *testing.T) {
	doc := docDumps(t)
	for _, ex := range docRequests {
		want, err := hex.DecodeString(strings.ReplaceAll(ex.hex, " ", ""))
		if err != nil {
			t.Fatalf("%s: table hex: %v", ex.name, err)
		}
		if got := ex.frame; string(got) != string(want) {
			t.Errorf("%s: encoders give\n%x\nthe table says\n%x", ex.name, got, want)
		}
		if *printDumps {
			fmt.Printf("<!-- dump: %s -->\n\n```\n%s```\n\n", ex.name, hex.Dump(ex.frame))
		}
		shown, ok := doc[ex.name]
		if !ok {
			t.Errorf("%s: docs/protocol.md has no block marked <!-- dump: %s -->", ex.name, ex.name)
			continue
		}
		if string(shown) != string(ex.frame) {
			t.Errorf("%s: docs/protocol.md shows\n%sthe encoders give\n%s", ex.name, hex.Dump(shown), hex.Dump(ex.frame))
		}
	}
}

// TestDocRequestFrames checks each example is one well-formed frame of the
// operation it claims, so the doc never shows a frame a relay would misread.
func TestDocRequestFrames(t *testing.T) {
	for _, ex := range docRequests {
		h, err := wire.ParseHeader(ex.frame, wire.DefaultMaxRequest)
		if ex.name == "frame-too-large.request" {
			if err == nil {
				t.Errorf("%s: the relay would accept it", ex.name)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", ex.name, err)
			continue
		}
		if got, want := h.BodyLen(), len(ex.frame)-wire.HeaderLen; got != want {
			t.Errorf("%s: length field says a body of %d bytes, the frame has %d", ex.name, got, want)
		}
	}
}

// docDumps returns the bytes of every marked hex dump in docs/protocol.md.
func docDumps(t *testing.T) map[string][]byte {
	t.Helper()
	return testutil.DocDumps(t, "../../docs/protocol.md")
}
