package ingress

// The operations layer. Each operation both front ends serve is checked,
// run on the relay and turned into one outcome here: the Unix protocol
// (handle.go) and the HTTP API (http_*.go, batch.go) only decode requests
// and encode outcomes, so the same request gets the same status and the
// same words from either. A check a decoder makes early, to bound its
// work (a count over its limit), uses the words of this file.

import (
	"errors"
	"fmt"

	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// outcome is what one operation came to: wire.StatusOK with its counts,
// or a failure status and its one-sentence message, which starts with
// the operation's name. The HTTP API maps the status with fromWire.
type outcome struct {
	status wire.Status
	msg    string       // "" when status is StatusOK
	counts relay.Counts // pushes
	n      int          // subscribe, unsubscribe: topics changed, on failure too
}

func (o outcome) failed() bool { return o.status != wire.StatusOK }

func failure(st wire.Status, msg string) outcome { return outcome{status: st, msg: msg} }

// Checks and their words. what names the operation ("send"), or the
// place in a batch ("batch: line 3").

func badID(what string, id []byte) outcome {
	return failure(wire.StatusBadRequest, fmt.Sprintf("%s: %q is not a client ID (22 to 64 characters of A-Z a-z 0-9 _ -)", what, id))
}

// checkID answers bad_request for anything not shaped like an ID, the same
// way for every operation that takes one.
func checkID(op wire.Op, id []byte) outcome {
	if relay.ValidID(borrow(id)) {
		return outcome{}
	}
	return badID(op.String(), id)
}

// badIDAt is the failure of the i-th ID of a list.
func badIDAt(what string, i int, id string) outcome {
	return failure(wire.StatusBadRequest, fmt.Sprintf("%s: ID %d, %q, is not a client ID", what, i, id))
}

// checkIDs checks every ID of a list.
func checkIDs(what string, ids []string) outcome {
	for i, id := range ids {
		if !relay.ValidID(id) {
			return badIDAt(what, i, id)
		}
	}
	return outcome{}
}

// tooMany is the failure of a request with more items (IDs, topics) than
// its limit.
func tooMany(op wire.Op, n int, items string, max int) outcome {
	return failure(wire.StatusLimit, fmt.Sprintf("%s: %d %s, the most in one request is %d", op, n, items, max))
}

// checkTopic checks a topic's name.
func checkTopic(what string, topic []byte) outcome {
	if err := relay.CheckTopic(borrow(topic)); err != nil {
		return failure(wire.StatusBadRequest, fmt.Sprintf("%s: %v", what, err))
	}
	return outcome{}
}

// notConnected is the failure of an operation on one client that no node
// holds.
func notConnected(op wire.Op, id []byte) outcome {
	return failure(wire.StatusUnknownID, fmt.Sprintf("%s: no client %q is connected", op, id))
}

// refusal says why the relay refused a push as a whole, or false if st is
// a recipient's status that the counts carry.
func refusal(rel Relay, st relay.Status, payload []byte) (wire.Status, string, bool) {
	switch st {
	case relay.TooLarge:
		return wire.StatusTooLarge, fmt.Sprint(rel.CheckPayload(payload)), true
	case relay.BadPayload:
		return wire.StatusBadRequest, fmt.Sprint(rel.CheckPayload(payload)), true
	case relay.BadTopic:
		return wire.StatusBadRequest, "invalid topic", true
	case relay.Closed:
		return wire.StatusShuttingDown, "the relay is shutting down", true
	case relay.Overloaded:
		return wire.StatusOverloaded, "the relay's queue is full; nothing was queued, retry later", true
	case relay.Unreachable:
		return wire.StatusUnavailable, fmt.Sprintf("%v in time; it may or may not have been done, retry later", relay.ErrUnreachable), true
	}
	return wire.StatusOK, "", false
}

// pushed turns a push's counts and status into its outcome.
func pushed(rel Relay, op wire.Op, counts relay.Counts, st relay.Status, payload []byte) outcome {
	ws, reason, refused := refusal(rel, st, payload)
	if !refused || st == relay.Overloaded && op == wire.OpSendMany { // per recipient, counted
		return outcome{counts: counts}
	}
	return failure(ws, fmt.Sprintf("%s: %s", op, reason))
}

// Operations. Their arguments are the decoded request; strings may be
// borrowed views of it (see borrow).

// opSend pushes to one client. pipelined says more requests wait behind
// this one: the relay then queues it for its event loop, to be written in
// batches (Relay.SendPipelined). An unknown ID is counted, not failed.
func opSend(rel Relay, id, payload []byte, pipelined bool) outcome {
	if o := checkID(wire.OpSend, id); o.failed() {
		return o
	}
	var st relay.Status
	if pipelined {
		st = rel.SendPipelined(borrow(id), payload)
	} else {
		st = rel.Send(borrow(id), payload)
	}
	if st == relay.Unsupported {
		return failure(wire.StatusUnsupported, fmt.Sprintf("%s: %s", wire.OpSend, unsupportedReason(rel, string(id), payload)))
	}
	var c relay.Counts
	c.Add(st)
	return pushed(rel, wire.OpSend, c, st, payload)
}

// opSendMany pushes one payload to many clients, whose IDs the caller has
// checked (checkIDs, or badIDAt while decoding).
func opSendMany(rel Relay, ids []string, payload []byte) outcome {
	counts, st := rel.SendMany(ids, payload)
	return pushed(rel, wire.OpSendMany, counts, st, payload)
}

// opPublish pushes to a topic's subscribers.
func opPublish(rel Relay, topic, payload []byte) outcome {
	if o := checkTopic(wire.OpPublish.String(), topic); o.failed() {
		return o
	}
	counts, st := rel.Publish(borrow(topic), payload)
	return pushed(rel, wire.OpPublish, counts, st, payload)
}

// opBroadcast pushes to every client.
func opBroadcast(rel Relay, payload []byte) outcome {
	counts, st := rel.Broadcast(payload)
	return pushed(rel, wire.OpBroadcast, counts, st, payload)
}

// opTopics subscribes (op OpSubscribe) or unsubscribes a checked client
// ID to or from topics; n is the number of topics changed, also when an
// error stopped it part way.
func opTopics(rel Relay, op wire.Op, id string, topics []string) outcome {
	var changed int
	var err error
	if op == wire.OpSubscribe {
		changed, err = rel.Subscribe(id, topics...)
	} else {
		changed, err = rel.Unsubscribe(id, topics...)
	}
	if err != nil {
		o := failure(topicStatus(err), fmt.Sprintf("%s: %v", op, err))
		o.n = changed
		return o
	}
	return outcome{n: changed}
}

// opKick closes a client's connection.
func opKick(rel Relay, id []byte) outcome {
	if o := checkID(wire.OpKick, id); o.failed() {
		return o
	}
	switch st := rel.Kick(borrow(id)); st {
	case relay.Queued:
		return outcome{}
	case relay.UnknownID:
		return notConnected(wire.OpKick, id)
	default:
		if ws, reason, refused := refusal(rel, st, nil); refused {
			return failure(ws, fmt.Sprintf("%s: %s", wire.OpKick, reason))
		}
		return failure(wire.StatusBadRequest, fmt.Sprintf("%s: %v", wire.OpKick, st))
	}
}

// opList pages through the connected IDs.
func opList(rel Relay, cursor string, limit int) ([]string, string, outcome) {
	ids, next, err := rel.List(cursor, limit)
	switch {
	case errors.Is(err, relay.ErrUnreachable):
		return nil, "", failure(wire.StatusUnavailable, fmt.Sprintf("%s: %v", wire.OpList, err))
	case err != nil:
		return nil, "", failure(wire.StatusBadRequest, fmt.Sprintf("%s: %v", wire.OpList, err))
	}
	return ids, next, outcome{}
}

// opPresence pages through a topic's subscribers and counts them.
func opPresence(rel Relay, topic []byte, cursor string, limit int) (ids []string, next string, count int, o outcome) {
	if o := checkTopic(wire.OpPresence.String(), topic); o.failed() {
		return nil, "", 0, o
	}
	ids, next, count, err := rel.Presence(borrow(topic), cursor, limit)
	if err != nil {
		return nil, "", 0, failure(topicStatus(err), fmt.Sprintf("%s: %v", wire.OpPresence, err))
	}
	return ids, next, count, outcome{}
}

// opInfo describes a client: whether it is connected, since when, from
// where.
func opInfo(rel Relay, id []byte) (relay.ClientInfo, bool, outcome) {
	if o := checkID(wire.OpInfo, id); o.failed() {
		return relay.ClientInfo{}, false, o
	}
	info, connected := rel.Info(borrow(id))
	return info, connected, outcome{}
}

// opStats is every metric: the relay's, then the front end's own.
func opStats(rel Relay, more ...[]relay.Metric) []relay.Metric {
	ms := rel.Metrics()
	for _, m := range more {
		ms = append(ms, m...)
	}
	return ms
}

// opWatch starts a watch from event from, 0 meaning the next one: it
// returns where the stream starts and the latest event's number.
func opWatch(rel Relay, from uint64) (start, last uint64) {
	last = rel.LastEventSeq()
	if from == 0 {
		from = last + 1
	}
	return from, last
}

// tooManyWatches is the failure of a watch over the limit of one
// connection.
func tooManyWatches(max int) outcome {
	return failure(wire.StatusLimit, fmt.Sprintf("%s: %d watches on this connection, the most allowed", wire.OpWatch, max))
}

// unsupportedReason explains an Unsupported status for the client id in
// the relay's own words (the client's transport and the offending byte),
// or in general ones from a relay that cannot tell.
func unsupportedReason(rel Relay, id string, payload []byte) string {
	if r, ok := rel.(interface {
		UnsupportedReason(id string, payload []byte) string
	}); ok {
		return r.UnsupportedReason(id, payload)
	}
	return fmt.Sprintf("client %s cannot take this payload: its transport cannot carry it (tcp clients: the bytes the framing forbids; SSE: UTF-8 text only)", id)
}

// topicStatuses maps the errors of topic operations to statuses.
var topicStatuses = [...]struct {
	err error
	st  wire.Status
}{
	{relay.ErrUnknownID, wire.StatusUnknownID},
	{relay.ErrBadTopic, wire.StatusBadRequest},
	{relay.ErrLimit, wire.StatusLimit},
	{relay.ErrClosed, wire.StatusShuttingDown},
	{relay.ErrOverloaded, wire.StatusOverloaded},
	{relay.ErrUnreachable, wire.StatusUnavailable},
}

// topicStatus maps a topic operation's error to a status.
func topicStatus(err error) wire.Status {
	for _, t := range topicStatuses {
		if errors.Is(err, t.err) {
			return t.st
		}
	}
	return wire.StatusBadRequest
}
