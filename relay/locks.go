package relay

// Lock order: the one list. Other comments and docs/architecture.md point
// here; change it here when a lock is added or a path nests differently.
//
// A lock may be taken while holding only locks above it in this list, and
// no lock outlives the call that took it:
//
//  1. loop.own, one loop's at a time: held by the loop's goroutine for the
//     length of each gnet callback (loop.enterCallback, exitCallback), by
//     Server.Shutdown in loop.stop, and tried (TryLock, never waited for)
//     by a producer making a direct write (loop.writeDirect). Nothing
//     holds two loops' own at once, and nothing takes own while holding
//     any lock below.
//  2. Each of the following is a leaf: taken alone, or inside own, and
//     never while holding another one of them:
//     - loop.mu, the mailbox. Inside own: the mailbox pass swaps the
//     mailbox out and rings again (loop.serveMailbox), a direct write
//     checks that the mailbox is empty and hands its rest back
//     (loop.handBack), loop.stop. Alone: every producer's enqueue.
//     The one nesting among the leaves: Server.enqueueAll holds the
//     mailbox locks of several loops at once, taken in the order of
//     Server.loops (append-only, so the same order for every caller),
//     and never inside own.
//     - registryShard.mu (RWMutex). Inside own: the loop adds and removes
//     its clients (register, OnClose). Alone: lookups by ID, listing
//     (page) and counting.
//     - topicShard.mu. Inside own: the loop counts its clients'
//     subscriptions in and out (subscribe, leave). Alone: Publish,
//     Subscribers and Presence read the counts.
//     - EventLog.mu. Inside own: the loop appends connect and disconnect
//     events. Alone: watchers (Since, Last) and EventLog.Append. Watchers
//     are woken after the lock is released.
//  3. Never held with any other lock: Server.loopsMu (loopFor, in OnOpen
//     before the callback takes own) and policyServer.mu (the Flash
//     policy listener's set of open connections).
//
// Waiting is not locking, but it orders the same way: Server methods that
// wait for a loop's answer on a channel (Subscribe, Unsubscribe, Presence,
// Shutdown) must not be called inside a loop callback, which holds the
// own that answer needs. The loop itself only sends to buffered channels.
