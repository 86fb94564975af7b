package ingress

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pushrelay/pushrelay/relay"
)

func TestHTTPBatch(t *testing.T) {
	srv, a := relayWithHTTP(t, relay.Config{}, HTTPConfig{MaxBatch: 5, MaxIDs: 3})
	c1, c2 := dialRelayClient(t, srv), dialRelayClient(t, srv)
	a.do("POST", "/v1/subscriptions", []byte(`{"id":"`+c2.id+`","topics":["news"]}`)).want(t, 200)

	body := `{"id":"` + c1.id + `","data":"one"}` + "\n" +
		`{"ids":["` + c1.id + `","` + c2.id + `","` + httpAbsentID + `"],"data_base64":"dHdv"}` + "\r\n" +
		"\n" + // blank lines are skipped, and still numbered
		` { "topic" : "news", "data" : "thr\"ee\u00e9\n" } ` + "\n" +
		`{"broadcast":true,"data":"four"}` + "\n" +
		`{"id":"` + httpAbsentID + `","data":"nobody"}`
	r := a.do("POST", "/v1/batch", []byte(body)).want(t, 200)
	want := `{"results":[` +
		`{"queued":1,"unknown":0,"dropped":0,"overloaded":0,"unsupported":0},` +
		`{"queued":2,"unknown":1,"dropped":0,"overloaded":0,"unsupported":0},` +
		`{"queued":1,"unknown":0,"dropped":0,"overloaded":0,"unsupported":0},` +
		`{"queued":2,"unknown":0,"dropped":0,"overloaded":0,"unsupported":0},` +
		`{"queued":0,"unknown":1,"dropped":0,"overloaded":0,"unsupported":0}],` +
		`"totals":{"queued":6,"unknown":2,"dropped":0,"overloaded":0,"unsupported":0}}` + "\n"
	if string(r.body) != want {
		t.Fatalf("batch reply\n%s\nwant\n%s", r.body, want)
	}
	c1.expect([]byte("one"))
	c1.expect([]byte("two"))
	c1.expect([]byte("four"))
	c2.expect([]byte("two"))
	c2.expect([]byte("thr\"eeé\n"))
	c2.expect([]byte("four"))

	// A malformed line fails the whole batch, by line number, and nothing
	// of it is pushed.
	good := `{"id":"` + c1.id + `","data":"must not arrive"}` + "\n"
	for _, tc := range []struct {
		line, status, msg string
		code              int
	}{
		{`{"id":"` + c1.id + `"}`, "bad_request", `line 2: neither "data"`, 400},
		{`{"id":"` + c1.id + `","topic":"news","data":"x"}`, "bad_request", "line 2: more than one target", 400},
		{`{"data":"x"}`, "bad_request", "line 2: no target", 400},
		{`{"id":"nope","data":"x"}`, "bad_request", `line 2: "nope" is not a client ID`, 400},
		{`{"topic":"a b","data":"x"}`, "bad_request", "line 2: topic", 400},
		{`{"broadcast":false,"data":"x"}`, "bad_request", `"broadcast" must be true`, 400},
		{`{"id":"` + c1.id + `","data":"x","colour":"red"}`, "bad_request", `line 2: unknown field "colour"`, 400},
		{`{"id":"` + c1.id + `","data":"x","data_base64":"eA"}`, "bad_request", "both", 400},
		{`{"id":"` + c1.id + `","data_base64":"!!"}`, "bad_request", "base64", 400},
		{`{"id":"` + c1.id + `","data":"x"`, "bad_request", "line 2", 400},
		{`{"id":"` + c1.id + `","data":"x"} {}`, "bad_request", "one object a line", 400},
		{`["id"]`, "bad_request", "want one JSON object", 400},
		{`{"id":"` + c1.id + `","data":""}`, "bad_request", "line 2: ", 400},
		{`{"id":"` + c1.id + `","data":"` + strings.Repeat("x", relay.DefaultMaxMessage+1) + `"}`, "too_large", "line 2: ", 413},
		{`{"ids":["a","b","c","d"],"data":"x"}`, "limit", `line 2: "ids": more than 3 IDs`, 422},
	} {
		a.do("POST", "/v1/batch", []byte(good+tc.line+"\n"+good)).wantError(t, tc.code, tc.status, tc.msg)
	}
	a.do("POST", "/v1/batch", []byte(strings.Repeat(good, 6))).wantError(t, 422, "limit", "line 6: more than 5 pushes")
	a.do("POST", "/v1/batch", []byte("\n \n")).wantError(t, 400, "bad_request", "no pushes")
	a.do("GET", "/v1/batch", nil).wantError(t, 405, "method_not_allowed", "POST")
	c1.expectSilence(100 * time.Millisecond)
}

// The body limit is the HTTP body limit.
func TestHTTPBatchBodyLimit(t *testing.T) {
	srv, a := relayWithHTTP(t, relay.Config{}, HTTPConfig{MaxBody: 70000})
	c := dialRelayClient(t, srv)
	line := `{"id":"` + c.id + `","data":"` + strings.Repeat("x", 1000) + `"}` + "\n"
	a.do("POST", "/v1/batch", []byte(strings.Repeat(line, 60))).want(t, 200)
	a.do("POST", "/v1/batch", []byte(strings.Repeat(line, 80))).wantError(t, 413, "too_large", "HTTP body limit")
}

func parseBatch(t testing.TB, body string) (*batchParser, error) {
	p := &batchParser{maxLines: DefaultMaxBatch, maxIDs: 10000}
	return p, p.parse([]byte(body))
}

func TestBatchParserEscapes(t *testing.T) {
	p, err := parseBatch(t, `{"topic":"t","data":"a\\b\/c\b\f\n\r\t\u0041\u00e9\ud83d\ude00\ud800x"}`)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(p.ops[0].payload), "a\\b/c\b\f\n\r\tAé😀\uFFFDx"; got != want {
		t.Fatalf("payload %q, want %q", got, want)
	}
}

// batchFuzzLine is what encoding/json makes of a line the batch parser
// accepts: it must agree.
type batchFuzzLine struct {
	ID         *string  `json:"id"`
	IDs        []string `json:"ids"`
	Topic      *string  `json:"topic"`
	Broadcast  *bool    `json:"broadcast"`
	Data       *string  `json:"data"`
	DataBase64 *string  `json:"data_base64"`
}

// FuzzBatchParse checks the batch parser against encoding/json: a body it
// accepts, every line is one JSON object encoding/json reads to the same
// target and payload; and it never panics.
func FuzzBatchParse(f *testing.F) {
	id := "q7PmX2cT9bLk4VwZ0sRgYA"
	for _, s := range []string{
		`{"id":"` + id + `","data":"hello"}`,
		`{"ids":["` + id + `","` + id + `"],"data_base64":"AAEC"}` + "\n" + `{"topic":"news","data":"x"}`,
		`{"broadcast":true,"data":"\u00e9\n\"q\""}`,
		"\n\r\n" + ` { "topic" : "a/b" , "data_base64" : "aGk=" } `,
		`{"id":"x","data":"\ud83d\ude00"}`,
		`{"id":"x"}`, `{}`, `{"a":1}`, `{"id":"x","data":"y"}{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p := &batchParser{maxLines: 100, maxIDs: 100}
		if p.parse(body) != nil {
			return
		}
		lines := bytes.Split(body, []byte("\n"))
		for _, op := range p.ops {
			line := lines[op.line-1]
			if !utf8.Valid(line) {
				continue // encoding/json would replace the bad bytes
			}
			var v batchFuzzLine
			dec := json.NewDecoder(bytes.NewReader(line))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("line %d %q: the batch parser accepts it, encoding/json says %v", op.line, line, err)
			}
			var name string
			switch op.target {
			case targetID:
				name = *v.ID
			case targetTopic:
				name = *v.Topic
			case targetIDs:
				if got := p.ids[op.ids[0]:op.ids[1]]; fmt.Sprint(got) != fmt.Sprint(v.IDs) {
					t.Fatalf("line %q: ids %q, encoding/json %q", line, got, v.IDs)
				}
			case targetBroadcast:
				if v.Broadcast == nil || !*v.Broadcast {
					t.Fatalf("line %q: broadcast, encoding/json %v", line, v.Broadcast)
				}
			}
			if name != "" && !bytes.Equal(op.name, []byte(name)) && utf8.Valid(op.name) {
				t.Fatalf("line %q: name %q, encoding/json %q", line, op.name, name)
			}
			if v.Data != nil && utf8.Valid(op.payload) && string(op.payload) != *v.Data {
				t.Fatalf("line %q: data %q, encoding/json %q", line, op.payload, *v.Data)
			}
			if v.DataBase64 != nil {
				want, err := decodeBase64(*v.DataBase64)
				if err != nil || !bytes.Equal(want, op.payload) {
					t.Fatalf("line %q: data_base64 %q, the standard decoder %q, %v", line, op.payload, want, err)
				}
			}
		}
	})
}

// BenchmarkBatchParse parses a body of 1,000 pushes to one ID each.
func BenchmarkBatchParse(b *testing.B) {
	var body []byte
	for i := 0; i < 1000; i++ {
		body = fmt.Appendf(body, `{"id":"q7PmX2cT9bLk4VwZ0sRgYA","data":"message number %d, plain text"}`+"\n", i)
	}
	p := &batchParser{maxLines: DefaultMaxBatch, maxIDs: 10000}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if err := p.parse(body); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*1000), "ns/line")
}
