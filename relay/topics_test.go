package relay

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestPublishReachesExactlyTheSubscribersInOrder(t *testing.T) {
	srv := startServer(t, Config{})
	var in, out []*client
	for i := 0; i < 200; i++ {
		c := dial(t, srv)
		if i%2 == 0 {
			if n, err := srv.Subscribe(c.id, "news", "sport"); err != nil || n != 2 {
				t.Fatalf("Subscribe = %d, %v", n, err)
			}
			in = append(in, c)
		} else {
			out = append(out, c)
		}
	}
	if n, err := srv.Subscribe(in[0].id, "news"); err != nil || n != 0 {
		t.Fatalf("resubscribing: %d, %v; want 0 changes, no error", n, err)
	}
	if got := srv.Subscribers("news"); got != 100 {
		t.Fatalf("Subscribers(news) = %d, want 100", got)
	}
	// Publishes interleaved with sends keep their order per client.
	for i := 0; i < 5; i++ {
		counts, st := srv.Publish("news", []byte(fmt.Sprintf("news %d", i)))
		if st != Queued || counts.Queued != 100 {
			t.Fatalf("Publish = %+v, %v; want 100 queued", counts, st)
		}
		srv.Send(in[0].id, []byte(fmt.Sprintf("direct %d", i)))
	}
	for i := 0; i < 5; i++ {
		in[0].expect(fmt.Sprintf("news %d", i))
		in[0].expect(fmt.Sprintf("direct %d", i))
	}
	for _, c := range in[1:] {
		for i := 0; i < 5; i++ {
			c.expect(fmt.Sprintf("news %d", i))
		}
	}
	for _, c := range out {
		c.expectSilence(time.Millisecond)
	}
	out[0].expectSilence(50 * time.Millisecond)

	// Unsubscribe and disconnect take clients out.
	if n, err := srv.Unsubscribe(in[1].id, "news", "not-a-member"); err != nil || n != 1 {
		t.Fatalf("Unsubscribe = %d, %v; want 1", n, err)
	}
	in[2].conn.Close()
	waitFor(t, 5*time.Second, "closed client unsubscribed", func() bool { return srv.Subscribers("news") == 98 })
	counts, _ := srv.Publish("news", []byte("after"))
	if counts.Queued != 98 {
		t.Fatalf("publish after leaving: %d queued, want 98", counts.Queued)
	}
	in[1].expectSilence(50 * time.Millisecond)
	in[3].expect("after")

	// A topic nobody is in takes no memory and reaches nobody.
	for _, c := range in {
		srv.Unsubscribe(c.id, "sport")
	}
	topics, _ := srv.TopicCount()
	if topics != 1 {
		t.Fatalf("TopicCount = %d, want 1 (news only)", topics)
	}
	if counts, st := srv.Publish("sport", []byte("x")); st != Queued || counts.Queued != 0 {
		t.Fatalf("Publish to an empty topic = %+v, %v", counts, st)
	}
}

func TestTopicValidationAndLimits(t *testing.T) {
	srv := startServer(t, Config{MaxTopicsPerConn: 2, MaxSubscribers: 1, MaxTopics: 3})
	a, b := dial(t, srv), dial(t, srv)
	cases := []struct {
		id     string
		topics []string
		want   error
		detail string
	}{
		{a.id, []string{""}, ErrBadTopic, "want 1 to 255"},
		{a.id, []string{"has space"}, ErrBadTopic, "offset 3"},
		{a.id, []string{strings.Repeat("t", 256)}, ErrBadTopic, "256 bytes"},
		{"AAAAAAAAAAAAAAAAAAAAAA", []string{"x"}, ErrUnknownID, ""},
		{a.id, []string{"t1", "t2", "t3"}, ErrLimit, "in 2 topics"},
		{b.id, []string{"t1"}, ErrLimit, "has 1 subscribers"},
		{b.id, []string{"t3", "t4"}, ErrLimit, "3 topics exist"},
	}
	for _, tc := range cases {
		_, err := srv.Subscribe(tc.id, tc.topics...)
		if !errors.Is(err, tc.want) || !strings.Contains(fmt.Sprint(err), tc.detail) {
			t.Errorf("Subscribe(%v) error = %v, want %v mentioning %q", tc.topics, err, tc.want, tc.detail)
		}
	}
	if _, st := srv.Publish("bad topic", []byte("x")); st != BadTopic {
		t.Errorf("Publish to an invalid topic = %v, want %v", st, BadTopic)
	}
}

func TestWatchEventsCarrySequenceAndReason(t *testing.T) {
	srv := startServer(t, Config{EventLog: 4})
	start := srv.LastEventSeq()
	c := dial(t, srv)
	srv.Kick(c.id)
	waitFor(t, 5*time.Second, "disconnect event", func() bool { return srv.LastEventSeq() == start+2 })
	evs, next, lost, _ := srv.EventsSince(start+1, nil, 10)
	if lost != 0 || len(evs) != 2 || next != start+3 {
		t.Fatalf("EventsSince = %d events, next %d, lost %d", len(evs), next, lost)
	}
	if evs[0].Kind != EventConnect || evs[0].ID != c.id || evs[0].Remote.Addr().String() != "127.0.0.1" {
		t.Fatalf("connect event %+v", evs[0])
	}
	if evs[1].Kind != EventDisconnect || evs[1].Reason != ReasonKicked || evs[1].Seq != evs[0].Seq+1 {
		t.Fatalf("disconnect event %+v", evs[1])
	}
	// Nothing new: a wait channel that the next event closes.
	_, _, _, wait := srv.EventsSince(next, nil, 10)
	if wait == nil {
		t.Fatal("no wait channel when caught up")
	}
	dial(t, srv)
	select {
	case <-wait:
	case <-time.After(5 * time.Second):
		t.Fatal("wait channel not closed by a new event")
	}
	// The log keeps 4 events: asking for the first reports what was lost.
	for i := 0; i < 4; i++ {
		dial(t, srv)
	}
	waitFor(t, 5*time.Second, "events", func() bool { return srv.LastEventSeq() >= start+7 })
	evs, _, lost, _ = srv.EventsSince(1, nil, 100)
	if lost == 0 || len(evs) != 4 || evs[0].Seq != 1+lost {
		t.Fatalf("from 1 with a 4-event log: %d events (first %d), lost %d", len(evs), evs[0].Seq, lost)
	}
}

func TestListPagesEveryIDExactlyOnce(t *testing.T) {
	srv := startServer(t, Config{})
	want := map[string]bool{}
	for i := 0; i < 700; i++ {
		want[dial(t, srv).id] = true
	}
	got := map[string]bool{}
	cursor, pages := "", 0
	for {
		ids, next, err := srv.List(cursor, 64)
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) > 64 {
			t.Fatalf("page of %d IDs, limit 64", len(ids))
		}
		for _, id := range ids {
			if got[id] {
				t.Fatalf("ID %s listed twice", id)
			}
			got[id] = true
		}
		pages++
		if next == "" {
			break
		}
		cursor = next
		if pages > 100 {
			t.Fatal("listing does not end")
		}
	}
	if len(got) != len(want) {
		t.Fatalf("listed %d IDs, want %d", len(got), len(want))
	}
	if _, _, err := srv.List("nonsense", 10); err == nil {
		t.Fatal("a bad cursor was accepted")
	}
	var any string
	for id := range want {
		any = id
		break
	}
	info, ok := srv.Info(any)
	if !ok || info.ID != any || time.Since(info.Since) > time.Minute || !info.Remote.Addr().IsLoopback() {
		t.Fatalf("Info = %+v, %v", info, ok)
	}
}

func TestMetricsIncludeTheProcess(t *testing.T) {
	srv := startServer(t, Config{})
	dial(t, srv)
	got := map[string]float64{}
	for _, m := range srv.Metrics() {
		got[m.Name+"{"+m.Labels+"}"] = m.Value
	}
	for _, name := range []string{"pushrelay_go_heap_inuse_bytes{}", "pushrelay_process_resident_bytes{}", "pushrelay_connections_open{}"} {
		if got[name] <= 0 {
			t.Errorf("%s = %v, want a positive value", name, got[name])
		}
	}
}
