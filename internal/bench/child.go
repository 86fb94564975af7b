package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/pushrelay/pushrelay/pkg/stamp"
	"github.com/pushrelay/pushrelay/relay"
)

// The servers a child can run.
const (
	ServerRelay    = "relay"    // relay.Server with its defaults
	ServerBaseline = "baseline" // Baseline, goroutines per connection
	ServerAccept4  = "accept4"  // Accept4Server, the kernel's floor
	// ServerAccept4Write is Accept4Server writing a fixed 22-character ID
	// frame to each connection: the floor for accepting and greeting, so
	// the relay's cost beyond the work its protocol requires shows.
	ServerAccept4Write = "accept4-write"
	// ServerFloor is FloorServer: accept4 with an ID greeting, and on
	// command one thread writing frames with bare write(2) calls, the
	// floor for pushing to idle connections.
	ServerFloor = "floor"
)

// MemProfileRateEnv names the environment variable that sets a child's
// runtime.MemProfileRate (1 records every allocation).
const MemProfileRateEnv = "PUSHRELAY_BENCH_MEMPROFILERATE"

// OwnAcceptEnv, set to 1, runs a relay child with relay.Config.OwnAccept.
const OwnAcceptEnv = "PUSHRELAY_BENCH_OWN_ACCEPT"

// ChildConfig says which server a child process runs.
type ChildConfig struct {
	Server  string // ServerRelay, ServerBaseline, ServerAccept4, ServerAccept4Write or ServerFloor
	Listen  string // HOST:PORT; port 0 picks a free port
	Framing relay.Framing
}

// ChildHello is the first line a child writes, once its server listens.
type ChildHello struct {
	Addr string `json:"addr"`
	Pid  int    `json:"pid"`
}

// ChildStats is a child's answer to `stats` (every field) and to `count`
// (Conns and Accepted only: count reads no MemStats, which would stop the
// world in the middle of a storm).
type ChildStats struct {
	RSSBytes    int64  `json:"rss_bytes,omitempty"`
	HeapAlloc   uint64 `json:"heap_alloc,omitempty"`
	HeapInuse   uint64 `json:"heap_inuse,omitempty"`
	HeapSys     uint64 `json:"heap_sys,omitempty"`
	StackInuse  uint64 `json:"stack_inuse,omitempty"`
	Sys         uint64 `json:"sys,omitempty"`
	Goroutines  int    `json:"goroutines,omitempty"`
	Threads     int    `json:"threads,omitempty"`
	CPUUserNs   int64  `json:"cpu_user_ns,omitempty"`
	CPUSysNs    int64  `json:"cpu_sys_ns,omitempty"`
	RunqWaitNs  int64  `json:"runq_wait_ns,omitempty"` // threads runnable but not running, summed
	Conns       int64  `json:"conns"`
	Accepted    uint64 `json:"accepted"`
	FirstAccept int64  `json:"first_accept_ns,omitempty"` // accept4 only
	LastAccept  int64  `json:"last_accept_ns,omitempty"`  // accept4 only
	Error       string `json:"error,omitempty"`
}

// childServer is what a child needs of the server it runs.
type childServer interface {
	Addr() *net.TCPAddr
	Len() int
	Accepted() uint64
	Close() error
}

// relayChild adapts relay.Server to childServer.
type relayChild struct{ *relay.Server }

func (r relayChild) Accepted() uint64 { return r.Stats().Accepted }

func (r relayChild) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return r.Shutdown(ctx)
}

func startChildServer(cfg ChildConfig) (childServer, error) {
	switch cfg.Server {
	case ServerRelay:
		srv, err := relay.New(relay.Config{
			Listen:    cfg.Listen,
			Framing:   cfg.Framing,
			Logger:    slog.New(slog.DiscardHandler),
			OwnAccept: os.Getenv(OwnAcceptEnv) == "1",
		})
		if err != nil {
			return nil, fmt.Errorf("bench: child: %w", err)
		}
		if err := srv.Start(); err != nil {
			return nil, fmt.Errorf("bench: child: %w", err)
		}
		return relayChild{srv}, nil
	case ServerBaseline:
		b, err := NewBaseline(BaselineConfig{Listen: cfg.Listen, Framing: cfg.Framing})
		if err != nil {
			return nil, err
		}
		if err := b.Start(); err != nil {
			return nil, err
		}
		return b, nil
	case ServerAccept4, ServerAccept4Write:
		a := NewAccept4(cfg.Listen)
		if cfg.Server == ServerAccept4Write {
			a.Greeting = cfg.Framing.AppendFrame(nil, []byte(strings.Repeat("A", relay.IDLen)))
		}
		if err := a.Start(); err != nil {
			return nil, err
		}
		return a, nil
	case ServerFloor:
		f := NewFloor(cfg.Listen, cfg.Framing)
		if err := f.Start(); err != nil {
			return nil, err
		}
		return f, nil
	}
	return nil, fmt.Errorf("bench: child: unknown server %q (want %s, %s, %s, %s or %s)", cfg.Server, ServerRelay, ServerBaseline, ServerAccept4, ServerAccept4Write, ServerFloor)
}

// RunChild runs the server cfg names, writes a ChildHello line to out, then
// answers the commands read from in, one JSON line per command line:
//
//	stats          ChildStats, every field
//	count          ChildStats, conns and accepted only (no stop-the-world)
//	gc             two runtime.GC and debug.FreeOSMemory, then {"ok":true}
//	heap PATH      a GC, then a heap profile written to PATH
//	cpu-start PATH starts a CPU profile into PATH
//	cpu-stop       stops it
//	broadcast SIZE a SIZE-byte payload stamped now (loadgen.AppendStamp)
//	               pushed to every client: BroadcastReply (relay and
//	               baseline)
//	floor-rate SECONDS SIZE
//	               stamped SIZE-byte frames to random sockets, as fast as
//	               one thread can, for SECONDS: FloorRun (floor only)
//	floor-paced RATE SECONDS SIZE
//	               the same, RATE frames a second: FloorRun (floor only)
//	floor-sweep SIZE
//	               one frame, stamped once, to every socket in turn:
//	               FloorRun (floor only)
//	floor-prune    closes the sockets whose peer has gone, so that count
//	               counts the live ones: {"ok":true} (floor only)
//	send-rate SECONDS SIZE
//	               stamped SIZE-byte pushes to random clients with Send,
//	               as fast as one goroutine can with at most
//	               BaselineInflight unwritten, for SECONDS: FloorRun
//	               (baseline only)
//	send-paced RATE SECONDS SIZE
//	               the same, RATE pushes a second: FloorRun (baseline only)
//	quit           stops the server and returns
//
// End of input is a quit. A bad command is answered {"error":"..."} and the
// child carries on.
//
// If the environment variable MemProfileRateEnv holds a number, it becomes
// runtime.MemProfileRate before the server starts.
func RunChild(cfg ChildConfig, in io.Reader, out io.Writer) error {
	if v := os.Getenv(MemProfileRateEnv); v != "" {
		rate, err := strconv.Atoi(v)
		if err != nil || rate < 0 {
			return fmt.Errorf("bench: child: %s=%q: want a byte count", MemProfileRateEnv, v)
		}
		runtime.MemProfileRate = rate
	}
	srv, err := startChildServer(cfg)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	if err := enc.Encode(ChildHello{Addr: srv.Addr().String(), Pid: os.Getpid()}); err != nil {
		_ = srv.Close()
		return fmt.Errorf("bench: child: write hello: %w", err)
	}
	var cpuFile *os.File
	defer func() {
		if cpuFile != nil {
			pprof.StopCPUProfile()
			cpuFile.Close()
		}
	}()
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		verb, arg, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		var reply any
		switch verb {
		case "":
			continue
		case "stats":
			reply = childStats(srv, true)
		case "count":
			reply = childStats(srv, false)
		case "gc":
			runtime.GC()
			runtime.GC()
			debug.FreeOSMemory()
			reply = okReply{OK: true}
		case "heap":
			reply = okOrError(writeHeapProfile(arg))
		case "cpu-start":
			if cpuFile != nil {
				reply = okOrError(errors.New("a CPU profile is already running"))
				break
			}
			f, err := os.Create(arg)
			if err == nil {
				if err = pprof.StartCPUProfile(f); err != nil {
					f.Close()
				} else {
					cpuFile = f
				}
			}
			reply = okOrError(err)
		case "cpu-stop":
			if cpuFile == nil {
				reply = okOrError(errors.New("no CPU profile is running"))
				break
			}
			pprof.StopCPUProfile()
			err := cpuFile.Close()
			cpuFile = nil
			reply = okOrError(err)
		case "broadcast":
			reply = childBroadcast(srv, arg)
		case "floor-rate", "floor-paced", "floor-sweep":
			reply = floorCommand(srv, verb, arg)
		case "floor-prune":
			f, ok := srv.(*FloorServer)
			if !ok {
				reply = okOrError(errors.New("floor-prune needs the floor server"))
				break
			}
			_, err := f.Prune()
			reply = okOrError(err)
		case "send-rate", "send-paced":
			reply = sendCommand(srv, verb, arg)
		case "quit":
			err := srv.Close()
			_ = enc.Encode(okOrError(err))
			return err
		default:
			reply = okOrError(fmt.Errorf("unknown command %q (want stats, count, gc, heap, cpu-start, cpu-stop, broadcast, floor-rate, floor-paced, floor-sweep, floor-prune, send-rate, send-paced or quit)", verb))
		}
		if err := enc.Encode(reply); err != nil {
			_ = srv.Close()
			return fmt.Errorf("bench: child: write reply: %w", err)
		}
	}
	// EOF (or a broken pipe) means the parent is gone: quit.
	return srv.Close()
}

type okReply struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

func okOrError(err error) okReply {
	if err != nil {
		return okReply{Error: err.Error()}
	}
	return okReply{OK: true}
}

// BroadcastReply answers a child's broadcast command.
type BroadcastReply struct {
	Queued int64  `json:"queued"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// childBroadcaster is a child server that can push to every client.
type childBroadcaster interface {
	Broadcast(payload []byte) (relay.Counts, relay.Status)
}

// maxChildPayload bounds the payload a command may ask for.
const maxChildPayload = relay.DefaultMaxMessage

func parseSize(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > maxChildPayload {
		return 0, fmt.Errorf("payload size %q: want 0 to %d bytes", s, maxChildPayload)
	}
	return n, nil
}

func childBroadcast(srv childServer, arg string) BroadcastReply {
	b, ok := srv.(childBroadcaster)
	if !ok {
		return BroadcastReply{Error: "this server cannot broadcast"}
	}
	size, err := parseSize(strings.TrimSpace(arg))
	if err != nil {
		return BroadcastReply{Error: err.Error()}
	}
	counts, st := b.Broadcast(stamp.AppendPadded(nil, time.Now(), size))
	r := BroadcastReply{Queued: int64(counts.Queued), Status: st.String()}
	if st != relay.Queued {
		r.Error = "broadcast: " + st.String()
	}
	return r
}

// maxFloorRun bounds a floor write run.
const maxFloorRun = 10 * time.Minute

// floorCommand runs floor-rate, floor-paced or floor-sweep.
func floorCommand(srv childServer, verb, arg string) FloorRun {
	f, ok := srv.(*FloorServer)
	if !ok {
		return FloorRun{Error: verb + " needs the floor server"}
	}
	args := strings.Fields(arg)
	var (
		run FloorRun
		err error
	)
	switch {
	case verb == "floor-rate" && len(args) == 2:
		var d time.Duration
		var size int
		if d, size, err = parseRateArgs(args); err == nil {
			run, err = f.WriteRate(d, size)
		}
	case verb == "floor-paced" && len(args) == 3:
		var rate float64
		var d time.Duration
		var size int
		if rate, d, size, err = parsePacedArgs(args); err == nil {
			run, err = f.WritePaced(rate, d, size)
		}
	case verb == "floor-sweep" && len(args) == 1:
		var size int
		if size, err = parseSize(args[0]); err == nil {
			run, err = f.Sweep(size)
		}
	default:
		err = fmt.Errorf("%s %q: wrong arguments (floor-rate SECONDS SIZE, floor-paced RATE SECONDS SIZE, floor-sweep SIZE)", verb, arg)
	}
	if err != nil {
		run.Error = err.Error()
	}
	return run
}

// parseSeconds reads a push run's duration.
func parseSeconds(s string) (time.Duration, error) {
	v, err := strconv.ParseFloat(s, 64)
	d := time.Duration(v * float64(time.Second))
	if err != nil || d <= 0 || d > maxFloorRun {
		return 0, fmt.Errorf("duration %q: want seconds, more than 0 and at most %v", s, maxFloorRun)
	}
	return d, nil
}

// parseRateArgs reads SECONDS SIZE.
func parseRateArgs(args []string) (time.Duration, int, error) {
	d, err := parseSeconds(args[0])
	if err != nil {
		return 0, 0, err
	}
	size, err := parseSize(args[1])
	return d, size, err
}

// parsePacedArgs reads RATE SECONDS SIZE.
func parsePacedArgs(args []string) (float64, time.Duration, int, error) {
	rate, err := strconv.ParseFloat(args[0], 64)
	if err != nil || rate <= 0 || rate > 1e7 {
		return 0, 0, 0, fmt.Errorf("rate %q: want pushes a second, more than 0 and at most 10,000,000", args[0])
	}
	d, size, err := parseRateArgs(args[1:])
	return rate, d, size, err
}

// sendCommand runs send-rate or send-paced on the baseline.
func sendCommand(srv childServer, verb, arg string) FloorRun {
	b, ok := srv.(*Baseline)
	if !ok {
		return FloorRun{Error: verb + " needs the baseline server"}
	}
	args := strings.Fields(arg)
	var (
		run FloorRun
		err error
	)
	switch {
	case verb == "send-rate" && len(args) == 2:
		var d time.Duration
		var size int
		if d, size, err = parseRateArgs(args); err == nil {
			run, err = b.SendRate(d, size)
		}
	case verb == "send-paced" && len(args) == 3:
		var rate float64
		var d time.Duration
		var size int
		if rate, d, size, err = parsePacedArgs(args); err == nil {
			run, err = b.SendPaced(rate, d, size)
		}
	default:
		err = fmt.Errorf("%s %q: wrong arguments (send-rate SECONDS SIZE, send-paced RATE SECONDS SIZE)", verb, arg)
	}
	if err != nil {
		run.Error = err.Error()
	}
	return run
}

func writeHeapProfile(path string) error {
	if path == "" {
		return errors.New("heap needs a file path")
	}
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func childStats(srv childServer, full bool) ChildStats {
	st := ChildStats{Conns: int64(srv.Len()), Accepted: srv.Accepted()}
	if a, ok := srv.(*Accept4Server); ok {
		st.FirstAccept, st.LastAccept = a.AcceptTimes()
	}
	if !full {
		return st
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st.HeapAlloc, st.HeapInuse, st.HeapSys = ms.HeapAlloc, ms.HeapInuse, ms.HeapSys
	st.StackInuse, st.Sys = ms.StackInuse, ms.Sys
	st.Goroutines = runtime.NumGoroutine()
	st.Threads = countThreads()
	user, sys := cpuTime()
	st.CPUUserNs, st.CPUSysNs = user.Nanoseconds(), sys.Nanoseconds()
	if w, err := readRunqWait(); err == nil {
		st.RunqWaitNs = w.Nanoseconds()
	}
	rss, err := readVmRSS()
	if err != nil {
		st.Error = err.Error()
	}
	st.RSSBytes = rss
	return st
}

// countThreads returns the number of OS threads of this process, 0 if
// unknown.
func countThreads() int {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0
	}
	return len(ents)
}
