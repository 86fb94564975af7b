package ingress

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/internal/testutil"
	"github.com/pushrelay/pushrelay/relay"
)

// TestProtocolDocExamples plays the examples of docs/protocol.md against a
// real relay: it sends each request the doc shows (with the doc's example
// ID replaced by a real client's) and checks that the real reply, once its
// run-specific fields are set to the doc's example values, is byte for byte
// the reply the doc shows. ingress/wire/dump_test.go checks the requests
// against the encoders.
//
// go test ./ingress -run ProtocolDocExamples -dumps prints the reply blocks.

var printDocDumps = flag.Bool("dumps", false, "print the reply blocks of docs/protocol.md as a real relay gives them")

// The doc's example values for what differs from run to run.
const (
	docID       = "q7PmX2cT9bLk4VwZ0sRgYA"
	docInstance = "Zk3x9QmPa0A"
	docRemote   = "127.0.0.1:50312"
	docTime     = int64(1767225600_000000000) // 2026-01-01 00:00:00 UTC
	docLater    = docTime + 1_500_000_000     // a second and a half on
)

// docExamples holds the doc's hex dumps and checks real frames against them.
type docExamples struct {
	t      *testing.T
	dumps  map[string][]byte
	realID string
}

func loadDocExamples(t *testing.T) *docExamples {
	t.Helper()
	return &docExamples{t: t, dumps: testutil.DocDumps(t, "../docs/protocol.md")}
}

// block returns the doc's dump called name.
func (d *docExamples) block(name string) []byte {
	d.t.Helper()
	b, ok := d.dumps[name]
	if !ok && !*printDocDumps {
		d.t.Fatalf("docs/protocol.md has no block marked <!-- dump: %s -->", name)
	}
	return b
}

// request returns the doc's request called name, addressed to the real client.
func (d *docExamples) request(name string) []byte {
	d.t.Helper()
	return bytes.ReplaceAll(d.block(name), []byte(docID), []byte(d.realID))
}

// requests returns the requests NAME.request of names, one after the
// other, as one pipelined write.
func (d *docExamples) requests(names ...string) []byte {
	d.t.Helper()
	var b []byte
	for _, name := range names {
		b = append(b, d.request(name+".request")...)
	}
	return b
}

// normalizer checks a real reply body's layout and returns it with the
// run-specific fields set to the doc's values.
type normalizer func(r *wire.Reader) []byte

// check reads the next frame from c and compares it, normalized, with the
// doc's block called name.
func (d *docExamples) check(c *rawConn, name string, norm normalizer) wire.Header {
	d.t.Helper()
	h, body, err := c.read()
	if err != nil {
		d.t.Fatalf("%s: reading the relay's frame: %v", name, err)
	}
	if d.realID != "" {
		body = bytes.ReplaceAll(body, []byte(d.realID), []byte(docID))
	}
	r := wire.NewReader(body)
	nb := norm(&r)
	r.End()
	if r.Err() != nil {
		d.t.Fatalf("%s: the relay's frame (kind %#x, flags %d) does not have the documented layout: %v\n%s", name, h.Kind, h.Flags, r.Err(), hex.Dump(body))
	}
	got := append(wire.AppendHeader(nil, h.Kind, h.Flags, h.Request, len(nb)), nb...)
	d.compare(name, got)
	return h
}

func (d *docExamples) compare(name string, got []byte) {
	d.t.Helper()
	if *printDocDumps {
		fmt.Printf("<!-- dump: %s -->\n\n```\n%s```\n\n", name, hex.Dump(got))
		return
	}
	if want := d.block(name); !bytes.Equal(got, want) {
		d.t.Errorf("%s: the relay sent (normalized)\n%sdocs/protocol.md shows\n%s", name, hex.Dump(got), hex.Dump(want))
	}
}

// Normalizers, one per reply layout.

func normAsIs(r *wire.Reader) []byte { return r.Rest() }

func normCounts(r *wire.Reader) []byte { return wire.AppendCounts(nil, r.Counts()) }

func normU32(r *wire.Reader) []byte { return binary.BigEndian.AppendUint32(nil, r.U32("count")) }

func normError(r *wire.Reader) []byte { return wire.AppendStr16(nil, string(r.Str16("message"))) }

func normInfo(r *wire.Reader) []byte {
	b := []byte{r.U8("connected")}
	r.U64("since")
	r.Str8("remote")
	b = binary.BigEndian.AppendUint64(b, uint64(docTime))
	return wire.AppendStr8(b, docRemote)
}

func normList(r *wire.Reader) []byte {
	b := wire.AppendStr8(nil, r.Str8("next cursor"))
	n := r.U16("count")
	b = binary.BigEndian.AppendUint16(b, n)
	for i := 0; i < int(n); i++ {
		b = wire.AppendStr8(b, r.Str8("id"))
	}
	return b
}

func normPresence(r *wire.Reader) []byte {
	b := binary.BigEndian.AppendUint32(nil, r.U32("subscribers"))
	return append(b, normList(r)...)
}

func normWatch(r *wire.Reader) []byte {
	r.Str8("instance")
	return binary.BigEndian.AppendUint64(wire.AppendStr8(nil, docInstance), r.U64("last"))
}

// normEvent normalizes a connect or disconnect event, setting its time to at.
func normEvent(at int64, disconnect bool) normalizer {
	return func(r *wire.Reader) []byte {
		b := binary.BigEndian.AppendUint64(nil, r.U64("seq"))
		r.U64("time")
		b = binary.BigEndian.AppendUint64(b, uint64(at))
		b = wire.AppendStr8(b, r.Str8("id"))
		r.Str8("remote")
		b = wire.AppendStr8(b, docRemote)
		if disconnect {
			b = wire.AppendStr8(b, r.Str8("reason"))
		}
		return b
	}
}

func normLost(r *wire.Reader) []byte {
	b := binary.BigEndian.AppendUint64(nil, r.U64("next seq"))
	return binary.BigEndian.AppendUint64(b, r.U64("lost"))
}

func TestProtocolDocExamples(t *testing.T) {
	d := loadDocExamples(t)
	e := newEnv(t, relay.Config{}, Config{})

	// A watch on its own connection, before any client connects.
	w := e.raw()
	w.write(d.request("watch.request"))
	d.check(w, "watch.reply", normWatch)

	a := e.connect()
	d.realID = a.id
	if h := d.check(w, "watch.event-connect", normEvent(docTime, false)); h.Kind != wire.KindEvent || wire.EventKind(h.Flags) != wire.EventConnect {
		t.Fatalf("first event: %+v", h)
	}

	// Every operation, pipelined: one write, then the replies in order.
	r := e.raw()
	r.write(d.requests("ping", "send", "send-noreply", "send_many", "subscribe", "publish", "presence", "unsubscribe", "broadcast", "info", "list", "stats", "kick"))
	d.check(r, "ping.reply", normAsIs)
	d.check(r, "send.reply", normCounts)
	// send-noreply: no reply; the next reply is send_many's.
	d.check(r, "send_many.reply", normCounts)
	d.check(r, "subscribe.reply", normU32)
	d.check(r, "publish.reply", normCounts)
	d.check(r, "presence.reply", normPresence)
	d.check(r, "unsubscribe.reply", normU32)
	d.check(r, "broadcast.reply", normCounts)
	d.check(r, "info.reply", normInfo)
	d.check(r, "list.reply", normList)
	d.checkStats(r)
	d.check(r, "kick.reply", normAsIs)

	for _, want := range []string{"hello", "quiet", "hello all", "headline", "to everyone"} {
		if got := a.next(t); string(got) != want {
			t.Fatalf("the client got %q, want %q", got, want)
		}
	}
	a.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := a.fr.Next(); err != io.EOF {
		t.Fatalf("kicked client read %v, want EOF", err)
	}
	d.check(w, "watch.event-disconnect", normEvent(docLater, true))

	// Errors: each answered, and the connection goes on.
	batch := d.requests("kick-unknown", "unknown-op", "bad-topic")
	batch = append(batch, frame(wire.OpSend, 0, 16, append(wire.AppendStr8(nil, a.id), make([]byte, relay.DefaultMaxMessage+1)...))...)
	batch = append(batch, d.request("noreply-error.request")...)
	r.write(batch)
	d.check(r, "kick-unknown.reply", normError)
	d.check(r, "unknown-op.reply", normError)
	d.check(r, "bad-topic.reply", normError)
	d.check(r, "too-large.reply", normError)
	d.check(r, "noreply-error.reply", normError)

	// A frame over the limit: an error for request 0, then the end.
	r.write(d.request("frame-too-large.request"))
	d.check(r, "frame-too-large.reply", normError)
	if _, _, err := r.read(); err != io.EOF {
		t.Fatalf("after a frame over the limit: %v, want EOF", err)
	}
}

// checkStats checks the stats reply's layout and compares its start (the
// header, the count and the first entry) with the doc's excerpt; the frame
// length and the count vary with the relay's version, so they are taken
// from the doc.
func (d *docExamples) checkStats(r *rawConn) {
	d.t.Helper()
	h, body, err := r.read()
	if err != nil {
		d.t.Fatalf("stats: %v", err)
	}
	rd := wire.NewReader(body)
	n := int(rd.U16("count"))
	for i := 0; i < n; i++ {
		rd.Str8("name")
		rd.Str8("labels")
		rd.U64("value")
	}
	rd.End()
	if rd.Err() != nil || h.Flags != uint8(wire.StatusOK) {
		d.t.Fatalf("stats reply (flags %d) does not have the documented layout: %v", h.Flags, rd.Err())
	}
	got := append(wire.AppendHeader(nil, h.Kind, h.Flags, h.Request, len(body)), body...)
	if *printDocDumps {
		d.compare("stats.reply-start", got[:wire.HeaderLen+2+1+len("pushrelay_connections_open")+1+8])
		fmt.Printf("(stats: %d bytes, %d entries)\n", len(got), n)
		return
	}
	want := d.block("stats.reply-start")
	if len(want) < wire.HeaderLen+2 || len(got) < len(want) {
		d.t.Fatalf("stats: the doc's excerpt is %d bytes, the reply %d", len(want), len(got))
	}
	copy(got[0:4], want[0:4])
	copy(got[wire.HeaderLen:wire.HeaderLen+2], want[wire.HeaderLen:wire.HeaderLen+2])
	d.compare("stats.reply-start", got[:len(want)])
}

func TestProtocolDocLostEvents(t *testing.T) {
	d := loadDocExamples(t)
	// An event log of two: after two clients come and go (four events),
	// the first two are gone.
	e := newEnv(t, relay.Config{EventLog: 2}, Config{})
	for i := 0; i < 2; i++ {
		e.connect().nc.Close()
		// Wait for the disconnect before the next connect: the two may
		// land on different event loops, and the doc's sequence numbers
		// assume connect, disconnect, connect, disconnect.
		deadline := time.Now().Add(5 * time.Second)
		for e.rel.LastEventSeq() < uint64(2*(i+1)) {
			if time.Now().After(deadline) {
				t.Fatalf("last event %d, want %d", e.rel.LastEventSeq(), 2*(i+1))
			}
			time.Sleep(time.Millisecond)
		}
	}
	w := e.raw()
	w.write(d.request("watch-lost.request"))
	d.check(w, "watch-lost.reply", normWatch)
	if h := d.check(w, "watch-lost.event-lost", normLost); wire.EventKind(h.Flags) != wire.EventLost {
		t.Fatalf("first event: %+v", h)
	}
	h, body, err := w.read()
	if rd := wire.NewReader(body); err != nil || wire.EventKind(h.Flags) != wire.EventConnect || rd.U64("seq") != 3 {
		t.Fatalf("after the gap: %+v %v, want the connect event of seq 3", h, err)
	}
}
