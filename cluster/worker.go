package cluster

// Answering other nodes: the workers that run the requests addressed to
// this node on the local relay.

import (
	"encoding/base64"
	"time"
	"unsafe"

	"github.com/pushrelay/pushrelay/relay"
)

// serve answers other nodes' requests, in the order they arrive, until
// Close.
func (n *Node) serve() {
	defer n.wg.Done()
	d := decoder{maxPayload: n.local.Config().MaxMessage}
	w := &worker{n: n}
	for {
		select {
		case <-n.stop:
			return
		case m := <-n.inbox:
			env, err := d.decode(m.Data)
			if err != nil || env.op&replyBit != 0 || env.op >= opHello {
				n.counters.badEnvelopes.Add(1)
				if n.counters.badEnvelopes.Load()%1000 == 1 {
					n.log.Warn("cluster: bad envelope from another node (counted; logged once per 1000)", "subject", m.Subject, "err", err)
				}
				continue
			}
			n.counters.received(env.op, len(m.Data))
			if m.Reply == "" {
				continue
			}
			w.answer(&env)
			if err := n.nc.Publish(m.Reply, w.e.b); err == nil {
				n.counters.sent(env.op|replyBit, len(w.e.b))
			}
		}
	}
}

// worker holds serve's scratch buffers.
type worker struct {
	n      *Node
	e      encoder
	idText []byte
	ids    []string
}

// idString views raw's text form, written into the worker's buffer, as a
// string valid until the next call (the relay does not keep IDs it looks
// up).
func (w *worker) idStrings(raws [][relay.IDBytes]byte) []string {
	need := len(raws) * relay.IDLen
	if cap(w.idText) < need {
		w.idText = make([]byte, need)
	}
	text := w.idText[:need]
	ids := w.ids[:0]
	for i := range raws {
		t := text[i*relay.IDLen : (i+1)*relay.IDLen]
		base64.RawURLEncoding.Encode(t, raws[i][:])
		ids = append(ids, unsafe.String(unsafe.SliceData(t), len(t)))
	}
	w.ids = ids
	return ids
}

// answer builds the reply to env in w.e.
func (w *worker) answer(env *envelope) {
	n, e := w.n, &w.e
	local := n.local
	e.begin(env.op|replyBit, n.id)
	switch env.op {
	case opSend:
		one := [1][relay.IDBytes]byte{env.id}
		st := local.Send(w.idStrings(one[:])[0], env.payload)
		var c relay.Counts
		c.Add(st)
		e.counts(st, c)
	case opSendMany:
		c, st := local.SendMany(w.idStrings(env.ids), env.payload)
		clear(w.ids)
		e.counts(st, c)
	case opPublish:
		c, st := local.Publish(env.topic, env.payload)
		e.counts(st, c)
	case opBroadcast:
		c, st := local.Broadcast(env.payload)
		e.counts(st, c)
	case opSubscribe, opUnsubscribe:
		one := [1][relay.IDBytes]byte{env.id}
		id := w.idStrings(one[:])[0]
		var changed int
		var err error
		if env.op == opSubscribe {
			changed, err = local.Subscribe(id, env.topics...)
		} else {
			changed, err = local.Unsubscribe(id, env.topics...)
		}
		if err != nil {
			e.u8(errKindOf(err))
		} else {
			e.u8(errNone)
		}
		e.u32(uint32(changed))
		if err != nil {
			e.str8(err.Error())
		} else {
			e.str8("")
		}
	case opKick:
		one := [1][relay.IDBytes]byte{env.id}
		e.u8(uint8(local.Kick(w.idStrings(one[:])[0])))
	case opInfo:
		one := [1][relay.IDBytes]byte{env.id}
		info, ok := local.Info(w.idStrings(one[:])[0])
		if ok {
			e.u8(1)
			e.u64(uint64(info.Since.UnixNano()))
		} else {
			e.u8(0)
			e.u64(0)
		}
		e.addr(info.Remote)
	case opList:
		ids, next, err := local.List(env.cursor, env.limit)
		if err != nil {
			e.u8(errKindOf(err))
			e.str8(err.Error())
			e.u16(0)
			return
		}
		e.u8(errNone)
		e.idPage(next, ids)
	case opPresence:
		var ids []string
		var next string
		var count int
		var err error
		if env.limit == 0 {
			count = local.Subscribers(env.topic)
		} else {
			ids, next, count, err = local.Presence(env.topic, env.cursor, env.limit)
		}
		if err != nil {
			e.u8(errKindOf(err))
			e.u32(0)
			e.str8(err.Error())
			e.u16(0)
			return
		}
		e.u8(errNone)
		e.u32(uint32(count))
		e.idPage(next, ids)
	case opPing:
		e.str8(local.Instance())
	}
}

// idPage appends a page of IDs as list and presence replies carry it:
// the next cursor, the count, the IDs.
func (e *encoder) idPage(next string, ids []string) {
	e.str8(next)
	e.u16(uint16(len(ids)))
	for _, id := range ids {
		raw, _ := relay.ParseID(id)
		e.id(&raw)
	}
}

func timeFromUnixNano(ns int64) time.Time { return time.Unix(0, ns) }
