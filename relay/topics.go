package relay

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// Topics. The web app subscribes client IDs to topics (clients never speak,
// so they cannot subscribe themselves). Membership lives where the writes
// happen: each event loop keeps, for its own sessions, a map from topic to
// members, touched only on that loop. A publish is one mailbox item per
// loop, and each loop stages the shared frame on its local members. The
// server keeps only a count per topic, for limits and for replies.

// Topic limits and defaults.
const (
	MaxTopicLen             = 255
	DefaultMaxTopicsPerConn = 1024
	DefaultMaxTopics        = 1 << 20
)

// Errors of the topic operations, matched with errors.Is.
var (
	ErrUnknownID  = errors.New("unknown client ID")
	ErrBadTopic   = errors.New("invalid topic name")
	ErrLimit      = errors.New("limit reached")
	ErrOverloaded = errors.New("relay overloaded")
)

// CheckTopic returns nil if name is a valid topic: 1 to 255 bytes of
// printable ASCII other than space (0x21 to 0x7e).
func CheckTopic(name string) error {
	if len(name) == 0 || len(name) > MaxTopicLen {
		return fmt.Errorf("%w: %d bytes, want 1 to %d", ErrBadTopic, len(name), MaxTopicLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("%w: byte 0x%02x at offset %d (want printable ASCII, no spaces)", ErrBadTopic, c, i)
		}
	}
	return nil
}

// topicIndex counts subscribers per topic, relay-wide, for the limits on
// subscribers per topic and topics in total, and for publish replies. A
// topic whose count drops to zero is deleted: it takes no memory.
type topicIndex struct {
	shards [64]topicShard
	topics atomic.Int64 // topics with at least one subscriber
	subs   atomic.Int64 // subscriptions in total
}

type topicShard struct {
	mu sync.Mutex
	m  map[string]*topicCount // guarded by mu
}

// topicCount is a topic's subscriber count and its name as stored, a
// string that callers holding borrowed bytes can keep. byT counts the
// subscribers by transport, so a publish can say at once how many cannot
// carry its payload.
type topicCount struct {
	name string
	n    int
	byT  [numTransports]int32
}

func (x *topicIndex) shard(topic string) *topicShard {
	return &x.shards[xxhash.Sum64String(topic)&63]
}

// add counts one more subscriber of topic, unless a limit forbids it.
func (x *topicIndex) add(topic string, t transport, maxSubs, maxTopics int) error {
	sh := x.shard(topic)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	tc := sh.m[topic]
	switch {
	case tc != nil && maxSubs > 0 && tc.n >= maxSubs:
		return fmt.Errorf("%w: topic %q has %d subscribers, the most allowed", ErrLimit, topic, maxSubs)
	case tc == nil && x.topics.Load() >= int64(maxTopics):
		return fmt.Errorf("%w: %d topics exist, the most allowed", ErrLimit, maxTopics)
	}
	if tc == nil {
		if sh.m == nil {
			sh.m = make(map[string]*topicCount)
		}
		tc = &topicCount{name: topic}
		sh.m[topic] = tc
		x.topics.Add(1)
	}
	tc.n++
	tc.byT[t]++
	x.subs.Add(1)
	return nil
}

// remove counts one subscriber of topic, of transport t, fewer.
func (x *topicIndex) remove(topic string, t transport) {
	sh := x.shard(topic)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	tc := sh.m[topic]
	if tc == nil {
		return
	}
	x.subs.Add(-1)
	tc.byT[t]--
	if tc.n--; tc.n == 0 {
		delete(sh.m, topic)
		x.topics.Add(-1)
	}
}

// count returns the subscribers of topic, how many of them read each
// transport, and the topic's name as stored, so a caller holding borrowed
// bytes gets a string it may keep.
func (x *topicIndex) count(topic string) (n int, byT [numTransports]int32, name string) {
	sh := x.shard(topic)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if tc := sh.m[topic]; tc != nil {
		return tc.n, tc.byT, tc.name
	}
	return 0, byT, ""
}

// loopTopic is one topic's members on one loop. Owned by the loop.
type loopTopic struct {
	name    string
	members []*session
}

// membership links a session to one of its topics; idx is its position in
// t.members, kept current by swap-removes.
type membership struct {
	t   *loopTopic
	idx int32
}

// subscribe adds s to topic on the loop.
func (l *loop) subscribe(s *session, topic string) error {
	if s.closed {
		return ErrUnknownID
	}
	for _, m := range s.memberships() {
		if m.t.name == topic {
			return nil // already a member: not an error, not a change
		}
	}
	cfg := &l.srv.cfg
	if len(s.memberships()) >= cfg.MaxTopicsPerConn {
		return fmt.Errorf("%w: client is in %d topics, the most allowed", ErrLimit, cfg.MaxTopicsPerConn)
	}
	if err := l.srv.topics.add(topic, s.transport, cfg.MaxSubscribers, cfg.MaxTopics); err != nil {
		return err
	}
	t := l.topics[topic]
	if t == nil {
		if l.topics == nil {
			l.topics = make(map[string]*loopTopic)
		}
		t = &loopTopic{name: topic}
		l.topics[topic] = t
	}
	s.addMembership(membership{t: t, idx: int32(len(t.members))})
	t.members = append(t.members, s)
	return errSubscribed
}

// errSubscribed is subscribe's way of saying "changed": not an error.
var errSubscribed = errors.New("subscribed")

// unsubscribe removes s from topic on the loop and reports whether it was
// a member.
func (l *loop) unsubscribe(s *session, topic string) bool {
	for i, m := range s.memberships() {
		if m.t.name == topic {
			l.leave(s, i)
			return true
		}
	}
	return false
}

// leave removes s's i-th membership.
func (l *loop) leave(s *session, i int) {
	m := s.memberships()[i]
	t := m.t
	last := len(t.members) - 1
	moved := t.members[last]
	t.members[m.idx] = moved
	t.members[last] = nil
	t.members = t.members[:last]
	if moved != s {
		ms := moved.memberships()
		for j := range ms {
			if ms[j].t == t {
				ms[j].idx = m.idx
				break
			}
		}
	}
	if len(t.members) == 0 {
		delete(l.topics, t.name)
	}
	s.removeMembership(i)
	l.srv.topics.remove(t.name, s.transport)
}

// leaveAll drops every subscription of s (at close).
func (l *loop) leaveAll(s *session) {
	for n := len(s.memberships()); n > 0; n = len(s.memberships()) {
		l.leave(s, n-1)
	}
	s.subs = nil
}

// topicOp is the loop's answer to a subscribe or unsubscribe item, or to
// a presence query (ids).
type topicOp struct {
	changed int
	err     error
	ids     []string
}

// Subscribe adds the client to each topic, in order, and returns how many
// subscriptions it added (topics it was already in count as no change). It
// stops at the first topic it cannot add (limit reached) and says why. The
// subscription is in force for any publish made after Subscribe returns.
// Safe for concurrent use.
func (s *Server) Subscribe(id string, topics ...string) (added int, err error) {
	return s.topicOp(kindSubscribe, id, topics)
}

// Unsubscribe removes the client from each topic and returns how many
// subscriptions it removed. Safe for concurrent use.
func (s *Server) Unsubscribe(id string, topics ...string) (removed int, err error) {
	return s.topicOp(kindUnsubscribe, id, topics)
}

func (s *Server) topicOp(kind itemKind, id string, topics []string) (int, error) {
	if s.closing.Load() {
		return 0, ErrClosed
	}
	for _, t := range topics {
		if err := CheckTopic(t); err != nil {
			return 0, err
		}
	}
	sess := s.reg.get(id)
	if sess == nil {
		return 0, ErrUnknownID
	}
	// Topic names become map keys on the loop: own them.
	owned := make([]string, len(topics))
	for i, t := range topics {
		owned[i] = string([]byte(t))
	}
	reply := make(chan topicOp, 1)
	switch sess.loop.enqueue(item{kind: kind, sess: sess, topics: owned, topicReply: reply}, 0) {
	case Queued:
	case Closed:
		return 0, ErrClosed
	default:
		return 0, ErrOverloaded
	}
	r := <-reply
	return r.changed, r.err
}

// applyTopicOp runs a subscribe or unsubscribe item on the loop.
func (l *loop) applyTopicOp(it *item) {
	if it.sess == nil {
		l.presence(it)
		return
	}
	var r topicOp
	for _, t := range it.topics {
		if it.kind == kindSubscribe {
			switch err := l.subscribe(it.sess, t); err {
			case errSubscribed:
				r.changed++
			case nil:
			default:
				r.err = err
			}
		} else if it.sess.closed {
			r.err = ErrUnknownID
		} else if l.unsubscribe(it.sess, t) {
			r.changed++
		}
		if r.err != nil {
			break
		}
	}
	it.topicReply <- r
}

// Publish queues payload, framed once, for every client subscribed to topic
// when it is called: one mailbox item per event loop. Counts are the
// subscribers then: Unsupported those of a transport that cannot carry the
// payload, Queued the rest. Safe for concurrent use.
func (s *Server) Publish(topic string, payload []byte) (Counts, Status) {
	var c Counts
	if st := s.check(payload); st != Queued {
		return c, st
	}
	if CheckTopic(topic) != nil {
		return c, BadTopic
	}
	n, byT, key := s.topics.count(topic)
	if n == 0 {
		return c, Queued
	}
	f := s.encode(payload, s.webEncodings())
	st := s.enqueueAll(item{kind: kindPublish, frame: f, topic: key}, f.size())
	unsupported := 0
	if f.bytesFor(transportRaw) == nil {
		unsupported += int(byT[transportRaw])
	}
	if f.bytesFor(transportSSE) == nil {
		unsupported += int(byT[transportSSE])
	}
	f.release()
	if st == Overloaded {
		c.Overloaded = n
		s.counters.drops[DropOverloaded].Add(uint64(n))
	} else if st == Queued {
		c.Queued, c.Unsupported = n-unsupported, unsupported
	}
	return c, st
}

// TopicCount returns the number of topics with at least one subscriber and
// the number of subscriptions. Safe for concurrent use.
func (s *Server) TopicCount() (topics, subscriptions int64) {
	return s.topics.topics.Load(), s.topics.subs.Load()
}

// Subscribers returns how many clients are subscribed to topic.
func (s *Server) Subscribers(topic string) int {
	n, _, _ := s.topics.count(topic)
	return n
}

// A presence query rides on the topic items: an unsubscribe item without a
// session (it.sess nil) asks the loop for its members of it.topic whose
// IDs sort after it.topics[0]. The loop answers on it.topicReply. Sharing
// the kind keeps the query in the mailbox's order behind the subscribes
// queued before it, and adds no case to the loop's dispatch.

// presence answers a presence query on the loop.
func (l *loop) presence(it *item) {
	var r topicOp
	if t := l.topics[it.topic]; t != nil {
		after := it.topics[0]
		r.ids = make([]string, 0, len(t.members))
		for _, s := range t.members {
			if s.closed {
				continue
			}
			if id := s.ID(); id > after {
				r.ids = append(r.ids, id)
			}
		}
	}
	it.topicReply <- r
}

// MaxPresencePage is the most IDs one Presence call returns.
const MaxPresencePage = MaxListPage

// Presence returns up to limit IDs (at most MaxPresencePage; 0 or less
// means that many) of the clients subscribed to topic, in ascending order
// after cursor, an ID ("" to start); next is the cursor of the following
// page, "" after the last. count is the topic's subscriber count. A client
// subscribed for the whole paging appears exactly once; one that comes or
// goes meanwhile may or may not. Each page asks every event loop for its
// members and sorts them: its cost grows with the topic's subscribers, not
// with limit. Safe for concurrent use.
func (s *Server) Presence(topic, cursor string, limit int) (ids []string, next string, count int, err error) {
	if err := CheckTopic(topic); err != nil {
		return nil, "", 0, err
	}
	if cursor != "" && !ValidID(cursor) {
		return nil, "", 0, fmt.Errorf("invalid cursor %q: pass back the cursor a previous page returned, or nothing to start", cursor)
	}
	if limit <= 0 || limit > MaxPresencePage {
		limit = MaxPresencePage
	}
	if s.closing.Load() {
		return nil, "", 0, ErrClosed
	}
	count, _, key := s.topics.count(topic)
	if count == 0 {
		return nil, "", 0, nil
	}
	loops := *s.loops.Load()
	reply := make(chan topicOp, len(loops))
	asked := 0
	for _, l := range loops {
		if l.count.Load() == 0 {
			continue
		}
		switch l.enqueue(item{kind: kindUnsubscribe, topic: key, topics: []string{cursor}, topicReply: reply}, 0) {
		case Queued:
			asked++
		case Closed:
			return nil, "", 0, ErrClosed
		default:
			// Loops asked before this one answer into reply's buffer.
			return nil, "", 0, ErrOverloaded
		}
	}
	for ; asked > 0; asked-- {
		ids = append(ids, (<-reply).ids...)
	}
	slices.Sort(ids)
	if len(ids) > limit {
		ids = ids[:limit:limit]
		next = ids[limit-1]
	}
	return ids, next, count, nil
}
