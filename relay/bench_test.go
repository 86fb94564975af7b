package relay

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func BenchmarkEncodeFrame(b *testing.B) {
	for _, size := range []int{64, 1 << 10, 16 << 10} {
		for _, f := range allFramings {
			b.Run(fmt.Sprintf("%s_%dB", f, size), func(b *testing.B) {
				payload := make([]byte, size)
				for i := range payload {
					payload[i] = 'a'
				}
				b.ReportAllocs()
				b.SetBytes(int64(size))
				for b.Loop() {
					if err := f.Check(payload); err != nil {
						b.Fatal(err)
					}
					encodeFrame(f, payload).release()
				}
			})
		}
	}
}

func BenchmarkRegistryGet(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprintf("%dk", n/1000), func(b *testing.B) {
			var r registry
			var src idSource
			ids := make([]string, n)
			for i := range ids {
				s := &session{}
				s.setID(src.next())
				ids[i] = s.ID()
				r.add(s)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
				for pb.Next() {
					if r.get(ids[rng.IntN(n)]) == nil {
						b.Fatal("missing")
					}
				}
			})
		})
	}
}

// BenchmarkSendOneConn pushes 64-byte messages to one loopback client that
// reads everything: the whole path, producer and loop, per message.
func BenchmarkSendOneConn(b *testing.B) {
	srv := startServer(b, Config{MaxOutbound: 256 << 20})
	c := dial(b, srv)
	drainClient(c)
	payload := make([]byte, 64)
	for i := range payload {
		payload[i] = 'm'
	}
	b.ReportAllocs()
	b.SetBytes(64)
	for b.Loop() {
		for srv.Send(c.id, payload) == Overloaded {
			time.Sleep(10 * time.Microsecond)
		}
	}
	b.StopTimer()
	st := srv.Stats()
	if st.Writes > 0 {
		b.ReportMetric(float64(st.MessagesWritten)/float64(st.Writes), "msgs/write")
	}
}
