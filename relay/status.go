package relay

// Status is the outcome of a push to one connection, as known when the call
// returns. Writes themselves happen later on the connection's event loop; a
// drop decided there (the socket filled up in the meantime) is counted in
// Stats.Drops, not reported back.
type Status uint8

const (
	// Queued: accepted; the frame is in the event loop's mailbox and will be
	// written in order after everything queued before it for that connection.
	Queued Status = iota
	// UnknownID: no open connection has that ID (never had, or closed).
	UnknownID
	// DroppedSlow: the connection is known to be over its outbound cap under
	// SlowDrop, so this message was not queued for it.
	DroppedSlow
	// TooLarge: the payload is larger than Config.MaxMessage.
	TooLarge
	// BadPayload: the payload is empty, or no transport the relay serves
	// could carry it (no web listener, and a byte the framing forbids).
	// A payload only some recipients cannot take is Unsupported for them.
	BadPayload
	// Overloaded: the event loop's mailbox is full (its byte or item bound);
	// nothing was queued. The caller may retry later.
	Overloaded
	// Closed: the relay is shutting down and accepts no more pushes.
	Closed
	// BadTopic: the topic name is not valid (see CheckTopic).
	BadTopic
	// Unreachable: the client's node (in a cluster) did not answer in
	// time, or cannot be reached: the push may or may not have been
	// delivered. Never returned by a standalone Server.
	Unreachable
	// Unsupported: the connection's transport cannot carry this payload
	// (a raw client and a byte its framing forbids; an SSE client and a
	// payload that is not UTF-8, or whose event would pass MaxOutbound).
	// Nothing was queued for it; a client of another transport could take
	// the same payload.
	Unsupported
)

var statusNames = [...]string{
	Queued:      "queued",
	UnknownID:   "unknown_id",
	DroppedSlow: "dropped_slow",
	TooLarge:    "too_large",
	BadPayload:  "bad_payload",
	Overloaded:  "overloaded",
	Closed:      "closed",
	BadTopic:    "bad_topic",
	Unreachable: "unreachable",
	Unsupported: "unsupported",
}

// String returns the status as a snake_case word, as used in logs and JSON.
func (s Status) String() string { return enumName(s, statusNames[:], "unknown_status") }

// Counts tallies the outcome of a push to many connections. Each recipient is
// counted once, under the Status it got.
type Counts struct {
	Queued      int // written or queued for writing
	UnknownID   int // IDs with no open connection
	DroppedSlow int // recipients over their outbound cap under SlowDrop
	Overloaded  int // recipients whose loop mailbox was full
	// Unreachable is cluster only: for send_many, the IDs whose node did
	// not answer in time; for publish and broadcast, the nodes that did
	// not answer in time (their recipients are unknown). Always 0 for a
	// standalone Server.
	Unreachable int
	// Unsupported: recipients whose transport cannot carry the payload
	// (see the Unsupported status); nothing was queued for them. For
	// publish and broadcast, the subscribers or clients of such a
	// transport when the push was accepted.
	Unsupported int
}

// add counts one recipient's status.
func (c *Counts) add(s Status) {
	switch s {
	case Queued:
		c.Queued++
	case UnknownID:
		c.UnknownID++
	case DroppedSlow:
		c.DroppedSlow++
	case Overloaded:
		c.Overloaded++
	case Unreachable:
		c.Unreachable++
	case Unsupported:
		c.Unsupported++
	}
}

// Add counts one recipient's status (as the relay does for SendMany).
func (c *Counts) Add(s Status) { c.add(s) }

// Merge adds o's counts to c.
func (c *Counts) Merge(o Counts) {
	*c = Counts{
		Queued: c.Queued + o.Queued, UnknownID: c.UnknownID + o.UnknownID,
		DroppedSlow: c.DroppedSlow + o.DroppedSlow, Overloaded: c.Overloaded + o.Overloaded,
		Unreachable: c.Unreachable + o.Unreachable, Unsupported: c.Unsupported + o.Unsupported,
	}
}
