package ingress

import (
	"encoding/binary"

	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// watchBatch is how many events a watch copies out of the relay's log at a
// time.
const watchBatch = 256

// watch streams connect and disconnect events from seq from on, tagged with
// the watch request's ID, until the connection ends. It reads the relay's
// event log at its own pace: a web app that reads slowly loses the oldest
// events, and an EventLost frame says how many.
func (c *ingressConn) watch(req uint32, from uint64) {
	defer c.wg.Done()
	rel := c.srv.relay
	buf := make([]relay.Event, 0, watchBatch)
	for {
		evs, next, lost, wait := rel.EventsSince(from, buf[:0], watchBatch)
		if lost > 0 {
			c.reply(wire.KindEvent, uint8(wire.EventLost), req, func(b []byte) []byte {
				b = binary.BigEndian.AppendUint64(b, from+lost)
				return binary.BigEndian.AppendUint64(b, lost)
			})
		}
		for i := range evs {
			ev := &evs[i]
			kind := wire.EventConnect
			if ev.Kind == relay.EventDisconnect {
				kind = wire.EventDisconnect
			}
			c.reply(wire.KindEvent, uint8(kind), req, func(b []byte) []byte {
				b = binary.BigEndian.AppendUint64(b, ev.Seq)
				b = binary.BigEndian.AppendUint64(b, uint64(ev.Time))
				b = wire.AppendStr8(b, ev.ID)
				b = wire.AppendStr8(b, ev.Remote.String())
				if kind == wire.EventDisconnect {
					b = wire.AppendStr8(b, ev.Reason.String())
				}
				if ev.Node != 0 {
					b = binary.BigEndian.AppendUint16(b, ev.Node)
				}
				return b
			})
		}
		from = next
		if len(evs) > 0 || lost > 0 {
			if c.flush() != nil {
				return
			}
		}
		if wait != nil {
			select {
			case <-wait:
			case <-c.ctx.Done():
				return
			}
		}
	}
}

// metrics returns the ingress's own counters in the relay's Metric form.
func (s *UnixServer) metrics() []relay.Metric {
	c := &s.counters
	return []relay.Metric{
		{Name: "pushrelay_ingress_requests_total", Type: "counter", Help: "Requests decoded on the Unix socket.", Value: float64(c.Requests.Load())},
		{Name: "pushrelay_ingress_errors_total", Type: "counter", Help: "Error replies on the Unix socket.", Value: float64(c.Errors.Load())},
		{Name: "pushrelay_ingress_connections", Type: "gauge", Help: "Unix-socket ingress connections open.", Value: float64(c.Conns.Load())},
		{Name: "pushrelay_ingress_refused_total", Type: "counter", Help: "Unix-socket connections refused over the connection limit.", Value: float64(c.Refused.Load())},
		{Name: "pushrelay_ingress_bad_frames_total", Type: "counter", Help: "Unix-socket connections closed because a frame's length could not be trusted.", Value: float64(c.BadFrames.Load())},
		{Name: "pushrelay_ingress_frame_timeouts_total", Type: "counter", Help: "Unix-socket connections closed because a request frame was not completed within --ingress-frame-timeout.", Value: float64(c.FrameTimeouts.Load())},
	}
}

// Metrics returns the ingress counters, for /metrics.
func (s *UnixServer) Metrics() []relay.Metric { return s.metrics() }
