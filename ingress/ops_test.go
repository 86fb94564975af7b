package ingress

import (
	"encoding/binary"
	"encoding/json"
	"testing"

	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// TestBothFrontEndsWordFailuresAlike sends the same faulty request to one
// relay through the Unix socket and through the HTTP API: both must answer
// with the same status word and the same sentence.
func TestBothFrontEndsWordFailuresAlike(t *testing.T) {
	e := newEnv(t, relay.Config{}, Config{MaxIDs: 2, MaxTopics: 2})
	h := httpStart(t, e.rel, e.rel.Config().MaxMessage, HTTPConfig{MaxIDs: 2, MaxTopics: 2})
	a := newHTTPAPI(t, "http://"+h.Addr(), nil, "")
	r := e.raw()

	const unknown = "AAAAAAAAAAAAAAAAAAAAAA" // shaped like an ID, nobody's
	str8 := func(b []byte, ss ...string) []byte {
		for _, s := range ss {
			b = wire.AppendStr8(b, s)
		}
		return b
	}
	u16 := func(n int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(n)) }
	for i, c := range []struct {
		name         string
		op           wire.Op
		body         []byte
		method, path string
		httpBody     string
	}{
		{"send to a malformed ID", wire.OpSend, append(str8(nil, "not-an-id"), 'x'),
			"POST", "/v1/send/not-an-id", "x"},
		{"send_many over the ID limit", wire.OpSendMany, append(str8(u16(3), unknown, unknown, unknown), 'x'),
			"POST", "/v1/send", `{"ids":["` + unknown + `","` + unknown + `","` + unknown + `"],"data":"x"}`},
		{"send_many with a malformed ID", wire.OpSendMany, append(str8(u16(2), unknown, "bad id"), 'x'),
			"POST", "/v1/send", `{"ids":["` + unknown + `","bad id"],"data":"x"}`},
		{"publish to a malformed topic", wire.OpPublish, append(str8(nil, "has space"), 'x'),
			"POST", "/v1/publish/has%20space", "x"},
		{"subscribe over the topic limit", wire.OpSubscribe, str8(append(str8(nil, unknown), u16(3)...), "a", "b", "c"),
			"POST", "/v1/subscriptions", `{"id":"` + unknown + `","topics":["a","b","c"]}`},
		{"subscribe a client nobody holds", wire.OpSubscribe, str8(append(str8(nil, unknown), u16(1)...), "a"),
			"POST", "/v1/subscriptions", `{"id":"` + unknown + `","topics":["a"]}`},
		{"kick a client nobody holds", wire.OpKick, str8(nil, unknown),
			"DELETE", "/v1/clients/" + unknown, ""},
		{"info of a malformed ID", wire.OpInfo, str8(nil, "not-an-id"),
			"GET", "/v1/clients/not-an-id", ""},
		{"presence of a malformed topic", wire.OpPresence, append(str8(nil, "has space", ""), 0, 0),
			"GET", "/v1/topics/has%20space/subscribers", ""},
	} {
		r.write(frame(c.op, 0, uint32(i+1), c.body))
		hd, body, err := r.read()
		if err != nil || hd.Request != uint32(i+1) || len(body) < 2 {
			t.Fatalf("%s: Unix reply %+v %q %v", c.name, hd, body, err)
		}
		unixStatus, unixMsg := wire.Status(hd.Flags).String(), string(body[2:])

		var hb []byte
		if c.httpBody != "" {
			hb = []byte(c.httpBody)
		}
		res := a.do(c.method, c.path, hb)
		var got struct{ Error, Status string }
		if err := json.Unmarshal(res.body, &got); err != nil {
			t.Fatalf("%s: HTTP reply %d %q: %v", c.name, res.code, res.body, err)
		}
		if unixStatus == "ok" || got.Status != unixStatus || got.Error != unixMsg {
			t.Errorf("%s:\n Unix: %s %q\n HTTP: %s %q\nwant one status and one sentence", c.name, unixStatus, unixMsg, got.Status, got.Error)
		}
	}
}
