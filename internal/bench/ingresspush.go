package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/pushrelay/pushrelay/pkg/stamp"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pushrelay/pushrelay/ingress/client"
)

// unixThroughput pushes to random clients through the relay's one ingress
// client from opts.UnixWorkers goroutines, without replies, for
// opts.Duration; each goroutine pings after every opts.Batch pushes, which
// bounds what is in flight and, since replies come in order, means every
// error reply for the batch has arrived.
func unixThroughput(ctx context.Context, rp *relayProc, ids []string, opts IngressOptions) pushTally {
	errs0 := rp.errs.snapshot()
	var (
		sent    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	start := time.Now()
	deadline := start.Add(opts.Duration)
	for range opts.UnixWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
			buf := make([]byte, 0, opts.Payload+32)
			var n int64
			defer func() { sent.Add(n) }()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				for range opts.Batch {
					buf = stamp.AppendPadded(buf[:0], time.Now(), opts.Payload)
					if err := rp.client.SendNoReply(ids[rng.IntN(len(ids))], buf); err != nil {
						errOnce.Do(func() { first = err })
						return
					}
					n++
				}
				if err := rp.client.Ping(ctx); err != nil {
					errOnce.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	t := pushTally{sent: sent.Load(), seconds: time.Since(start).Seconds(), err: first}
	t.errors = countsSince(errs0, rp.errs.snapshot())
	t.accepted = t.sent - sumCounts(t.errors)
	return t
}

// httpPush makes one POST /v1/send/{id} and reports the response status.
func httpPush(ctx context.Context, hc *http.Client, url string, payload []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return 0, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// httpThroughput pushes to random clients over HTTP from opts.HTTPWorkers
// goroutines, one request at a time each, for opts.Duration.
func httpThroughput(ctx context.Context, hc *http.Client, base string, ids []string, opts IngressOptions) pushTally {
	return httpPushers(opts, func(deadline time.Time, t *pushTally) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		buf := make([]byte, 0, opts.Payload+32)
		for time.Now().Before(deadline) && ctx.Err() == nil {
			buf = stamp.AppendPadded(buf[:0], time.Now(), opts.Payload)
			code, err := httpPush(ctx, hc, base+ids[rng.IntN(len(ids))], buf)
			t.sent++
			switch {
			case err != nil:
				t.err = err
			case code == http.StatusOK:
				t.accepted++
			default:
				t.errors[strconv.Itoa(code)]++
			}
			if t.err != nil {
				break
			}
		}
	})
}

// httpBatchThroughput pushes to random clients through POST /v1/batch from
// opts.HTTPWorkers goroutines, opts.Batch pushes a request (one JSON line
// each), one request at a time each, for opts.Duration. A push counts as
// accepted when the reply counts it queued.
func httpBatchThroughput(ctx context.Context, hc *http.Client, url string, ids []string, opts IngressOptions) pushTally {
	return httpPushers(opts, func(deadline time.Time, t *pushTally) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		body := make([]byte, 0, opts.Batch*(opts.Payload+64))
		var reply struct {
			Totals struct{ Queued, Unknown, Dropped, Overloaded int64 } `json:"totals"`
		}
		for time.Now().Before(deadline) && ctx.Err() == nil && t.err == nil {
			body = body[:0]
			for range opts.Batch {
				body = append(body, `{"id":"`...)
				body = append(body, ids[rng.IntN(len(ids))]...)
				body = append(body, `","data":"`...)
				body = stamp.AppendPadded(body, time.Now(), opts.Payload) // ASCII: no escapes
				body = append(body, "\"}\n"...)
			}
			t.sent += int64(opts.Batch)
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				t.err = err
				break
			}
			req.Header.Set("Content-Type", "application/x-ndjson")
			resp, err := hc.Do(req)
			if err != nil {
				t.err = err
				break
			}
			code := resp.StatusCode
			reply.Totals.Queued, reply.Totals.Unknown, reply.Totals.Dropped, reply.Totals.Overloaded = 0, 0, 0, 0
			derr := json.NewDecoder(resp.Body).Decode(&reply)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch {
			case code != http.StatusOK:
				t.errors[strconv.Itoa(code)] += int64(opts.Batch)
			case derr != nil:
				t.err = fmt.Errorf("batch reply: %w", derr)
			default:
				t.accepted += reply.Totals.Queued
				for k, v := range map[string]int64{"unknown": reply.Totals.Unknown, "dropped": reply.Totals.Dropped, "overloaded": reply.Totals.Overloaded} {
					if v > 0 {
						t.errors[k] += v
					}
				}
			}
		}
	})
}

// paced calls push(i) opts.Rate times a second for opts.Duration, on
// schedule: a late push does not delay the ones after it.
func paced(ctx context.Context, opts IngressOptions, push func(i int64)) float64 {
	start := time.Now()
	n := int64(opts.Rate * opts.Duration.Seconds())
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		due := start.Add(time.Duration(float64(i) * float64(time.Second) / opts.Rate))
		if wait := time.Until(due); wait > 0 {
			time.Sleep(wait)
		}
		push(i)
	}
	return time.Since(start).Seconds()
}

// unixPaced pushes opts.Rate times a second to random clients with
// client.Send, waiting for each reply.
func unixPaced(ctx context.Context, cl *client.Client, ids []string, opts IngressOptions) pushTally {
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	buf := make([]byte, 0, opts.Payload+32)
	t := pushTally{errors: map[string]int64{}}
	t.seconds = paced(ctx, opts, func(int64) {
		buf = stamp.AppendPadded(buf[:0], time.Now(), opts.Payload)
		counts, err := cl.Send(ctx, ids[rng.IntN(len(ids))], buf)
		t.sent++
		switch {
		case err != nil:
			t.errors[client.StatusOf(err).String()]++
		case counts.Queued == 1:
			t.accepted++
		default:
			t.errors["not_queued"]++
		}
	})
	return t
}

// httpPaced pushes opts.Rate times a second to random clients over HTTP,
// waiting for each response.
func httpPaced(ctx context.Context, hc *http.Client, base string, ids []string, opts IngressOptions) pushTally {
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	buf := make([]byte, 0, opts.Payload+32)
	t := pushTally{errors: map[string]int64{}}
	t.seconds = paced(ctx, opts, func(int64) {
		buf = stamp.AppendPadded(buf[:0], time.Now(), opts.Payload)
		code, err := httpPush(ctx, hc, base+ids[rng.IntN(len(ids))], buf)
		t.sent++
		switch {
		case err != nil:
			t.errors["transport"]++
			if t.err == nil && ctx.Err() != nil {
				t.err = err
			}
		case code == http.StatusOK:
			t.accepted++
		default:
			t.errors[strconv.Itoa(code)]++
		}
	})
	return t
}

// add counts a pusher's tally into t, keeping t's first error.
func (t *pushTally) add(o pushTally) {
	t.sent += o.sent
	t.accepted += o.accepted
	for k, v := range o.errors {
		t.errors[k] += v
	}
	if t.err == nil {
		t.err = o.err
	}
}

// httpPushers runs push in opts.HTTPWorkers goroutines until the deadline,
// opts.Duration away, each with a tally of its own, and sums the tallies.
func httpPushers(opts IngressOptions, push func(deadline time.Time, t *pushTally)) pushTally {
	var (
		mu  sync.Mutex
		tot = pushTally{errors: map[string]int64{}}
		wg  sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(opts.Duration)
	for range opts.HTTPWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := pushTally{errors: map[string]int64{}}
			push(deadline, &t)
			mu.Lock()
			tot.add(t)
			mu.Unlock()
		}()
	}
	wg.Wait()
	tot.seconds = time.Since(start).Seconds()
	return tot
}
