package ingress

import (
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/relay"
)

// A data_base64 string with an escape (PHP's json_encode writes "/" as
// "\/") is unescaped into the parser's arena and then decoded there too:
// the arena must hold both. It once overran and panicked the relay.
func TestBatchEscapedBase64(t *testing.T) {
	b64 := `\/` + strings.Repeat("A", 99) // "/AAA...": 100 characters, 75 bytes
	p, err := parseBatch(t, `{"broadcast":true,"data_base64":"`+b64+`"}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(p.ops[0].payload); got != 75 || p.ops[0].payload[0] != 0xfc {
		t.Fatalf("payload of %d bytes starting %#x, want 75 starting 0xfc", got, p.ops[0].payload[0])
	}
	// Every line so: the arena must hold them all.
	line := `{"broadcast":true,"data_base64":"` + strings.Repeat(`\/`, 200) + `"}` + "\n"
	if _, err := parseBatch(t, strings.Repeat(line, 50)); err != nil {
		t.Fatal(err)
	}
}

// A push in a batch to one client that cannot take the payload is counted
// unsupported, as POST /v1/send/{id}'s many-recipient routes count it; it
// does not stop the batch halfway.
func TestBatchCountsUnsupported(t *testing.T) {
	srv, a := relayWithHTTP(t, relay.Config{Web: "127.0.0.1:0"}, HTTPConfig{})
	c := dialRelayClient(t, srv)
	body := `{"broadcast":true,"data":"first"}` + "\n" +
		`{"id":"` + c.id + `","data_base64":"AA=="}` + "\n" +
		`{"broadcast":true,"data":"third"}` + "\n"
	r := a.do("POST", "/v1/batch", []byte(body)).want(t, 200)
	if !strings.Contains(string(r.body), `"totals":{"queued":2,"unknown":0,"dropped":0,"overloaded":0,"unsupported":1}`) {
		t.Fatalf("batch reply %s, want 2 queued and 1 unsupported in the totals", r.body)
	}
}
