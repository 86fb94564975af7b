package cluster

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/pushrelay/pushrelay/relay"
)

var testID = [relay.IDBytes]byte{0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}

// seedEnvelopes returns one valid envelope of every op.
func seedEnvelopes() [][]byte {
	var out [][]byte
	add := func(o op, body func(e *encoder)) {
		var e encoder
		e.begin(o, 7)
		body(e.self())
		out = append(out, append([]byte(nil), e.b...))
	}
	add(opSend, func(e *encoder) { e.id(&testID); e.payload([]byte("hello"), 0) })
	add(opSend, func(e *encoder) { e.id(&testID); e.payload(bytes.Repeat([]byte("abc"), 500), 64) })
	add(opSendMany, func(e *encoder) { e.u16(2); e.id(&testID); e.id(&testID); e.payload([]byte("x"), 0) })
	add(opPublish, func(e *encoder) { e.str8("news"); e.payload([]byte("p"), 0) })
	add(opBroadcast, func(e *encoder) { e.payload([]byte("b"), 0) })
	add(opSubscribe, func(e *encoder) { e.id(&testID); e.u16(2); e.str8("a"); e.str8("b") })
	add(opUnsubscribe, func(e *encoder) { e.id(&testID); e.u16(1); e.str8("a") })
	add(opKick, func(e *encoder) { e.id(&testID) })
	add(opInfo, func(e *encoder) { e.id(&testID) })
	add(opList, func(e *encoder) { e.str8("3.abc"); e.u16(100) })
	add(opPresence, func(e *encoder) { e.str8("news"); e.str8("1:abc"); e.u16(100) })
	add(opPing, func(e *encoder) {})
	add(opSend|replyBit, func(e *encoder) { e.counts(relay.Queued, relay.Counts{Queued: 1, Unsupported: 2, Unreachable: 3}) })
	add(opSubscribe|replyBit, func(e *encoder) { e.u8(errLimit); e.u32(1); e.str8("limit reached") })
	add(opKick|replyBit, func(e *encoder) { e.u8(uint8(relay.UnknownID)) })
	add(opInfo|replyBit, func(e *encoder) {
		e.u8(1)
		e.u64(1e18)
		e.addr(netip.MustParseAddrPort("127.0.0.1:4000"))
	})
	add(opList|replyBit, func(e *encoder) { e.u8(0); e.str8("3.x"); e.u16(1); e.id(&testID) })
	add(opPresence|replyBit, func(e *encoder) { e.u8(0); e.u32(3); e.str8("x"); e.u16(1); e.id(&testID) })
	add(opPing|replyBit, func(e *encoder) { e.str8("inst") })
	add(opHello, func(e *encoder) { e.str8("inst"); e.u32(5); e.u8(0) })
	add(opEvents, func(e *encoder) {
		e.u64(9)
		e.u16(1)
		e.u8(uint8(relay.EventDisconnect))
		e.u8(uint8(relay.ReasonKicked))
		e.u64(123)
		e.id(&testID)
		e.addr(netip.MustParseAddrPort("[::1]:5"))
	})
	return out
}

func (e *encoder) self() *encoder { return e }

func TestEnvelopeRoundTrip(t *testing.T) {
	d := decoder{maxPayload: 1 << 16}
	for _, b := range seedEnvelopes() {
		env, err := d.decode(b)
		if err != nil {
			t.Fatalf("decode %x: %v", b, err)
		}
		if env.from != 7 {
			t.Fatalf("%s: from %d, want 7", env.op, env.from)
		}
		switch env.op {
		case opSend:
			if env.id != testID || !(string(env.payload) == "hello" || bytes.Equal(env.payload, bytes.Repeat([]byte("abc"), 500))) {
				t.Fatalf("send: %x %q", env.id, env.payload)
			}
			if env.flags&flagCompressed != 0 && len(b) > 200 {
				t.Fatalf("compressed send is %d bytes for a 1500-byte repetitive payload", len(b))
			}
		case opSendMany:
			if len(env.ids) != 2 || string(env.payload) != "x" {
				t.Fatalf("send_many: %d ids, %q", len(env.ids), env.payload)
			}
		case opSubscribe:
			if len(env.topics) != 2 || env.topics[1] != "b" {
				t.Fatalf("subscribe: %q", env.topics)
			}
		case opSend | replyBit:
			if env.counts != (relay.Counts{Queued: 1, Unsupported: 2, Unreachable: 3}) {
				t.Fatalf("counts reply: %+v", env.counts)
			}
		case opInfo | replyBit:
			if !env.found || env.info.Remote.String() != "127.0.0.1:4000" {
				t.Fatalf("info reply: %+v", env.info)
			}
		case opEvents:
			if len(env.events) != 1 || env.events[0].Reason != relay.ReasonKicked || env.events[0].Node != 7 || env.events[0].Remote.String() != "[::1]:5" {
				t.Fatalf("events: %+v", env.events)
			}
		}
	}
}

func TestEnvelopeRefusals(t *testing.T) {
	big := bytes.Repeat([]byte("a"), 4096)
	var e encoder
	e.begin(opBroadcast, 1)
	e.payload(big, 1)
	if e.b[1]&flagCompressed == 0 {
		t.Fatal("4 KiB of one byte was not compressed")
	}
	for _, tc := range []struct {
		name string
		b    []byte
		max  int
	}{
		{"short", []byte{1, 0}, 1 << 20},
		{"unknown op", []byte{0x33, 0, 0, 1}, 1 << 20},
		{"unknown flag", []byte{byte(opBroadcast), 0x80, 0, 1}, 1 << 20},
		{"compressed kick", append([]byte{byte(opKick), flagCompressed, 0, 1}, testID[:]...), 1 << 20},
		{"bomb", e.b, 1024}, // decompresses past the message limit
		{"bad block", []byte{byte(opBroadcast), flagCompressed, 0, 1, 0xff, 0xff, 0xff}, 1 << 20},
		{"truncated id", []byte{byte(opKick), 0, 0, 1, 1, 2, 3}, 1 << 20},
		{"trailing", append(append([]byte{byte(opKick), 0, 0, 1}, testID[:]...), 9), 1 << 20},
		{"ids past end", []byte{byte(opSendMany), 0, 0, 1, 0xff, 0xff}, 1 << 20},
		{"bad event kind", []byte{byte(opEvents), 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 0}, 1 << 20},
	} {
		d := decoder{maxPayload: tc.max}
		if _, err := d.decode(tc.b); !errors.Is(err, errBadEnvelope) {
			t.Errorf("%s: %v, want errBadEnvelope", tc.name, err)
		}
	}
}

// FuzzDecodeEnvelope: no input panics the decoder, and a decoded payload
// never exceeds the limit.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, b := range seedEnvelopes() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d := decoder{maxPayload: 4096}
		env, err := d.decode(b)
		if err != nil {
			return
		}
		if len(env.payload) > 4096 && env.flags&flagCompressed != 0 {
			t.Fatalf("decompressed %d bytes past the 4096 limit", len(env.payload))
		}
		if len(env.events) > maxEventBatch {
			t.Fatalf("%d events in one batch", len(env.events))
		}
	})
}
