package ingress

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/ingress/client"
	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// TestPresenceThroughTheGoClient lists a topic's subscribers over the Unix
// socket, in pages, with the count on every page, and follows subscribes,
// unsubscribes and disconnects.
func TestPresenceThroughTheGoClient(t *testing.T) {
	e := newEnv(t, relay.Config{Loops: 2}, Config{})
	cl := e.dial()
	x := ctx(t)
	var want []string
	var others []*tcpClient
	for i := 0; i < 7; i++ {
		c := e.connect()
		if i == 6 { // subscribed elsewhere: not listed
			if _, err := cl.Subscribe(x, c.id, "sport"); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if _, err := cl.Subscribe(x, c.id, "news/eu", "sport"); err != nil {
			t.Fatal(err)
		}
		want = append(want, c.id)
		others = append(others, c)
	}
	slices.Sort(want)

	var got []string
	pages := 0
	for cursor := ""; ; pages++ {
		ids, next, count, err := cl.Presence(x, "news/eu", cursor, 4)
		if err != nil {
			t.Fatalf("Presence(%q): %v", cursor, err)
		}
		if count != 6 {
			t.Fatalf("page %d: count %d, want 6", pages, count)
		}
		if len(ids) > 4 {
			t.Fatalf("page %d: %d IDs, limit 4", pages, len(ids))
		}
		got = append(got, ids...)
		if next == "" {
			break
		}
		cursor = next
	}
	if !slices.Equal(got, want) || pages != 1 {
		t.Fatalf("paged subscribers %v in %d pages; want %v in 2", got, pages+1, want)
	}

	// An unsubscribe and a disconnect leave the list.
	if _, err := cl.Unsubscribe(x, others[0].id, "news/eu"); err != nil {
		t.Fatal(err)
	}
	others[1].nc.Close()
	for end := time.Now().Add(5 * time.Second); e.rel.Subscribers("news/eu") != 4; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("subscribers %d after an unsubscribe and a disconnect, want 4", e.rel.Subscribers("news/eu"))
		}
	}
	ids, next, count, err := cl.Presence(x, "news/eu", "", 0)
	if err != nil || count != 4 || len(ids) != 4 || next != "" || slices.Contains(ids, others[0].id) || slices.Contains(ids, others[1].id) {
		t.Fatalf("after leaving: %v %q %d %v; want the 4 others", ids, next, count, err)
	}

	// A topic nobody is in: empty, not an error.
	if ids, next, count, err := cl.Presence(x, "empty", "", 0); err != nil || len(ids) != 0 || next != "" || count != 0 {
		t.Fatalf("empty topic: %v %q %d %v", ids, next, count, err)
	}
	// Bad topic, bad cursor: bad_request.
	if _, _, _, err := cl.Presence(x, "has space", "", 0); client.StatusOf(err) != wire.StatusBadRequest {
		t.Fatalf("bad topic: %v, want bad_request", err)
	}
	if _, _, _, err := cl.Presence(x, "sport", "not-a-cursor", 0); client.StatusOf(err) != wire.StatusBadRequest {
		t.Fatalf("bad cursor: %v, want bad_request", err)
	}
}

func TestHTTPPresence(t *testing.T) {
	srv, a := relayWithHTTP(t, relay.Config{}, HTTPConfig{})
	var want []string
	for i := 0; i < 3; i++ {
		c := dialRelayClient(t, srv)
		b, _ := json.Marshal(map[string]any{"id": c.id, "topics": []string{"news/eu"}})
		a.do("POST", "/v1/subscriptions", b).want(t, 200)
		want = append(want, c.id)
	}
	slices.Sort(want)
	type page struct {
		Topic       string   `json:"topic"`
		Subscribers int      `json:"subscribers"`
		IDs         []string `json:"ids"`
		Next        string   `json:"next"`
	}
	var got []string
	for _, path := range []string{"/v1/topics/news/eu/subscribers?limit=2", "/v1/topics/news%2Feu/subscribers?limit=2&cursor="} {
		var p page
		r := a.do("GET", path, nil).want(t, 200)
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatalf("%s: %v: %s", path, err, r.body)
		}
		if p.Topic != "news/eu" || p.Subscribers != 3 || len(p.IDs) != 2 || p.Next != p.IDs[1] {
			t.Fatalf("%s: %+v", path, p)
		}
		var p2 page
		r = a.do("GET", "/v1/topics/news/eu/subscribers?limit=2&cursor="+p.Next, nil).want(t, 200)
		if err := json.Unmarshal(r.body, &p2); err != nil || p2.Subscribers != 3 || p2.Next != "" {
			t.Fatalf("second page: %+v, %v", p2, err)
		}
		got = append(p.IDs, p2.IDs...)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("subscribers %v, want %v", got, want)
	}
	r := a.do("GET", "/v1/topics/nobody/subscribers", nil).want(t, 200)
	if string(r.body) != `{"topic":"nobody","subscribers":0,"ids":[],"next":""}`+"\n" {
		t.Fatalf("empty topic: %s", r.body)
	}
	a.do("GET", "/v1/topics/a%20b/subscribers", nil).wantError(t, 400, "bad_request", "0x20")
	a.do("GET", "/v1/topics/news/subscribers?limit=0", nil).wantError(t, 400, "bad_request", "limit")
	a.do("GET", "/v1/topics/news/subscribers?cursor=zz", nil).wantError(t, 400, "bad_request", "cursor")
	a.do("POST", "/v1/topics/news/subscribers", nil).wantError(t, 405, "method_not_allowed", "GET")
	a.do("GET", "/v1/topics/news", nil).wantError(t, 404, "not_found", "no route")
}
