#!/usr/bin/env node
// A client of pushrelay's ingress socket, in one file.
//
// Copy this file into your project: Node.js 12 or later, no packages. The
// protocol is docs/protocol.md, "The ingress protocol (web app -> relay)".
//
//   const { Client, PushRelayError } = require('./pushrelay_client');
//
//   const relay = new Client('/run/pushrelay/pushrelay.sock');
//   const counts = await relay.send('q7PmX2cT9bLk4VwZ0sRgYA', 'hello');  // { queued: 1, unknown: 0, ... }
//   await relay.subscribe('q7PmX2cT9bLk4VwZ0sRgYA', ['news']);
//   await relay.publish('news', Buffer.from('headline'));
//   const { ids, next, count } = await relay.presence('news');  // a page of subscribers
//   try {
//     await relay.send('q7PmX2cT9bLk4VwZ0sRgYA', 'x'.repeat(100000));
//   } catch (e) {
//     if (e instanceof PushRelayError) console.log(e.status, e.message);  // too_large ...
//   }
//
//   // Pipelining is the default: calls made together go out in one write,
//   // and each promise settles when its own reply arrives.
//   const all = await Promise.all(ids.map((id) => relay.send(id, 'tick')));
//
//   // Connect and disconnect events, on a connection of their own.
//   const watch = await new Client(path).watch();
//   for await (const ev of watch) console.log(ev.kind, ev.id, ev.reason);
//
// A Client holds one connection, opened on the first request and opened
// again after it breaks. Errors of no-reply requests are emitted as
// 'noReplyError' events on the Client (listen for them).
//
// Command line: node pushrelay_client.js SOCKET COMMAND [ARGS...]; run it
// without arguments for the commands.

'use strict';

const net = require('net');
const { EventEmitter } = require('events');

// Operations: a request's kind byte.
const OP = {
  send: 0x01, send_many: 0x02, publish: 0x03, broadcast: 0x04,
  subscribe: 0x05, unsubscribe: 0x06, kick: 0x07, info: 0x08,
  list: 0x09, stats: 0x0a, watch: 0x0b, ping: 0x0c, presence: 0x0d,
};
const OP_NAMES = Object.fromEntries(Object.entries(OP).map(([k, v]) => [v, k]));

const REPLY_BIT = 0x80; // a reply's kind is its request's operation | REPLY_BIT
const KIND_EVENT = 0xc0; // an event of a watch
const FLAG_NO_REPLY = 0x01;
const HEADER_LEN = 10; // u32 length, u8 kind, u8 flags, u32 request ID

// A reply's flags byte; every status but ok carries a str16 message.
const STATUS_NAMES = ['ok', 'unknown_op', 'bad_request', 'too_large', 'not_allowed', 'limit',
  'unknown_id', 'overloaded', 'shutting_down', 'unavailable'];
const EVENT_NAMES = { 1: 'connect', 2: 'disconnect', 3: 'lost' };

// The relay answered with an error status. status is its name ('too_large'),
// code its number (3), message the relay's sentence, op the operation's name,
// request the request ID (0 for a connection error, after which the relay
// closed the connection).
class PushRelayError extends Error {
  constructor(op, code, message, request) {
    const status = STATUS_NAMES[code] || `status(${code})`;
    super(`${status}: ${message}`);
    this.name = 'PushRelayError';
    this.op = op;
    this.code = code;
    this.status = status;
    this.relayMessage = message;
    this.request = request;
  }
}

// The connection broke. Requests without a reply may or may not have been
// carried out; the next call connects again.
class ConnectionLost extends Error {
  constructor(message) {
    super(message);
    this.name = 'ConnectionLost';
  }
}

// Encoding.

function bytes(data) {
  if (Buffer.isBuffer(data)) return data;
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('payload must be a string, Buffer or Uint8Array');
}

function str8(s) {
  const b = bytes(s);
  if (b.length > 255) throw new RangeError(`${JSON.stringify(String(s))} is ${b.length} bytes; IDs, topics and cursors are at most 255`);
  return Buffer.concat([Buffer.from([b.length]), b]);
}

function names(items, what) {
  if (typeof items === 'string') items = [items];
  if (items.length > 0xffff) throw new RangeError(`${items.length} ${what}; one request carries at most 65535`);
  const n = Buffer.alloc(2);
  n.writeUInt16BE(items.length);
  return Buffer.concat([n, ...items.map(str8)]);
}

function u16(n) {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(n);
  return b;
}

function u64(n) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

// Decoding: a cursor over an ok reply's body.
class Reader {
  constructor(body) {
    this.b = body;
    this.i = 0;
  }

  take(n) {
    if (this.i + n > this.b.length) throw new ConnectionLost('malformed reply from the relay: body ends early');
    const v = this.b.subarray(this.i, this.i + n);
    this.i += n;
    return v;
  }

  u8() { return this.take(1)[0]; }
  u16() { return this.take(2).readUInt16BE(0); }
  u32() { return this.take(4).readUInt32BE(0); }
  u64() { return this.take(8).readBigUInt64BE(0); }
  i64() { return this.take(8).readBigInt64BE(0); }
  f64() { return this.take(8).readDoubleBE(0); }
  str8() { return this.take(this.u8()).toString('utf8'); }
  str16() { return this.take(this.u16()).toString('utf8'); }
}

const decode = {
  // counts: four u32, then unsupported and unreachable when the body holds
  // them (older relays send four). The names are the HTTP API's.
  counts(body) {
    const r = new Reader(body);
    const c = { queued: r.u32(), unknown: r.u32(), dropped: r.u32(), overloaded: r.u32() };
    c.unsupported = body.length >= 20 ? r.u32() : 0;
    c.unreachable = body.length >= 24 ? r.u32() : 0;
    // The names of earlier versions of this client, kept out of JSON.
    Object.defineProperty(c, 'unknownId', { get() { return this.unknown; } });
    Object.defineProperty(c, 'droppedSlow', { get() { return this.dropped; } });
    return c;
  },
  presence(body) {
    const r = new Reader(body);
    const count = r.u32();
    const next = r.str8();
    const ids = [];
    for (let n = r.u16(); n > 0; n--) ids.push(r.str8());
    return { ids, next, count };
  },
  u32(body) { return new Reader(body).u32(); },
  empty() { return undefined; },
  echo(body) { return body; },
  info(body) {
    const r = new Reader(body);
    const connected = r.u8() === 1;
    const sinceNs = r.i64();
    return { connected, sinceNs, since: connected ? new Date(Number(sinceNs / 1000000n)) : null, remote: r.str8() };
  },
  list(body) {
    const r = new Reader(body);
    const next = r.str8();
    const ids = [];
    for (let n = r.u16(); n > 0; n--) ids.push(r.str8());
    return { ids, next };
  },
  stats(body) {
    const r = new Reader(body);
    const out = [];
    for (let n = r.u16(); n > 0; n--) out.push({ name: r.str8(), labels: r.str8(), value: r.f64() });
    return out;
  },
  watch(body) {
    const r = new Reader(body);
    return { instance: r.str8(), last: r.u64() };
  },
};

// decodeEvent turns an event frame into { kind, seq, timeNs, time, id,
// remote, reason } (connect, disconnect) or { kind: 'lost', seq, lost },
// where seq is the next event's sequence number and lost how many were
// missed. Sequence numbers and times are BigInt.
function decodeEvent(kind, body) {
  const r = new Reader(body);
  const name = EVENT_NAMES[kind] || `event(${kind})`;
  if (kind === 3) return { kind: name, seq: r.u64(), lost: r.u64() };
  const ev = { kind: name, seq: r.u64(), timeNs: r.i64() };
  ev.time = new Date(Number(ev.timeNs / 1000000n));
  ev.id = r.str8();
  ev.remote = r.str8();
  if (kind === 2) ev.reason = r.str8();
  return ev;
}

// Client is one connection to the relay's ingress socket at path.
// Options: timeout, how long each request waits for its reply in ms
// (default 10000; 0: forever).
class Client extends EventEmitter {
  constructor(path, { timeout = 10000 } = {}) {
    super();
    this.path = path;
    this.timeout = timeout;
    this._sock = null;
    this._connected = null; // a promise, settled when the socket connects
    this._next = 0;
    this._pending = new Map(); // request ID -> { op, resolve, reject, decode, timer }
    this._abandoned = new Set(); // request IDs whose caller stopped waiting
    this._watches = new Map(); // request ID -> Watch
    this._out = [];
    this._buf = Buffer.alloc(0);
  }

  // send pushes payload (string as UTF-8, or Buffer) to one client.
  // Resolves to counts { queued, unknown, dropped, overloaded, unsupported,
  // unreachable }, the HTTP API's names (countsJSON prints them as it does).
  // With { noReply: true } it resolves (to undefined) once written, and an
  // error comes as a 'noReplyError' event.
  send(id, payload, opts) { return this._call(OP.send, [str8(id), bytes(payload)], decode.counts, opts); }

  // sendMany pushes one payload to each of ids.
  sendMany(ids, payload, opts) { return this._call(OP.send_many, [names(ids, 'IDs'), bytes(payload)], decode.counts, opts); }

  // publish pushes payload to every client subscribed to topic.
  publish(topic, payload, opts) { return this._call(OP.publish, [str8(topic), bytes(payload)], decode.counts, opts); }

  // broadcast pushes payload to every connected client.
  broadcast(payload, opts) { return this._call(OP.broadcast, [bytes(payload)], decode.counts, opts); }

  // subscribe adds client id to topics (an array, or one string); resolves
  // to how many subscriptions were added.
  subscribe(id, topics, opts) { return this._call(OP.subscribe, [str8(id), names(topics, 'topics')], decode.u32, opts); }

  // unsubscribe removes client id from topics; resolves to how many were
  // removed.
  unsubscribe(id, topics, opts) { return this._call(OP.unsubscribe, [str8(id), names(topics, 'topics')], decode.u32, opts); }

  // kick closes client id's connection after what was queued for it; it
  // rejects with status unknown_id if the client is not connected.
  kick(id, opts) { return this._call(OP.kick, [str8(id)], decode.empty, opts); }

  // info resolves to { connected, sinceNs (BigInt), since (Date or null),
  // remote ('' when not connected) }.
  info(id) { return this._call(OP.info, [str8(id)], decode.info); }

  // list resolves to { ids, next }: up to limit connected IDs (0: the most,
  // 10,000) after cursor; next is '' after the last page.
  list(cursor = '', limit = 0) {
    return this._call(OP.list, [str8(cursor), u16(Math.min(Math.max(limit, 0), 0xffff))], decode.list);
  }

  // listAll yields every connected ID, asking for page IDs at a time.
  async* listAll(page = 1000) {
    let cursor = '';
    do {
      const { ids, next } = await this.list(cursor, page);
      yield* ids;
      cursor = next;
    } while (cursor !== '');
  }

  // presence resolves to { ids, next, count }: up to limit IDs (0: the
  // most, 10,000) of the clients subscribed to topic after cursor, in
  // ascending order; next is '' after the last page; count is the topic's
  // subscriber count (a relay cluster's: every node's).
  presence(topic, cursor = '', limit = 0) {
    return this._call(OP.presence, [str8(topic), str8(cursor), u16(Math.min(Math.max(limit, 0), 0xffff))], decode.presence);
  }

  // presenceAll yields every ID subscribed to topic, page IDs at a time.
  async* presenceAll(topic, page = 1000) {
    let cursor = '';
    do {
      const { ids, next } = await this.presence(topic, cursor, page);
      yield* ids;
      cursor = next;
    } while (cursor !== '');
  }

  // stats resolves to every counter and gauge: [{ name, labels, value }].
  stats() { return this._call(OP.stats, [], decode.stats); }

  // ping round-trips data; resolves to the relay's echo (a Buffer).
  ping(data = '') { return this._call(OP.ping, [bytes(data)], decode.echo); }

  // watch starts streaming connect and disconnect events from sequence
  // number from on (0: only new ones). Resolves to a Watch once the relay
  // has answered. Give a watch a Client of its own.
  async watch(from = 0) {
    const w = new Watch(this);
    const req = this._start(OP.watch, 0, [u64(from)]);
    w.request = req;
    this._watches.set(req, w);
    let r;
    try {
      r = await this._reply(req, OP.watch, decode.watch, 0);
    } catch (e) {
      this._watches.delete(req);
      throw e;
    }
    w.instance = r.instance;
    w.last = r.last;
    return w;
  }

  // close closes the connection; requests waiting for a reply reject with
  // ConnectionLost.
  close() {
    if (this._sock) this._sock.destroy();
    this._fail(new ConnectionLost('client closed'));
  }

  _call(op, parts, dec, { noReply = false } = {}) {
    let req;
    try {
      req = this._start(op, noReply ? FLAG_NO_REPLY : 0, parts);
    } catch (e) {
      return Promise.reject(e);
    }
    if (noReply) return Promise.resolve(undefined);
    return this._reply(req, op, dec, this.timeout);
  }

  // _start queues one request frame and returns its request ID.
  _start(op, flags, parts) {
    this._ensure();
    this._next = (this._next % 0xffffffff) + 1; // 1 to 2^32-1: 0 is the relay's
    const req = this._next;
    const body = Buffer.concat(parts);
    const hdr = Buffer.alloc(HEADER_LEN);
    hdr.writeUInt32BE(6 + body.length, 0);
    hdr[4] = op;
    hdr[5] = flags;
    hdr.writeUInt32BE(req, 6);
    if (this._out.length === 0) process.nextTick(() => this._flush());
    this._out.push(hdr, body);
    return req;
  }

  _reply(req, op, dec, timeout) {
    return new Promise((resolve, reject) => {
      const p = { op, resolve, reject, decode: dec, timer: null };
      if (timeout > 0) {
        p.timer = setTimeout(() => {
          this._pending.delete(req);
          this._abandoned.add(req);
          reject(new Error(`${OP_NAMES[op]}: no reply from the relay in ${timeout} ms`));
        }, timeout);
      }
      this._pending.set(req, p);
    });
  }

  // _flush writes every queued frame in one write.
  _flush() {
    if (this._out.length === 0 || !this._sock) return;
    const data = Buffer.concat(this._out);
    this._out = [];
    this._sock.write(data);
  }

  _ensure() {
    if (this._sock) return;
    const sock = net.createConnection({ path: this.path });
    this._sock = sock;
    this._buf = Buffer.alloc(0);
    sock.on('data', (chunk) => this._onData(chunk));
    sock.on('error', (err) => {
      if (this._sock === sock) this._fail(new ConnectionLost(`connection to the relay at ${this.path} lost: ${err.message}`));
    });
    sock.on('close', () => {
      if (this._sock === sock) this._fail(new ConnectionLost('the relay closed the connection'));
    });
  }

  _onData(chunk) {
    this._buf = this._buf.length === 0 ? chunk : Buffer.concat([this._buf, chunk]);
    while (this._buf.length >= HEADER_LEN) {
      const len = this._buf.readUInt32BE(0);
      if (len < 6) {
        this._sock.destroy();
        this._fail(new ConnectionLost('malformed frame from the relay'));
        return;
      }
      if (this._buf.length < 4 + len) return;
      const kind = this._buf[4];
      const flags = this._buf[5];
      const req = this._buf.readUInt32BE(6);
      const body = this._buf.subarray(HEADER_LEN, 4 + len);
      this._buf = this._buf.subarray(4 + len);
      this._onFrame(kind, flags, req, body);
    }
  }

  _onFrame(kind, flags, req, body) {
    if (kind === KIND_EVENT) {
      const w = this._watches.get(req);
      if (w) w._push(decodeEvent(flags, body));
      return;
    }
    const op = OP_NAMES[kind & ~REPLY_BIT] || `op(0x${(kind & ~REPLY_BIT).toString(16)})`;
    const err = () => new PushRelayError(op, flags, new Reader(body).str16(), req);
    if (req === 0 && flags !== 0) {
      // A connection error: the relay closes the connection.
      const e = err();
      if (this._sock) this._sock.destroy();
      this._fail(e);
      return;
    }
    const p = this._pending.get(req);
    if (!p) {
      if (this._abandoned.delete(req)) return;
      if (flags !== 0) this.emit('noReplyError', err());
      return;
    }
    this._pending.delete(req);
    if (p.timer) clearTimeout(p.timer);
    if (flags !== 0) {
      p.reject(err());
      return;
    }
    try {
      p.resolve(p.decode(body));
    } catch (e) {
      p.reject(e);
    }
  }

  // _fail ends the connection: every waiting request rejects with err.
  _fail(err) {
    this._sock = null;
    this._out = [];
    this._buf = Buffer.alloc(0);
    const pending = this._pending;
    const watches = this._watches;
    this._pending = new Map();
    this._watches = new Map();
    this._abandoned.clear();
    for (const p of pending.values()) {
      if (p.timer) clearTimeout(p.timer);
      p.reject(err);
    }
    for (const w of watches.values()) w._end(err);
  }
}

// Watch is a stream of events: listen for 'event' (and 'end', with the
// error that ended it), or iterate it with for await. instance is the relay
// process's random ID: if it differs from the one an earlier watch saw, the
// relay restarted (every client has a new ID, sequence numbers started
// over). last (BigInt) is the latest event's sequence number when the watch
// began. To resume after the connection broke, watch again from the last
// seq seen plus one.
class Watch extends EventEmitter {
  constructor(client) {
    super();
    this.client = client;
    this.request = 0;
    this.instance = '';
    this.last = 0n;
    this.error = null;
    this._queue = [];
    this._waiters = [];
    this._ended = false;
  }

  // close stops delivering events. The protocol has no unwatch: to stop
  // the relay sending them, close the watch's Client.
  close() {
    this.client._watches.delete(this.request);
    this._end(null);
  }

  _push(ev) {
    if (this._ended) return;
    this.emit('event', ev);
    const w = this._waiters.shift();
    if (w) w.resolve({ value: ev, done: false });
    else if (this.listenerCount('event') === 0) this._queue.push(ev);
  }

  _end(err) {
    if (this._ended) return;
    this._ended = true;
    this.error = err;
    this.emit('end', err);
    for (const w of this._waiters.splice(0)) {
      if (err) w.reject(err);
      else w.resolve({ value: undefined, done: true });
    }
  }

  [Symbol.asyncIterator]() {
    return {
      next: () => {
        if (this._queue.length > 0) return Promise.resolve({ value: this._queue.shift(), done: false });
        if (this._ended) return this.error ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
      },
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

// The command line.

const USAGE = `usage: pushrelay_client.js SOCKET COMMAND [ARGS...]

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
subscribe, unsubscribe of an unknown ID).`;

// Exit statuses: the same in every pushrelay client command line.
const EXIT = { ok: 0, refused: 1, usage: 2, noRelay: 3, unknownId: 4 };

// json prints v on one line; BigInts become numbers when exact, else strings.
function json(v) {
  console.log(JSON.stringify(v, (k, x) => {
    if (typeof x !== 'bigint') return x;
    return x <= BigInt(Number.MAX_SAFE_INTEGER) && x >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x.toString();
  }));
}

// countsJSON is counts as the HTTP API's JSON object: the first five
// always, unreachable (a cluster's) when not zero.
function countsJSON(c) {
  const o = { queued: c.queued, unknown: c.unknown, dropped: c.dropped, overloaded: c.overloaded,
    unsupported: c.unsupported };
  if (c.unreachable) o.unreachable = c.unreachable;
  return o;
}

async function main(argv) {
  const arity = {
    send: [2, 2], 'send-many': [2, Infinity], publish: [2, 2], broadcast: [1, 1],
    subscribe: [2, Infinity], unsubscribe: [2, Infinity], kick: [1, 1], info: [1, 1],
    list: [0, 0], presence: [1, 1], stats: [0, 0], watch: [0, 1], ping: [0, 0],
  };
  const [path, cmd, ...args] = argv;
  if (!cmd || !arity[cmd] || args.length < arity[cmd][0] || args.length > arity[cmd][1]) {
    console.error(USAGE);
    return EXIT.usage;
  }
  const fail = (code, msg) => { console.error(`pushrelay ${cmd}: ${msg}`); return code; };
  const c = new Client(path);
  try {
    switch (cmd) {
      case 'send': {
        const counts = await c.send(args[0], args[1]);
        json(countsJSON(counts));
        if (counts.unknown) return fail(EXIT.unknownId, `unknown client ID ${args[0]}: no such client is connected`);
        if (!counts.queued) return fail(EXIT.refused, `not queued for client ${args[0]}: ${JSON.stringify(countsJSON(counts))}`);
        break;
      }
      case 'send-many': json(countsJSON(await c.sendMany(args.slice(1), args[0]))); break;
      case 'publish': json(countsJSON(await c.publish(args[0], args[1]))); break;
      case 'broadcast': json(countsJSON(await c.broadcast(args[0]))); break;
      case 'subscribe': json({ added: await c.subscribe(args[0], args.slice(1)) }); break;
      case 'unsubscribe': json({ removed: await c.unsubscribe(args[0], args.slice(1)) }); break;
      case 'kick': await c.kick(args[0]); json({ kicked: args[0] }); break;
      case 'info': {
        const info = await c.info(args[0]);
        json(info);
        if (!info.connected) return fail(EXIT.unknownId, `${args[0]} is not connected`);
        break;
      }
      case 'list': for await (const id of c.listAll(10000)) console.log(id); break;
      case 'presence': for await (const id of c.presenceAll(args[0], 10000)) console.log(id); break;
      case 'stats': for (const s of await c.stats()) json(s); break;
      case 'watch': {
        const w = await c.watch(args.length ? BigInt(args[0]) : 0);
        json({ instance: w.instance, last: w.last });
        for await (const ev of w) json(ev);
        break;
      }
      case 'ping': await c.ping(); json({ ok: true }); break;
      default: break;
    }
  } catch (e) {
    if (e instanceof PushRelayError) return fail(e.status === 'unknown_id' ? EXIT.unknownId : EXIT.refused, e.message);
    if (e instanceof RangeError || e instanceof TypeError || e instanceof SyntaxError) return fail(EXIT.usage, e.message);
    return fail(EXIT.noRelay, `no relay at ${path}: ${e.message}`);
  } finally {
    c.close();
  }
  return EXIT.ok;
}

module.exports = { Client, Watch, PushRelayError, ConnectionLost, STATUS_NAMES, OP, countsJSON };

if (require.main === module) {
  // Whoever reads our output stopped (| head): not an error, end quietly.
  process.stdout.on('error', (e) => { if (e.code === 'EPIPE') process.exit(EXIT.ok); else throw e; });
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
}
