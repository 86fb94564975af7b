package relay

import "time"

// Fanout in slices. A broadcast to 10,000 connections keeps a loop busy for
// tens of milliseconds; a unicast queued behind it would wait that long. So
// a loop runs one fanout at a time as a job, sliceTargets recipients per
// turn, and between turns goes back to gnet (other sockets' events) and to
// its mailbox, where items up to the next fanout are handled at once.
//
// Order per client still follows the mailbox. A job snapshots its targets
// when it starts and marks each (fanPending). A unicast or kick for a
// marked session first delivers the job's frames to it, then its own; the
// job skips sessions that were served that way. A fanout item waits until
// the job ahead of it ends, and so does everything queued after it.
//
// Consecutive fanout items with the same targets (broadcasts, or publishes
// to one topic, with nothing in between) join one job, so a burst reaches
// each client as one writev.

// A job's turn ends after sliceTargets recipients or turnTime, whichever
// comes first: the bound on a unicast's wait behind a fanout. Time, not
// only count, because a write costs 2 to 9 us depending on the host and
// the loops' share of the cores (256 writes took 5 ms on the reference
// machine with two loops and a client sharing two cores).
const (
	sliceTargets = 256
	turnTime     = 500 * time.Microsecond
)

// maxJobFrames bounds the frames merged into one job.
const maxJobFrames = 64

// fanoutJob is the loop's running fanout. Owned by the loop.
type fanoutJob struct {
	active    bool
	kind      itemKind // kindBroadcast, kindPublish or kindTick (heartbeat)
	topic     string
	frames    []*Frame   // one reference each, released when the job ends
	targets   []*session // snapshot at start; buffer reused across jobs
	next      int
	started   time.Time
	heartbeat bool
}

// isFanout reports whether an item is handled as a job.
func isFanout(k itemKind) bool { return k == kindBroadcast || k == kindPublish }

// startJob starts a job for the fanout items at the head of items (at
// least one), merging those that follow with the same targets, and returns
// how many items it took. The items' frame references move to the job.
func (l *loop) startJob(items []item) int {
	j := &l.job
	first := &items[0]
	j.active, j.kind, j.topic, j.heartbeat, j.next = true, first.kind, first.topic, false, 0
	j.started = time.Now()
	n := 0
	for n < len(items) && n < maxJobFrames {
		it := &items[n]
		if it.kind != first.kind || (it.kind == kindPublish && it.topic != first.topic) {
			break
		}
		j.frames = append(j.frames, it.frame)
		it.frame = nil
		n++
	}
	l.snapshot()
	return n
}

// startHeartbeat starts a job writing the heartbeat frame to every session.
func (l *loop) startHeartbeat() {
	j := &l.job
	j.active, j.kind, j.topic, j.heartbeat, j.next = true, kindTick, "", true, 0
	j.started = time.Now()
	j.frames = append(j.frames, l.srv.heartbeat) // static: release is a no-op
	l.snapshot()
}

// snapshot fills the job's targets and marks them.
func (l *loop) snapshot() {
	j := &l.job
	var from []*session
	switch j.kind {
	case kindPublish:
		if t := l.topics[j.topic]; t != nil {
			from = t.members
		}
	default:
		from = l.sessions
	}
	targets := j.targets[:0]
	for _, s := range from {
		if !s.closed {
			s.fanPending = true
			targets = append(targets, s)
		}
	}
	j.targets = targets
}

// runJob serves up to budget recipients of the active job and flushes
// them. It returns how many it served and ends the job when all are.
func (l *loop) runJob(budget int) int {
	j := &l.job
	served := 0
	start := time.Now()
	for j.next < len(j.targets) && served < budget {
		s := j.targets[j.next]
		j.next++
		if !s.fanPending {
			continue // served ahead of its turn by a unicast or kick
		}
		l.serveJob(s)
		served++
		if served%16 == 0 {
			// Flush what is staged so the time spent is the writes',
			// then see whether the turn is over.
			l.flushAll()
			if time.Since(start) >= turnTime {
				break
			}
		}
	}
	l.flushAll()
	if j.next == len(j.targets) {
		l.endJob()
	}
	return served
}

// serveJob stages the job's frames for s and clears its mark.
func (l *loop) serveJob(s *session) {
	s.fanPending = false
	for _, f := range l.job.frames {
		l.stage(s, f, l.job.heartbeat)
	}
}

// deliverPending serves s its share of the running job, if it still waits
// for one: called before anything queued later is written to s.
func (l *loop) deliverPending(s *session) {
	if s.fanPending && l.job.active {
		l.serveJob(s)
	}
}

// endJob records the job's figures and releases its frames.
func (l *loop) endJob() {
	j := &l.job
	if !j.heartbeat {
		d := time.Since(j.started)
		l.tally.fanouts += uint64(len(j.frames))
		l.tally.fanoutRecipients += uint64(len(j.targets) * len(j.frames))
		l.tally.fanoutNanos += uint64(d)
		l.tally.fanoutMaxNanos = max(l.tally.fanoutMaxNanos, uint64(d))
		l.tally.fanoutMaxSize = max(l.tally.fanoutMaxSize, uint64(len(j.targets)))
	}
	for _, f := range j.frames {
		f.release()
	}
	for _, s := range j.targets[j.next:] {
		s.fanPending = false // only if the job was cut short (stop)
	}
	clear(j.frames)
	clear(j.targets)
	j.frames, j.targets = j.frames[:0], j.targets[:0]
	j.active = false
	j.topic = ""
}
