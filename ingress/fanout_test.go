package ingress

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/pushrelay/pushrelay/ingress/client"
	"github.com/pushrelay/pushrelay/relay"
)

// TestTopicsWithConcurrentPublishers: 100 clients each subscribed to 50
// topics; 4 ingress connections publish 5 messages to every topic at once.
// Every client gets every message exactly once, and each publisher's
// messages in the order it sent them.
func TestTopicsWithConcurrentPublishers(t *testing.T) {
	e := newEnv(t, relay.Config{MaxOutbound: 16 << 20}, Config{})
	const nClients, nTopics, nPubs, perTopic = 100, 50, 4, 5
	topics := make([]string, nTopics)
	for i := range topics {
		topics[i] = fmt.Sprintf("topic-%02d", i)
	}
	sub := e.dial()
	clients := make([]*tcpClient, nClients)
	for i := range clients {
		clients[i] = e.connect()
		if n, err := sub.Subscribe(ctx(t), clients[i].id, topics...); err != nil || n != nTopics {
			t.Fatalf("subscribe: %d, %v", n, err)
		}
	}
	pubs := make([]*client.Client, nPubs)
	for p := range pubs {
		pubs[p] = e.dial()
	}
	const total = nPubs * nTopics * perTopic
	results := make([][]string, nClients)
	var rwg sync.WaitGroup
	for i, c := range clients {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			for k := 0; k < total; k++ {
				results[i] = append(results[i], string(c.next(t)))
			}
		}()
	}
	var pwg sync.WaitGroup
	for p, pc := range pubs {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for m := 0; m < perTopic; m++ {
				for _, topic := range topics {
					c, err := pc.Publish(context.Background(), topic, []byte(fmt.Sprintf("p%d/%s/%d", p, topic, m)))
					if err != nil || c.Queued != nClients {
						t.Errorf("publish: %+v, %v", c, err)
						return
					}
				}
			}
		}()
	}
	pwg.Wait()
	rwg.Wait()
	for i, got := range results {
		seen := map[string]bool{}
		last := map[string]int{} // per publisher: sequence of its messages
		for _, msg := range got {
			if seen[msg] {
				t.Fatalf("client %d got %s twice", i, msg)
			}
			seen[msg] = true
			var p, m int
			var topic string
			parts := strings.Split(msg, "/")
			fmt.Sscanf(parts[0], "p%d", &p)
			topic = parts[1]
			fmt.Sscanf(parts[2], "%d", &m)
			var ti int
			fmt.Sscanf(topic, "topic-%d", &ti)
			seq := m*nTopics + ti
			key := parts[0]
			if prev, ok := last[key]; ok && seq <= prev {
				t.Fatalf("client %d: %s after sequence %d of the same publisher", i, msg, prev)
			}
			last[key] = seq
		}
		if len(seen) != total {
			t.Fatalf("client %d got %d distinct messages, want %d", i, len(seen), total)
		}
	}
}
