package relay

// Lock order. Each mutex below guards one thing, and most code paths hold
// one at a time. The only nesting:
//
//  1. Server.enqueueAll holds the mailbox locks (loop.mu) of several loops
//     at once, taken in the order of Server.loops (an append-only list, so
//     the order is the same for every caller).
//
// Never held together with anything else: registry shard locks
// (registryShard.mu), topic index shard locks (topicShard.mu), the event
// log (EventLog.mu), Server.loopsMu, policyServer.mu. The event loops take
// none of the mailbox locks while they drain, except briefly to swap the
// mailbox out.
