package loadgen

// The worker side of a run: Run starts one worker process per share of
// the connections (the executable with WorkerArg), sends it its
// WorkerOptions on stdin and reads its progress and report back.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

// WorkerOptions are a worker's share of a run, sent as JSON on its stdin.
type WorkerOptions struct {
	Target   string        `json:"target"`
	Conns    int           `json:"conns"`
	Rate     float64       `json:"rate"`
	Framing  string        `json:"framing"`
	Duration time.Duration `json:"duration"`
	Deadline time.Duration `json:"deadline"`
	Sources  []string      `json:"sources"`
	RecvBuf  int           `json:"recvbuf"`
	WantIDs  bool          `json:"want_ids"`
	// FailFast and Handshake as in Options.
	FailFast  bool          `json:"fail_fast"`
	Handshake time.Duration `json:"handshake"`
}

// worker is a running worker process.
type worker struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	last   Progress
	window Histogram // windows received since the parent last took them
	rep    *Report
	done   chan error
	// ids, sent once the worker has finished connecting; idsReady closes
	// then, ended when the worker's output ends.
	ids      []string
	idsReady chan struct{}
	ended    chan struct{}
}

func startWorker(exe []string, wo WorkerOptions) (*worker, error) {
	in, err := json.Marshal(wo)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe[0], append(append([]string{}, exe[1:]...), WorkerArg)...)
	cmd.Stdin = strings.NewReader(string(in))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &worker{cmd: cmd, done: make(chan error, 1), idsReady: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 256<<20)
		for sc.Scan() {
			var msg struct {
				Progress *Progress `json:"progress"`
				Report   *Report   `json:"report"`
				IDs      *[]string `json:"ids"`
			}
			if json.Unmarshal(sc.Bytes(), &msg) != nil {
				continue
			}
			w.mu.Lock()
			if msg.Progress != nil {
				w.window.MergeSparse(msg.Progress.WorkerWindow)
				msg.Progress.WorkerWindow = nil
				w.last = *msg.Progress
			}
			if msg.Report != nil {
				w.rep = msg.Report
			}
			if msg.IDs != nil {
				w.ids = *msg.IDs
			}
			w.mu.Unlock()
			if msg.IDs != nil {
				close(w.idsReady)
			}
		}
		close(w.ended)
		w.done <- cmd.Wait()
	}()
	return w, nil
}

// progress returns the worker's latest totals and the latency windows it
// sent since the previous call.
func (w *worker) progress() (Progress, Histogram) {
	w.mu.Lock()
	defer w.mu.Unlock()
	win := w.window
	w.window = Histogram{}
	return w.last, win
}

func (w *worker) interrupt() { _ = w.cmd.Process.Signal(syscall.SIGINT) }
func (w *worker) stop()      { _ = w.cmd.Process.Kill(); <-w.done }

func (w *worker) wait() (*Report, error) {
	err := <-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rep == nil {
		if err == nil {
			err = errors.New("worker ended without a report")
		}
		return nil, err
	}
	if w.rep.Error != "" {
		return w.rep, errors.New(w.rep.Error)
	}
	return w.rep, nil
}

// WorkerMain is a worker process's main: RunWorker on standard input and
// output, with SIGINT and SIGTERM ending the hold early (the parent sends
// SIGINT when it is interrupted) and still producing a report.
func WorkerMain() error {
	stop := make(chan struct{})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			close(stop)
		}
	}()
	return RunWorker(os.Stdin, os.Stdout, stop)
}

// RunWorker is a worker process's body: it reads WorkerOptions from in,
// holds its share of the connections, writes progress lines and a final
// report line to out, and returns when the duration is over or stop closes.
func RunWorker(in io.Reader, out io.Writer, stop <-chan struct{}) error {
	var wo WorkerOptions
	if err := json.NewDecoder(in).Decode(&wo); err != nil {
		return fmt.Errorf("loadgen worker: read options: %w", err)
	}
	enc := json.NewEncoder(out)
	rep := runShare(wo, stop, func(p Progress) { enc.Encode(map[string]any{"progress": p}) },
		func(ids []string) { enc.Encode(map[string]any{"ids": ids}) })
	return enc.Encode(map[string]any{"report": rep})
}

// runShare holds one worker's share; ids, if WantIDs, receives the IDs
// once connecting is over.
func runShare(wo WorkerOptions, stop <-chan struct{}, progress func(Progress), ids func([]string)) *Report {
	rep := &Report{Target: wo.Target, Framing: wo.Framing, Requested: wo.Conns, Failed: map[string]int64{}, Reading: readingNote}
	framing, web, err := ParseFraming(wo.Framing)
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	var sources []netip.Addr
	for _, s := range wo.Sources {
		a, err := netip.ParseAddr(s)
		if err != nil {
			rep.Error = fmt.Sprintf("source %q: %v", s, err)
			return rep
		}
		sources = append(sources, a)
	}
	rssBefore := selfRSS()
	cpuBefore := selfCPU()
	start := time.Now()
	deadline := start.Add(wo.Deadline)
	p, err := NewPool(PoolOptions{Target: wo.Target, Framing: framing, Web: web, Sources: sources, RecvBuf: wo.RecvBuf})
	if err != nil {
		rep.Error = err.Error()
		return rep
	}
	defer p.Close()

	snapshot := func(phase string) Progress {
		kinds, _, _, _ := p.Stats.Failures()
		var failed int64
		for _, n := range kinds {
			failed += n
		}
		w := p.TakeWindow()
		return Progress{Elapsed: time.Since(start), Attempts: p.Stats.Attempts.Load(), Established: p.Stats.Established.Load(), Failed: failed, Messages: p.Stats.Messages.Load(), Phase: phase,
			FailedBy: kinds, CPU: selfCPU() - cpuBefore, WorkerWindow: w.Sparse()}
	}
	// Connect, reporting progress and watching for stop.
	lastProgress := time.Now()
	interrupted := false
	started := 0
	handshake := wo.Handshake
	if handshake <= 0 {
		handshake = DefaultHandshake
	}
	anyID, hopeless := false, ""
	for started < wo.Conns || !p.settled() {
		select {
		case <-stop:
			interrupted = true
		default:
		}
		if interrupted || time.Now().After(deadline) {
			break
		}
		due := wo.Conns
		if wo.Rate > 0 {
			due = min(wo.Conns, int(wo.Rate*time.Since(start).Seconds())+1)
		}
		for ; started < due; started++ {
			p.Connect()
			if started%64 == 63 {
				p.Poll(0)
			}
		}
		p.Poll(5 * time.Millisecond)
		if time.Since(lastProgress) > 500*time.Millisecond {
			progress(snapshot("connecting"))
			lastProgress = time.Now()
		}
		if anyID = anyID || p.Stats.Established.Load() > 0; !anyID && wo.FailFast {
			if hopeless = noConnectionCanSucceed(wo, p, time.Since(start), handshake); hopeless != "" {
				break
			}
		}
	}
	if hopeless != "" {
		rep.Error = hopeless
		interrupted = true // no hold: nothing to hold
	}
	if wo.WantIDs && ids != nil {
		ids(p.IDs())
	}
	rep.ConnectTime = time.Since(start)
	rep.Established = p.Stats.Established.Load()
	if s := rep.ConnectTime.Seconds(); s > 0 {
		rep.ConnectRate = float64(rep.Established) / s
	}
	// Hold.
	holdUntil := time.Now().Add(wo.Duration)
	if holdUntil.After(deadline) {
		holdUntil = deadline
	}
	for !interrupted && time.Now().Before(holdUntil) {
		// interrupted: by stop, or by a run that cannot succeed
		select {
		case <-stop:
			interrupted = true
			continue
		default:
		}
		p.Poll(20 * time.Millisecond)
		if time.Since(lastProgress) > 500*time.Millisecond {
			progress(snapshot("holding"))
			lastProgress = time.Now()
		}
	}
	// A last progress line carries the latency window since the previous.
	progress(snapshot("done"))
	rep.Interrupted = interrupted && hopeless == ""
	rep.HeldAtEnd = p.Stats.Established.Load()
	kinds, first, at, phase := p.Stats.Failures()
	rep.Failed = kinds
	if first != "" {
		rep.FirstFailure, rep.FirstFailureAt, rep.FirstPhase = first, at.Sub(start), phase
	}
	rep.Messages = p.Stats.Messages.Load() - p.Stats.Empty.Load()
	rep.Heartbeats = p.Stats.Empty.Load()
	rep.Stamped = p.Stats.Stamped.Load()
	rep.Bytes = p.Stats.Bytes.Load()
	rep.Latency = p.Latency().Summarize()
	rep.Hist = append([]uint64(nil), p.Latency().counts[:]...)
	rep.CPU = selfCPU() - cpuBefore
	rep.RSS = selfRSS() - rssBefore
	if rep.HeldAtEnd > 0 {
		rep.BytesPerConn = float64(rep.RSS) / float64(rep.HeldAtEnd)
	}
	if wo.WantIDs {
		rep.IDs = p.IDs()
	}
	return rep
}

// noConnectionCanSucceed says why a worker that has no ID yet should give
// up, or "": its first failFastAfter connects (all of them, if fewer) all
// failed, or no ID frame came within the handshake time.
func noConnectionCanSucceed(wo WorkerOptions, p *Pool, elapsed, handshake time.Duration) string {
	kinds, _, _, _ := p.Stats.Failures()
	var failed int64
	for _, n := range kinds {
		failed += n
	}
	framingHint := fmt.Sprintf("is %s a pushrelay listener with --framing %s?", wo.Target, wo.Framing)
	if web := strings.HasPrefix(wo.Framing, "ws") || wo.Framing == "sse"; web {
		framingHint = fmt.Sprintf("is %s a pushrelay web listener (--web)?", wo.Target)
	}
	if failed >= int64(min(failFastAfter, wo.Conns)) && failed == p.Stats.Attempts.Load() {
		kind, most := "", int64(0)
		for k, n := range kinds {
			if n > most || (n == most && k < kind) {
				kind, most = k, n
			}
		}
		hint := "no connection can succeed"
		switch kind {
		case "ECONNREFUSED":
			hint = fmt.Sprintf("is a relay running and listening on %s?", wo.Target)
		case "BAD_FRAME", "BAD_HANDSHAKE", "EOF", "ECONNRESET":
			hint = framingHint
		}
		return fmt.Sprintf("all of the first %d connects failed (%s %d) and none received an ID: %s", failed, kind, most, hint)
	}
	if elapsed > handshake && p.Stats.Attempts.Load() > failed {
		return fmt.Sprintf("no ID frame after %v: %s", handshake, framingHint)
	}
	return ""
}
