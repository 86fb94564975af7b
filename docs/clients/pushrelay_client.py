#!/usr/bin/env python3
"""A client of pushrelay's ingress socket, in one file.

Copy this file into your project: Python 3.8 or later, standard library only.
The protocol is docs/protocol.md, "The ingress protocol (web app -> relay)".

    from pushrelay_client import Client, PushRelayError

    relay = Client("/run/pushrelay/pushrelay.sock")
    counts = relay.send("q7PmX2cT9bLk4VwZ0sRgYA", b"hello")   # Counts(queued=1, unknown=0, ...)
    relay.subscribe("q7PmX2cT9bLk4VwZ0sRgYA", ["news"])
    relay.publish("news", "headline")                          # str is sent as UTF-8
    ids, cursor, count = relay.presence("news")                # a page of subscribers
    try:
        relay.send("q7PmX2cT9bLk4VwZ0sRgYA", b"x" * 100_000)
    except PushRelayError as e:
        print(e.status, e.message)                             # too_large send: payload too large: ...

    # Pipelining: write many requests at once, then read every reply.
    p = relay.pipeline()
    for user_id in ids:
        p.send(user_id, b"tick")
    results = p.execute()                                      # one Counts per request

    # Connect and disconnect events, on a connection of their own.
    for event in Client(path).watch():
        print(event.kind, event.id, event.reason)

A Client holds one connection, opened on first use and opened again after it
breaks. It is safe to share between threads (calls take turns on the
connection; use a pipeline for throughput), but a watch blocks its Client:
give it one of its own.

Command line: python3 pushrelay_client.py SOCKET COMMAND [ARGS...]; run it
without arguments for the commands.
"""

import collections
import json
import os
import socket
import struct
import sys
import threading

__all__ = [
    "Client", "Pipeline", "Watch", "PushRelayError", "ConnectionLost",
    "Counts", "Info", "Stat", "Event", "STATUS_NAMES",
]

# Operations: a request's kind byte.
OP_SEND = 0x01
OP_SEND_MANY = 0x02
OP_PUBLISH = 0x03
OP_BROADCAST = 0x04
OP_SUBSCRIBE = 0x05
OP_UNSUBSCRIBE = 0x06
OP_KICK = 0x07
OP_INFO = 0x08
OP_LIST = 0x09
OP_STATS = 0x0A
OP_WATCH = 0x0B
OP_PING = 0x0C
OP_PRESENCE = 0x0D

OP_NAMES = {
    OP_SEND: "send", OP_SEND_MANY: "send_many", OP_PUBLISH: "publish",
    OP_BROADCAST: "broadcast", OP_SUBSCRIBE: "subscribe",
    OP_UNSUBSCRIBE: "unsubscribe", OP_KICK: "kick", OP_INFO: "info",
    OP_LIST: "list", OP_STATS: "stats", OP_WATCH: "watch", OP_PING: "ping",
    OP_PRESENCE: "presence",
}

REPLY_BIT = 0x80    # a reply's kind is its request's operation | REPLY_BIT
KIND_EVENT = 0xC0   # an event of a watch
FLAG_NO_REPLY = 0x01

# A reply's flags byte; every status but ok carries a str16 message.
STATUS_NAMES = [
    "ok", "unknown_op", "bad_request", "too_large", "not_allowed", "limit",
    "unknown_id", "overloaded", "shutting_down", "unavailable",
]

EVENT_NAMES = {1: "connect", 2: "disconnect", 3: "lost"}

HEADER = struct.Struct(">IBBI")   # length, kind, flags, request ID
HEADER_LEN = HEADER.size          # 10

class Counts(collections.namedtuple("Counts", "queued unknown dropped overloaded unsupported unreachable", defaults=(0, 0))):
    """What became of a push's recipients, each counted once. The names are
    the HTTP API's (docs/http.md): queued, unknown (no such client
    connected), dropped (over its outbound cap), overloaded (its loop's
    queue was full), unsupported (its transport cannot carry the payload;
    0 from relays older than that count) and unreachable (relay cluster:
    nodes that did not answer in time)."""

    __slots__ = ()

    # The names of earlier versions of this client.
    unknown_id = property(lambda self: self.unknown)
    dropped_slow = property(lambda self: self.dropped)

    def to_json(self):
        """The counts as the HTTP API's JSON object: the first five always,
        unreachable (a cluster's) when not zero."""
        d = {"queued": self.queued, "unknown": self.unknown, "dropped": self.dropped, "overloaded": self.overloaded,
             "unsupported": self.unsupported}
        if self.unreachable:
            d["unreachable"] = self.unreachable
        return d

Info = collections.namedtuple("Info", "connected since_ns remote")
Info.__doc__ = "Whether a client is connected, since when (Unix ns) and from where."
Stat = collections.namedtuple("Stat", "name labels value")
Stat.__doc__ = "One counter or gauge: a name, Prometheus labels (or ''), a float."
Event = collections.namedtuple("Event", "kind seq time_ns id remote reason lost")
Event.__doc__ = """A watch event. kind is 'connect', 'disconnect' or 'lost'.

For 'lost', seq is the next event's sequence number and lost how many were
missed; id, remote and reason are '' and time_ns 0. reason is set for
'disconnect' only."""


class PushRelayError(Exception):
    """The relay answered with an error status.

    status is the status's name ('too_large'), code its number (3), message
    the relay's sentence, op the operation's name, request the request ID (0
    for a connection error, after which the relay closed the connection).
    """

    def __init__(self, op, code, message, request=0):
        self.op = op
        self.code = code
        self.status = STATUS_NAMES[code] if code < len(STATUS_NAMES) else "status(%d)" % code
        self.message = message
        self.request = request
        super().__init__("%s: %s" % (self.status, message))


class ConnectionLost(ConnectionError):
    """The connection broke. Requests without a reply may or may not have
    been carried out; the next call connects again."""


# Encoding.

def _bytes(data):
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)


def _str8(s):
    b = _bytes(s)
    if len(b) > 255:
        raise ValueError("%r is %d bytes; IDs, topics and cursors are at most 255" % (s, len(b)))
    return bytes((len(b),)) + b


def _names(items, what):
    if isinstance(items, (str, bytes)):
        items = [items]
    items = list(items)
    if len(items) > 0xFFFF:
        raise ValueError("%d %s; one request carries at most 65535" % (len(items), what))
    return struct.pack(">H", len(items)) + b"".join(_str8(i) for i in items)


# Decoding: each takes an ok reply's body.

class _Reader:
    def __init__(self, body):
        self.b = body
        self.i = 0

    def take(self, n):
        if self.i + n > len(self.b):
            raise ConnectionLost("malformed reply from the relay: body ends early")
        v = self.b[self.i:self.i + n]
        self.i += n
        return v

    def u8(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack(">H", self.take(2))[0]

    def u32(self):
        return struct.unpack(">I", self.take(4))[0]

    def u64(self):
        return struct.unpack(">Q", self.take(8))[0]

    def i64(self):
        return struct.unpack(">q", self.take(8))[0]

    def f64(self):
        return struct.unpack(">d", self.take(8))[0]

    def str8(self):
        return self.take(self.u8()).decode("utf-8", "replace")

    def str16(self):
        return self.take(self.u16()).decode("utf-8", "replace")


def _counts(body):
    # Four u32, then unsupported and unreachable when the body holds them
    # (older relays send four).
    n = min(len(body) // 4, 6)
    return Counts(*struct.unpack(">" + "I" * n, body[:4 * n]))


def _u32(body):
    return _Reader(body).u32()


def _empty(body):
    return None


def _echo(body):
    return body


def _info(body):
    r = _Reader(body)
    return Info(r.u8() == 1, r.i64(), r.str8())


def _list(body):
    r = _Reader(body)
    cursor = r.str8()
    ids = [r.str8() for _ in range(r.u16())]
    return ids, cursor


def _presence(body):
    r = _Reader(body)
    count = r.u32()
    cursor = r.str8()
    ids = [r.str8() for _ in range(r.u16())]
    return ids, cursor, count


def _stats(body):
    r = _Reader(body)
    return [Stat(r.str8(), r.str8(), r.f64()) for _ in range(r.u16())]


def _watch(body):
    r = _Reader(body)
    return r.str8(), r.u64()


def _event(kind, body):
    r = _Reader(body)
    name = EVENT_NAMES.get(kind, "event(%d)" % kind)
    if kind == 3:
        return Event(name, r.u64(), 0, "", "", "", r.u64())
    seq, time_ns, cid, remote = r.u64(), r.i64(), r.str8(), r.str8()
    reason = r.str8() if kind == 2 else ""
    return Event(name, seq, time_ns, cid, remote, reason, 0)


class _Operations:
    """The operations, shared by Client (which waits for each reply) and
    Pipeline (which queues them). _call does the rest."""

    def send(self, id, payload, no_reply=False):
        """Push payload (bytes, or str as UTF-8) to one client. Returns Counts."""
        return self._call(OP_SEND, _str8(id) + _bytes(payload), _counts, no_reply)

    def send_many(self, ids, payload, no_reply=False):
        """Push one payload to each of ids. Returns Counts."""
        return self._call(OP_SEND_MANY, _names(ids, "IDs") + _bytes(payload), _counts, no_reply)

    def publish(self, topic, payload, no_reply=False):
        """Push payload to every client subscribed to topic. Returns Counts."""
        return self._call(OP_PUBLISH, _str8(topic) + _bytes(payload), _counts, no_reply)

    def broadcast(self, payload, no_reply=False):
        """Push payload to every connected client. Returns Counts."""
        return self._call(OP_BROADCAST, _bytes(payload), _counts, no_reply)

    def subscribe(self, id, topics, no_reply=False):
        """Add client id to topics (a list, or one str). Returns how many
        subscriptions were added."""
        return self._call(OP_SUBSCRIBE, _str8(id) + _names(topics, "topics"), _u32, no_reply)

    def unsubscribe(self, id, topics, no_reply=False):
        """Remove client id from topics. Returns how many were removed."""
        return self._call(OP_UNSUBSCRIBE, _str8(id) + _names(topics, "topics"), _u32, no_reply)

    def kick(self, id, no_reply=False):
        """Close client id's connection after what was queued for it.
        Raises PushRelayError (unknown_id) if it is not connected."""
        return self._call(OP_KICK, _str8(id), _empty, no_reply)

    def info(self, id):
        """Returns Info(connected, since_ns, remote); since_ns 0 and remote ''
        when the client is not connected."""
        return self._call(OP_INFO, _str8(id), _info, False)

    def list(self, cursor="", limit=0):
        """Returns (ids, next_cursor): up to limit connected IDs (0: the most,
        10,000) after cursor. next_cursor is '' after the last page."""
        return self._call(OP_LIST, _str8(cursor) + struct.pack(">H", min(max(limit, 0), 0xFFFF)), _list, False)

    def presence(self, topic, cursor="", limit=0):
        """Returns (ids, next_cursor, count): up to limit IDs (0: the most,
        10,000) of the clients subscribed to topic, after cursor, in
        ascending order; next_cursor is '' after the last page; count is
        the topic's subscriber count (a relay cluster's: every node's)."""
        return self._call(OP_PRESENCE, _str8(topic) + _str8(cursor) + struct.pack(">H", min(max(limit, 0), 0xFFFF)), _presence, False)

    def stats(self):
        """Returns every counter and gauge of the relay, as a list of Stat."""
        return self._call(OP_STATS, b"", _stats, False)

    def ping(self, data=b""):
        """Round-trips data; returns the relay's echo."""
        return self._call(OP_PING, _bytes(data), _echo, False)


class Client(_Operations):
    """One connection to the relay's ingress socket at path.

    timeout bounds each wait for a reply, in seconds (None: forever).
    on_error(err) receives the PushRelayError of a failed no-reply request;
    without it such errors are kept in no_reply_errors (the latest 1000).
    """

    def __init__(self, path, timeout=10.0, on_error=None):
        self.path = path
        self.timeout = timeout
        self.on_error = on_error
        self.no_reply_errors = collections.deque(maxlen=1000)
        self._lock = threading.RLock()
        self._sock = None
        self._buf = bytearray()
        self._next = 0
        self._expect = {}      # request ID -> op, for replies not yet read
        self._replies = {}     # request ID -> (op, status, body), read, not yet claimed
        self._watches = {}     # request ID -> deque of (kind, body)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Close the connection; the next call opens a new one."""
        with self._lock:
            self._drop()

    def connect(self):
        """Connect now rather than on the first request."""
        with self._lock:
            self._ensure()
        return self

    def list_all(self, page=1000):
        """Yields every connected ID, asking for page IDs at a time. An ID
        connected for the whole listing is yielded exactly once."""
        cursor = ""
        while True:
            ids, cursor = self.list(cursor, page)
            yield from ids
            if not cursor:
                return

    def presence_all(self, topic, page=1000):
        """Yields every ID subscribed to topic, asking for page IDs at a time."""
        cursor = ""
        while True:
            ids, cursor, _ = self.presence(topic, cursor, page)
            yield from ids
            if not cursor:
                return

    def pipeline(self):
        """A batch of requests written together; see Pipeline."""
        return Pipeline(self)

    def watch(self, from_seq=0):
        """Start streaming connect and disconnect events from sequence number
        from_seq on (0: only new ones). Returns a Watch: iterate it."""
        with self._lock:
            req = self._write([(OP_WATCH, 0, struct.pack(">Q", from_seq))])[0]
            self._watches[req] = collections.deque()
            try:
                op, status, body = self._wait(req)
            except BaseException:
                self._watches.pop(req, None)
                raise
            if status != 0:
                self._watches.pop(req, None)
                raise PushRelayError("watch", status, _Reader(body).str16(), req)
            instance, last = _watch(body)
            return Watch(self, req, instance, last)

    # Internals. Every one runs with self._lock held.

    def _call(self, op, body, decode, no_reply):
        with self._lock:
            req = self._write([(op, FLAG_NO_REPLY if no_reply else 0, body)])[0]
            if no_reply:
                return None
            return _result(*self._wait(req), decode, req)

    def _ensure(self):
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(self.timeout)
            try:
                s.connect(self.path)
            except OSError:
                s.close()
                raise
            self._sock = s
        return self._sock

    def _drop(self):
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._buf = bytearray()
        self._expect.clear()
        self._replies.clear()
        self._watches.clear()

    def _new_id(self):
        self._next = self._next % 0xFFFFFFFF + 1   # 1 to 2^32-1: 0 is the relay's
        return self._next

    def _write(self, reqs, background=False):
        """Write requests [(op, flags, body)] as one write; returns their IDs.
        With background, the write runs on a thread while the caller reads
        replies (a long pipeline would otherwise fill both socket buffers);
        the thread is returned too."""
        sock = self._ensure()
        ids, frames = [], []
        for op, flags, body in reqs:
            req = self._new_id()
            ids.append(req)
            if not flags & FLAG_NO_REPLY or op == OP_WATCH:
                self._expect[req] = op
            frames.append(HEADER.pack(6 + len(body), op, flags, req))
            frames.append(body)
        data = b"".join(frames)
        if not background:
            try:
                sock.sendall(data)
            except OSError as e:
                self._write_failed(e)
            return ids
        box = []

        def run():
            try:
                sock.sendall(data)
            except OSError as e:
                box.append(e)
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return ids, t, box

    def _write_failed(self, err):
        # The relay may have closed the connection after telling us why
        # (request ID 0): read that before giving up.
        try:
            self._sock.settimeout(0.2)
            while True:
                self._read_frame()
        except PushRelayError:
            raise
        except (OSError, ConnectionLost):
            pass
        self._drop()
        raise ConnectionLost("write to the relay failed: %s" % err) from err

    def _fill(self, n):
        """Read until n bytes are buffered. A timeout leaves the buffer whole,
        so reading may resume."""
        while len(self._buf) < n:
            try:
                chunk = self._sock.recv(max(65536, n - len(self._buf)))
            except socket.timeout:
                raise
            except OSError as e:
                self._drop()
                raise ConnectionLost("connection to the relay lost: %s" % e) from e
            if not chunk:
                self._drop()
                raise ConnectionLost("the relay closed the connection")
            self._buf += chunk

    def _read_frame(self):
        """Read one frame and file it: a reply, an event, or an error."""
        if self._sock is None:
            raise ConnectionLost("not connected")
        self._fill(HEADER_LEN)
        length, kind, flags, req = HEADER.unpack_from(self._buf)
        if length < 6:
            self._drop()
            raise ConnectionLost("malformed frame from the relay")
        self._fill(4 + length)
        body = bytes(self._buf[HEADER_LEN:4 + length])
        del self._buf[:4 + length]
        if kind == KIND_EVENT:
            q = self._watches.get(req)
            if q is not None:
                q.append((flags, body))
            return
        op = OP_NAMES.get(kind & ~REPLY_BIT, "op(0x%02x)" % (kind & ~REPLY_BIT))
        if req == 0 and flags != 0:
            # A connection error: the relay closes the connection.
            self._drop()
            raise PushRelayError(op, flags, _Reader(body).str16(), 0)
        if self._expect.pop(req, None) is not None:
            self._replies[req] = (op, flags, body)
        elif flags != 0:
            err = PushRelayError(op, flags, _Reader(body).str16(), req)
            if self.on_error is not None:
                self.on_error(err)
            else:
                self.no_reply_errors.append(err)

    def _wait(self, req):
        """Read frames until the reply to req has come; returns it."""
        try:
            while req not in self._replies:
                self._read_frame()
        except socket.timeout:
            # The reply may still come; the connection's state is unknown.
            self._drop()
            raise
        return self._replies.pop(req)


def _result(op, status, body, decode, req):
    if status != 0:
        raise PushRelayError(op, status, _Reader(body).str16(), req)
    return decode(body)


class Pipeline(_Operations):
    """Requests queued by the operation methods (which return None here),
    then written in one go by execute(), which reads every reply.

        p = client.pipeline()
        p.send(a, b"x"); p.publish("news", b"y", no_reply=True)
        counts_a, _ = p.execute()
    """

    def __init__(self, client):
        self._client = client
        self._reqs = []       # (op, flags, body)
        self._decoders = []

    def __len__(self):
        return len(self._reqs)

    def _call(self, op, body, decode, no_reply):
        self._reqs.append((op, FLAG_NO_REPLY if no_reply else 0, body))
        self._decoders.append(decode)

    def execute(self, raise_on_error=True):
        """Write the queued requests and read their replies. Returns one
        result per request, in order: the decoded reply, None for a
        successful no-reply request, or the PushRelayError of a failed one
        (raised instead, the first of them, when raise_on_error, after every
        reply has been read). No-reply requests are followed by a ping: when
        its reply arrives, every error they caused has arrived before it."""
        reqs, decoders = self._reqs, self._decoders
        self._reqs, self._decoders = [], []
        if not reqs:
            return []
        quiet = any(flags & FLAG_NO_REPLY for _, flags, _ in reqs)
        if quiet:
            reqs = reqs + [(OP_PING, 0, b"")]
        c = self._client
        with c._lock:
            caught = []
            saved = c.on_error
            c.on_error = caught.append
            try:
                size = sum(len(b) for _, _, b in reqs)
                if size > 64 << 10:
                    ids, thread, failed = c._write(reqs, background=True)
                else:
                    ids, thread, failed = c._write(reqs), None, []
                replies = {}
                try:
                    for req, (op, flags, _) in zip(ids, reqs):
                        if not flags & FLAG_NO_REPLY:
                            replies[req] = c._wait(req)
                except ConnectionLost as e:
                    if failed:
                        raise ConnectionLost("write to the relay failed: %s" % failed[0]) from e
                    raise
                finally:
                    if thread is not None:
                        thread.join()
            finally:
                c.on_error = saved
        mine = set(ids)
        errors = {}
        for e in caught:
            if e.request in mine:
                errors[e.request] = e
            elif saved is not None:
                saved(e)
            else:
                c.no_reply_errors.append(e)
        results = []
        for req, (op, flags, _), decode in zip(ids, reqs, decoders):
            if req in replies:
                try:
                    results.append(_result(*replies[req], decode, req))
                except PushRelayError as e:
                    results.append(e)
            else:
                results.append(errors.get(req))
        if raise_on_error:
            for r in results:
                if isinstance(r, PushRelayError):
                    raise r
        return results


class Watch:
    """A stream of connect and disconnect events; iterate it for Event
    values. instance is the relay process's random ID: if it differs from
    the one an earlier watch saw, the relay restarted (every client has a new
    ID and sequence numbers started over). last is the latest event's
    sequence number when the watch began.

    Iteration waits for events for as long as it takes (idle_timeout None)
    and ends with ConnectionLost when the connection breaks. To resume, watch
    again from the last seq seen plus one."""

    def __init__(self, client, req, instance, last, idle_timeout=None):
        self.client = client
        self.request = req
        self.instance = instance
        self.last = last
        self.idle_timeout = idle_timeout

    def __iter__(self):
        return self

    def __next__(self):
        c = self.client
        with c._lock:
            while True:
                q = c._watches.get(self.request)
                if q is None:
                    raise ConnectionLost("the watch's connection closed")
                if q:
                    kind, body = q.popleft()
                    return _event(kind, body)
                if c._sock is None:
                    raise ConnectionLost("the watch's connection closed")
                c._sock.settimeout(self.idle_timeout)
                try:
                    c._read_frame()
                finally:
                    if c._sock is not None:
                        c._sock.settimeout(c.timeout)


# The command line.

USAGE = """usage: pushrelay_client.py SOCKET COMMAND [ARGS...]

commands:
  send ID MESSAGE              push MESSAGE to one client
  send-many MESSAGE ID...      push MESSAGE to each ID
  publish TOPIC MESSAGE        push MESSAGE to TOPIC's subscribers
  broadcast MESSAGE            push MESSAGE to every client
  subscribe ID TOPIC...        add client ID to topics
  unsubscribe ID TOPIC...      remove client ID from topics
  kick ID                      disconnect client ID
  info ID                      is ID connected, since when, from where
  list                         every connected ID, one a line
  presence TOPIC               every ID subscribed to TOPIC, one a line
  stats                        every counter and gauge
  watch [FROM]                 print connect and disconnect events
  ping                         check the relay answers

Results are printed as JSON; a push prints its counts with the HTTP API's
names (queued, unknown, dropped, overloaded, unsupported; unreachable
when not zero). Exit status, the same for every pushrelay client
(docs/clients/README.md): 0 done, 1 the relay refused (the reason is
printed; also a send whose one recipient was not queued), 2 usage, 3 no
relay answered on SOCKET, 4 no such client is connected (send, kick, info,
subscribe, unsubscribe of an unknown ID)."""

# Exit statuses: the same in every pushrelay client command line.
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_NO_RELAY, EXIT_UNKNOWN_ID = 0, 1, 2, 3, 4


def main(argv):
    if len(argv) < 2:
        print(USAGE, file=sys.stderr)
        return EXIT_USAGE
    path, cmd, args = argv[0], argv[1], argv[2:]
    arity = {
        "send": (2, 2), "send-many": (2, None), "publish": (2, 2), "broadcast": (1, 1),
        "subscribe": (2, None), "unsubscribe": (2, None), "kick": (1, 1), "info": (1, 1),
        "list": (0, 0), "presence": (1, 1), "stats": (0, 0), "watch": (0, 1), "ping": (0, 0),
    }
    if cmd not in arity or len(args) < arity[cmd][0] or (arity[cmd][1] is not None and len(args) > arity[cmd][1]):
        print(USAGE, file=sys.stderr)
        return EXIT_USAGE

    def out(v):
        print(json.dumps(v, separators=(",", ":")), flush=True)

    def fail(code, msg):
        print("pushrelay %s: %s" % (cmd, msg), file=sys.stderr)
        return code

    c = Client(path)
    try:
        if cmd == "send":
            counts = c.send(args[0], args[1])
            out(counts.to_json())
            if counts.unknown:
                return fail(EXIT_UNKNOWN_ID, "unknown client ID %s: no such client is connected" % args[0])
            if not counts.queued:
                return fail(EXIT_REFUSED, "not queued for client %s: %s" % (args[0], json.dumps(counts.to_json())))
        elif cmd == "send-many":
            out(c.send_many(args[1:], args[0]).to_json())
        elif cmd == "publish":
            out(c.publish(args[0], args[1]).to_json())
        elif cmd == "broadcast":
            out(c.broadcast(args[0]).to_json())
        elif cmd == "subscribe":
            out({"added": c.subscribe(args[0], args[1:])})
        elif cmd == "unsubscribe":
            out({"removed": c.unsubscribe(args[0], args[1:])})
        elif cmd == "kick":
            c.kick(args[0])
            out({"kicked": args[0]})
        elif cmd == "info":
            info = c.info(args[0])
            out(info._asdict())
            if not info.connected:
                return fail(EXIT_UNKNOWN_ID, "%s is not connected" % args[0])
        elif cmd == "list":
            for i in c.list_all(10000):
                print(i)
        elif cmd == "presence":
            for i in c.presence_all(args[0], 10000):
                print(i)
        elif cmd == "stats":
            for s in c.stats():
                out(s._asdict())
        elif cmd == "watch":
            w = c.watch(int(args[0]) if args else 0)
            out({"instance": w.instance, "last": w.last})
            for ev in w:
                out(ev._asdict())
        elif cmd == "ping":
            c.ping()
            out({"ok": True})
        sys.stdout.flush()
    except BrokenPipeError:
        # Whoever reads our output stopped (| head): not an error. Point
        # stdout at /dev/null so the interpreter's last flush stays quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except PushRelayError as e:
        return fail(EXIT_UNKNOWN_ID if e.status == "unknown_id" else EXIT_REFUSED, e)
    except ValueError as e:
        return fail(EXIT_USAGE, e)
    except (OSError, ConnectionLost) as e:
        return fail(EXIT_NO_RELAY, "no relay at %s: %s" % (path, e))
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        c.close()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
