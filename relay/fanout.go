package relay

import "time"

// Fanout in slices. A broadcast to many connections keeps a loop busy for
// as long as its writes take; a unicast queued behind it would wait that
// long (figures: docs/architecture.md, Fanout in slices). So
// a loop serves fanouts as jobs, sliceTargets recipients per turn, and
// between turns goes back to gnet (other sockets' events) and to its
// mailbox, whose items are handled at once.
//
// A fanout item taken from the mailbox becomes a job right away, even while
// others run: it snapshots its targets and marks each with its job slot's
// bit (fanPending). Jobs are served oldest first, one at a time. A unicast
// or kick for a marked session first writes it every pending job's frames,
// oldest job first, then its own; the jobs skip sessions served that way.
// So nothing queued after a fanout waits for it, and each client still gets
// everything in mailbox order. Only when every slot is taken does a fanout
// item wait for the oldest job to end, and everything after it with it.
//
// Consecutive fanout items with the same targets (broadcasts, or publishes
// to one topic) join one job, so a burst reaches each client as one writev:
// items taken together, and later items too, as long as the newest job has
// not written to anyone yet and no membership changed since its snapshot.

// A job's turn ends after sliceTargets recipients or turnTime, whichever
// comes first: the bound on a unicast's wait behind a fanout. Time, not
// only count, because what a write costs varies severalfold with the host
// and the loops' share of the cores (docs/architecture.md, Fanout in
// slices).
const (
	sliceTargets = 256
	turnTime     = 500 * time.Microsecond
)

// maxJobFrames bounds the frames merged into one job.
const maxJobFrames = 64

// maxJobs is how many jobs a loop holds at once: one bit of
// session.fanPending each.
const maxJobs = 8

// jobMask is a set of job slots, one bit per slot.
type jobMask uint8

// jobRing holds a loop's fanouts, oldest first. Owned by the loop.
type jobRing struct {
	ring  [maxJobs]fanoutJob
	head  int    // slot of the oldest job
	n     int    // jobs under way
	epoch uint64 // bumped when the sessions or topic members may change
}

// fanoutJob is one fanout of a loop, running or queued. Owned by the loop.
type fanoutJob struct {
	kind      itemKind // kindBroadcast, kindPublish or kindTick (heartbeat)
	heartbeat bool
	touched   bool   // some target was served: frames may no longer join
	epoch     uint64 // jobRing.epoch at the snapshot
	topic     string
	frames    []*Frame   // one reference each, released when the job ends
	targets   []*session // snapshot at start; buffer reused by the slot
	next      int
	started   time.Time // when it became the oldest job
}

// isFanout reports whether an item is handled as a job.
func isFanout(k itemKind) bool { return k == kindBroadcast || k == kindPublish }

// slot returns the slot of the k-th oldest job.
func (l *loop) slot(k int) int { return (l.jobs.head + k) % maxJobs }

// sameTargets reports whether it goes to the same sessions as a fanout of
// kind to topic.
func sameTargets(it *item, kind itemKind, topic string) bool {
	return it.kind == kind && (kind != kindPublish || it.topic == topic)
}

// addFanout turns the fanout items at the head of items (at least one)
// into a job, or adds them to the newest job when that has the same
// targets and is untouched, and returns how many items it took: consecutive
// ones with the same targets. The items' frame references move to the job.
// It returns 0 when every job slot is taken.
func (l *loop) addFanout(items []item) int {
	first := &items[0]
	if l.jobs.n > 0 {
		j := &l.jobs.ring[l.slot(l.jobs.n-1)]
		if !j.touched && !j.heartbeat && j.epoch == l.jobs.epoch && len(j.frames) < maxJobFrames && sameTargets(first, j.kind, j.topic) {
			return l.takeFrames(j, items)
		}
	}
	if l.jobs.n == maxJobs {
		return 0
	}
	j := l.newJob(first.kind, first.topic)
	return l.takeFrames(j, items)
}

// takeFrames moves the frames of the items at the head of items that go to
// j's targets into j, up to maxJobFrames, and returns how many it took.
func (l *loop) takeFrames(j *fanoutJob, items []item) int {
	n := 0
	for n < len(items) && len(j.frames) < maxJobFrames && sameTargets(&items[n], j.kind, j.topic) {
		it := &items[n]
		j.frames = append(j.frames, it.frame)
		*it = item{}
		n++
	}
	return n
}

// newJob takes the next free slot (the caller checked there is one) for a
// job of kind to topic, and snapshots and marks its targets.
func (l *loop) newJob(kind itemKind, topic string) *fanoutJob {
	slot := l.slot(l.jobs.n)
	l.jobs.n++
	j := &l.jobs.ring[slot]
	j.kind, j.topic, j.heartbeat, j.touched, j.next, j.epoch = kind, topic, false, false, 0, l.jobs.epoch
	if l.jobs.n == 1 {
		j.started = time.Now()
	}
	var from []*session
	switch kind {
	case kindPublish:
		if t := l.topics[topic]; t != nil {
			from = t.members
		}
	default:
		from = l.sessions
	}
	bit := jobMask(1) << slot
	targets := j.targets[:0]
	for _, s := range from {
		if !s.closed {
			s.fanPending |= bit
			targets = append(targets, s)
		}
	}
	j.targets = targets
	return j
}

// startHeartbeat starts a job writing the heartbeat frame to every session.
// The caller checked that no job is under way.
func (l *loop) startHeartbeat() {
	j := l.newJob(kindTick, "")
	j.heartbeat = true
	j.frames = append(j.frames, l.srv.heartbeat) // static: release is a no-op
}

// runJob serves up to budget recipients of the oldest job and flushes
// them, stopping early once turnTime has passed since start. It returns
// how many it served and whether the job ended.
func (l *loop) runJob(budget int, start time.Time) (served int, ended bool) {
	slot := l.jobs.head
	j := &l.jobs.ring[slot]
	bit := jobMask(1) << slot
	for j.next < len(j.targets) && served < budget {
		s := j.targets[j.next]
		j.next++
		if s.fanPending&bit == 0 {
			continue // served ahead of its turn by a unicast or kick
		}
		l.serveJob(s, j, bit)
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
	if j.next < len(j.targets) {
		return served, false
	}
	l.endJob()
	return served, true
}

// serveJob stages j's frames for s and clears its mark.
func (l *loop) serveJob(s *session, j *fanoutJob, bit jobMask) {
	s.fanPending &^= bit
	j.touched = true
	for _, f := range j.frames {
		l.stage(s, f, j.heartbeat) // each target's bytes for its transport
	}
}

// deliverPending serves s its share of every job it still waits for,
// oldest first: called before anything queued later is written to s.
func (l *loop) deliverPending(s *session) {
	if s.fanPending == 0 {
		return
	}
	for k := 0; k < l.jobs.n && s.fanPending != 0; k++ {
		slot := l.slot(k)
		if bit := jobMask(1) << slot; s.fanPending&bit != 0 {
			l.serveJob(s, &l.jobs.ring[slot], bit)
		}
	}
}

// endJob records the oldest job's figures, releases its frames and frees
// its slot. Staged bytes point into the frames: flush before.
func (l *loop) endJob() {
	slot := l.jobs.head
	j := &l.jobs.ring[slot]
	now := time.Now()
	if !j.heartbeat {
		d := now.Sub(j.started)
		l.tally.fanouts += uint64(len(j.frames))
		l.tally.fanoutRecipients += uint64(len(j.targets) * len(j.frames))
		l.tally.fanoutNanos += uint64(d)
		l.tally.fanoutMaxNanos = max(l.tally.fanoutMaxNanos, uint64(d))
		l.tally.fanoutMaxSize = max(l.tally.fanoutMaxSize, uint64(len(j.targets)))
	}
	for _, f := range j.frames {
		f.release()
	}
	bit := jobMask(1) << slot
	for _, s := range j.targets[j.next:] {
		s.fanPending &^= bit // only if the job was cut short (stop)
	}
	clear(j.frames)
	clear(j.targets)
	j.frames, j.targets = j.frames[:0], j.targets[:0]
	j.topic = ""
	l.jobs.head = (l.jobs.head + 1) % maxJobs
	l.jobs.n--
	if l.jobs.n > 0 {
		l.jobs.ring[l.jobs.head].started = now
	}
}

// endAllJobs ends every job without serving the rest (the loop stopped).
func (l *loop) endAllJobs() {
	for l.jobs.n > 0 {
		l.endJob()
	}
}
