package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pushrelay/pushrelay/cluster"
	"github.com/pushrelay/pushrelay/ingress"
	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// serveFlags holds `pushrelay serve`'s flags before they become a
// relay.Config.
type serveFlags struct {
	listen, framing, slow          string
	loops, maxConns                int
	maxMessage, maxInbound, maxOut byteSize
	sndbuf                         byteSize
	keepalive, writeTimeout        time.Duration
	heartbeat, drainTimeout        time.Duration
	policyListen, policyFile       string
	policyMaxConns                 int
	logLevel, logFormat            string

	ingressPath, ingressMode             string
	ingressMaxConns, ingressMaxIDs       int
	ingressMaxTopics                     int
	ingressMaxRequest                    byteSize
	ingressFrameTimeout                  time.Duration
	maxTopicsPerConn, maxSubs, maxTopics int

	httpAddr, httpUnix, httpToken string
	httpMaxConns                  int
	httpHosts, httpOrigins        string

	web, webOrigins     string
	webMaxHeader        byteSize
	webHandshakeTimeout time.Duration
	webCompress         bool
	webCompressMin      byteSize

	reusePort              bool
	directWrites           bool
	natsURL, clusterPrefix string
	node                   int
	clusterTimeout         time.Duration
	clusterCompress        byteSize
}

func (f *serveFlags) register(fs *flagSet) {
	fs.StringVar(&f.listen, "listen", relay.DefaultListen, "The `HOST:PORT` clients connect to. Port 0 picks a free port.")
	fs.IntVar(&f.loops, "loops", 0, "How many event loops (`N`) run the client sockets; 0 means one per CPU core.")
	fs.StringVar(&f.framing, "framing", "nul", "How frames are delimited on the client listener: `nul` (payload then 0x00, Flash XMLSocket), line (payload then \\n) or len32 (4-byte big-endian length, then payload).")
	f.maxMessage = relay.DefaultMaxMessage
	fs.Var(&f.maxMessage, "max-message", "The largest payload accepted for a push, in `bytes` (suffixes KiB, MiB allowed).")
	f.maxInbound = relay.DefaultMaxInbound
	fs.Var(&f.maxInbound, "max-inbound", "How many `bytes` a client may send in total before it is disconnected; the relay never reads them. 0 disconnects a client on its first byte.")
	f.maxOut = relay.DefaultMaxOutbound
	fs.Var(&f.maxOut, "max-outbound", "The cap on each connection's unsent `bytes`; a message that would pass it triggers the --slow policy.")
	fs.Var(&f.sndbuf, "sndbuf", "SO_SNDBUF for every client socket, in `bytes` (the kernel doubles it): bounds the kernel memory a client that stops reading can hold, at the cost of the kernel's autotuning; 0 keeps autotuning.")
	fs.StringVar(&f.slow, "slow", "close", "What happens to a client whose unsent bytes would pass --max-outbound: `close` disconnects it, drop drops that message for that client only.")
	fs.IntVar(&f.maxConns, "max-conns", 0, "The most client connections held at once (`N`); more are closed at once and counted. 0 means the open-file limit minus a reserve (160, 7 per event loop, and --flash-policy-max-conns with the policy listener), logged at start.")
	fs.DurationVar(&f.keepalive, "keepalive", relay.DefaultKeepAlive, "TCP keepalive idle `time` before probes (three probes, a third of it apart); 0 turns keepalive off.")
	fs.DurationVar(&f.writeTimeout, "write-timeout", relay.DefaultWriteTimeout, "TCP_USER_TIMEOUT: a client that leaves written data unacknowledged this `long` is dropped by the kernel; 0 leaves the kernel default.")
	fs.DurationVar(&f.heartbeat, "heartbeat", 0, "Write an empty frame to every client at this `interval` (a lone \\n under line framing); 0 turns heartbeats off.")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", relay.DefaultDrainTimeout, "On SIGINT or SIGTERM, how `long` to keep writing queued messages before closing every connection.")
	fs.StringVar(&f.policyListen, "flash-policy-listen", "", "Serve the Flash socket policy on this `HOST:PORT` (Flash players ask port 843); empty turns it off.")
	fs.IntVar(&f.policyMaxConns, "flash-policy-max-conns", relay.DefaultFlashPolicyMaxConns, "The most Flash policy connections open at once (`N`); more are closed at once and counted. They come out of the descriptor budget, so the default --max-conns is lower by as many.")
	fs.StringVar(&f.policyFile, "flash-policy-file", "", "A `file` holding the cross-domain policy to serve; empty serves one that allows the client port from any domain.")
	fs.StringVar(&f.ingressPath, "ingress", "./pushrelay.sock", "The Unix socket `PATH` the web app pushes through (the ingress protocol, docs/protocol.md); empty turns it off.")
	fs.StringVar(&f.ingressMode, "ingress-mode", "0660", "Permission bits of the ingress socket, in `octal`: who may push.")
	fs.IntVar(&f.ingressMaxConns, "ingress-max-conns", ingress.DefaultMaxConns, "The most ingress connections open at once (`N`); more are told why and closed.")
	f.ingressMaxRequest = wire.DefaultMaxRequest
	fs.Var(&f.ingressMaxRequest, "ingress-max-request", "The largest ingress request frame, in `bytes`; it must hold --max-message and its fields.")
	fs.IntVar(&f.ingressMaxIDs, "ingress-max-ids", wire.DefaultMaxIDs, "The most client IDs in one send-to-many request (`N`, at most 65535).")
	fs.IntVar(&f.ingressMaxTopics, "ingress-max-topics", wire.DefaultMaxTopics, "The most topics in one subscribe or unsubscribe request (`N`, at most 65535).")
	fs.DurationVar(&f.ingressFrameTimeout, "ingress-frame-timeout", ingress.DefaultFrameTimeout, "How long one ingress request frame may take to arrive once it has begun (`DURATION`); a connection whose frame is still partial then gets an error and is closed. Idle connections between frames are kept.")
	fs.StringVar(&f.httpAddr, "http", ingress.DefaultHTTPAddr, "The `HOST:PORT` of the HTTP API (docs/http.md); empty turns it off. A non-loopback address needs --http-token.")
	fs.StringVar(&f.httpUnix, "http-unix", "", "Also serve the HTTP API on this Unix socket `PATH` (mode 0660); empty: no.")
	fs.StringVar(&f.httpToken, "http-token", "", "Require `Authorization: Bearer TOKEN` on every HTTP route but /healthz. Prefer the environment variable: command lines are visible in ps.")
	fs.IntVar(&f.httpMaxConns, "http-max-conns", ingress.DefaultHTTPMaxConns, "The most HTTP connections open at once (`N`), both listeners together.")
	fs.StringVar(&f.httpHosts, "http-hosts", "", "Comma-separated DNS `NAMES` the HTTP API answers to in the Host header, besides IP addresses and localhost (against DNS rebinding; docs/http.md); * allows any.")
	fs.StringVar(&f.httpOrigins, "http-origins", "", "Comma-separated browser `ORIGINS`, such as https://app.example.com, whose requests the HTTP API serves (with CORS headers); others that send an Origin header are refused; * allows any.")
	fs.StringVar(&f.web, "web", ":8845", "The `HOST:PORT` browsers connect to: WebSocket at /ws, Server-Sent Events at /sse, a demo page at / (docs/web.md); empty turns it off.")
	f.webMaxHeader = relay.DefaultWebMaxHeader
	fs.Var(&f.webMaxHeader, "web-max-header", "The largest request head (request line and headers) a browser may send, in `bytes`; more is answered 431.")
	fs.DurationVar(&f.webHandshakeTimeout, "web-handshake-timeout", relay.DefaultWebHandshakeTimeout, "How `long` a web connection may take to send its request head; then it is answered 408 and closed.")
	fs.StringVar(&f.webOrigins, "web-origins", "", "Comma-separated `origins` (scheme://host[:port]) whose pages may connect; others get 403. Empty allows any; requests without Origin are always allowed.")
	fs.BoolVar(&f.webCompress, "web-compress", false, "Compress WebSocket messages with permessage-deflate for browsers that offer it: each message is compressed once, for every such client.")
	f.webCompressMin = relay.DefaultWebCompressMin
	fs.Var(&f.webCompressMin, "web-compress-min", "The smallest payload, in `bytes`, that --web-compress compresses.")
	fs.IntVar(&f.maxTopicsPerConn, "max-topics-per-conn", relay.DefaultMaxTopicsPerConn, "The most topics one client may be subscribed to (`N`).")
	fs.IntVar(&f.maxSubs, "max-subscribers", 0, "The most subscribers one topic may have (`N`); 0 means no cap.")
	fs.IntVar(&f.maxTopics, "max-topics", relay.DefaultMaxTopics, "The most topics that may exist at once (`N`); a topic exists while it has a subscriber.")
	fs.BoolVar(&f.directWrites, "direct-writes", true, "Let the goroutine that takes a push to one client write it to the client's socket itself when that client's event loop is idle, sparing a thread wake-up (lower latency at low push rates); false sends every push through the event loop.")
	fs.BoolVar(&f.reusePort, "reuse-port", false, "Share the client port with other relay processes (SO_REUSEPORT): the kernel spreads new connections over every process listening. Without it a port already bound is an error at start.")
	fs.StringVar(&f.natsURL, "nats", "", "Join a relay cluster through the NATS server at this `URL` (several: comma-separated); needs --node. Empty: a standalone relay (docs/cluster.md).")
	fs.IntVar(&f.node, "node", 0, "This relay's node `ID` in the cluster, 1 to 65535, unique among the relays on one NATS: it is written into every client ID, so any node can route a push to this one.")
	fs.StringVar(&f.clusterPrefix, "cluster-prefix", cluster.DefaultPrefix, "The `prefix` of every NATS subject the cluster uses; several clusters may share one NATS under different prefixes.")
	fs.DurationVar(&f.clusterTimeout, "cluster-timeout", cluster.DefaultTimeout, "How `long` a push waits for the other nodes it involves to answer; past it they are reported unreachable.")
	f.clusterCompress = cluster.DefaultCompressMin
	fs.Var(&f.clusterCompress, "cluster-compress-min", "Payloads of at least this many `bytes` cross NATS compressed (s2) when that saves bytes; 0 never compresses.")
	fs.StringVar(&f.logLevel, "log-level", "info", "Log `level`: debug (adds one line per connection), info, warn or error.")
	fs.StringVar(&f.logFormat, "log-format", "text", "Log `format`: text or json.")
}

// config turns the flags into a relay.Config, with errors that name the flag.
func (f *serveFlags) config(logger *slog.Logger) (relay.Config, error) {
	cfg := relay.Config{
		Listen:              f.listen,
		Loops:               f.loops,
		MaxMessage:          int(f.maxMessage),
		MaxInbound:          int(f.maxInbound),
		MaxOutbound:         int(f.maxOut),
		SendBuffer:          int(f.sndbuf),
		MaxConns:            f.maxConns,
		KeepAlive:           f.keepalive,
		WriteTimeout:        f.writeTimeout,
		Heartbeat:           f.heartbeat,
		DrainTimeout:        f.drainTimeout,
		FlashPolicyListen:   f.policyListen,
		FlashPolicyMaxConns: f.policyMaxConns,
		Web:                 f.web,
		WebMaxHeader:        int(f.webMaxHeader),
		WebHandshakeTimeout: f.webHandshakeTimeout,
		WebCompress:         f.webCompress,
		WebCompressMin:      int(f.webCompressMin),
		MaxTopicsPerConn:    f.maxTopicsPerConn,
		MaxSubscribers:      f.maxSubs,
		MaxTopics:           f.maxTopics,
		ReusePort:           f.reusePort,
		NoDirectWrites:      !f.directWrites,
		Logger:              logger,
	}
	switch {
	case f.natsURL != "" && (f.node < 1 || f.node > 65535):
		return cfg, errors.New("--nats needs --node: an ID from 1 to 65535, unique in the cluster")
	case f.natsURL == "" && f.node != 0:
		return cfg, errors.New("--node needs --nats: a node ID means something only in a cluster")
	case f.clusterTimeout <= 0:
		return cfg, errors.New("--cluster-timeout: want a positive duration")
	}
	cfg.NodeID = uint16(f.node)
	if f.maxTopicsPerConn <= 0 || f.maxTopics <= 0 || f.maxSubs < 0 {
		return cfg, errors.New("--max-topics-per-conn and --max-topics want a positive count, --max-subscribers 0 or more")
	}
	var err error
	if cfg.Framing, err = relay.ParseFraming(f.framing); err != nil {
		return cfg, fmt.Errorf("--framing: %v", err)
	}
	if cfg.Slow, err = relay.ParseSlowPolicy(f.slow); err != nil {
		return cfg, fmt.Errorf("--slow: %v", err)
	}
	// On the command line 0 means "none"/"off"; in relay.Config zero means
	// "default" and relay.Off means off.
	if f.maxInbound == 0 {
		cfg.MaxInbound = relay.Off
	}
	if f.keepalive == 0 {
		cfg.KeepAlive = relay.Off
	}
	if f.writeTimeout == 0 {
		cfg.WriteTimeout = relay.Off
	}
	if f.maxMessage == 0 {
		return cfg, errors.New("--max-message: want at least 1 byte")
	}
	if f.maxOut == 0 {
		return cfg, errors.New("--max-outbound: want at least one frame's worth of bytes")
	}
	for _, o := range strings.Split(f.webOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			cfg.WebOrigins = append(cfg.WebOrigins, o)
		}
	}
	if f.webHandshakeTimeout <= 0 {
		return cfg, errors.New("--web-handshake-timeout: want a positive duration")
	}
	if f.webCompressMin == 0 {
		cfg.WebCompressMin = 1
	}
	if f.drainTimeout <= 0 {
		return cfg, errors.New("--drain-timeout: want a positive duration")
	}
	if f.policyMaxConns <= 0 {
		return cfg, errors.New("--flash-policy-max-conns: want a positive count")
	}
	if f.policyFile != "" {
		doc, err := os.ReadFile(f.policyFile)
		if err != nil {
			return cfg, fmt.Errorf("--flash-policy-file: %v", err)
		}
		doc = bytes.TrimRight(doc, "\x00\r\n\t ")
		if len(doc) == 0 || len(doc) > 64<<10 || bytes.IndexByte(doc, 0) >= 0 {
			return cfg, fmt.Errorf("--flash-policy-file: %s must hold one policy document, 1 byte to 64 KiB, with no 0x00 inside", f.policyFile)
		}
		if f.policyListen == "" {
			return cfg, errors.New("--flash-policy-file needs --flash-policy-listen")
		}
		cfg.FlashPolicy = doc
	}
	return cfg, nil
}

// ingressConfig turns the ingress flags into an ingress.Config.
func (f *serveFlags) ingressConfig(logger *slog.Logger) (ingress.Config, error) {
	cfg := ingress.Config{
		Path:       f.ingressPath,
		MaxConns:   f.ingressMaxConns,
		MaxRequest: int(f.ingressMaxRequest),
		MaxIDs:     f.ingressMaxIDs,
		MaxTopics:  f.ingressMaxTopics,
		Logger:     logger,

		FrameTimeout: f.ingressFrameTimeout,
	}
	if f.ingressFrameTimeout <= 0 {
		return cfg, fmt.Errorf("--ingress-frame-timeout %v: want a positive duration, such as 5s", f.ingressFrameTimeout)
	}
	mode, err := strconv.ParseUint(f.ingressMode, 8, 32)
	if err != nil || mode == 0 || mode > 0o777 {
		return cfg, fmt.Errorf("--ingress-mode: %q is not permission bits in octal, such as 0660", f.ingressMode)
	}
	cfg.Mode = os.FileMode(mode)
	if f.ingressMaxConns <= 0 || f.ingressMaxIDs <= 0 || f.ingressMaxTopics <= 0 || f.ingressMaxRequest <= 0 {
		return cfg, errors.New("--ingress-max-conns, --ingress-max-ids, --ingress-max-topics and --ingress-max-request want positive values")
	}
	if f.httpMaxConns <= 0 {
		return cfg, errors.New("--http-max-conns wants a positive count")
	}
	if room := relay.FileReserve - relay.OwnFiles; f.ingressMaxConns+f.httpMaxConns > room {
		return cfg, fmt.Errorf("--ingress-max-conns %d plus --http-max-conns %d exceed %d, the descriptors the relay keeps back from clients for ingress connections", f.ingressMaxConns, f.httpMaxConns, room)
	}
	return cfg, nil
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %q is not debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", "Runs the relay: accepts client connections, writes each its ID, and writes what the web app pushes.", stderr)
	var f serveFlags
	f.register(fs)
	if err := fs.parse(args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "pushrelay serve: %v\n", err)
		return 2
	}
	logger, err := newLogger(f.logLevel, f.logFormat, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "pushrelay serve: %v\n", err)
		return 2
	}
	clusterLogger := logger // the cluster names the node itself
	if f.node != 0 {
		// In a cluster every line names its node, start-up and shutdown
		// included: the nodes of run-cluster share one terminal. Last on
		// the line, so what reads "msg=... addr=..." still does.
		logger = slog.New(nodeHandler{logger.Handler(), slog.Int("node", f.node)})
	}
	cfg, err := f.config(logger)
	if err != nil {
		fmt.Fprintf(stderr, "pushrelay serve: %v\n", err)
		return 2
	}
	// Catch signals before anything listens: a SIGTERM that came between
	// the "listening" log line and the handler would kill the relay with
	// Go's default action, undrained and with a failing status.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	srv, err := relay.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "pushrelay serve: %v\n", err)
		return 2
	}
	// The ingress talks to the relay, or, in a cluster, to the node that
	// routes each push to the relay holding its clients.
	var rel ingress.Relay = srv
	var node *cluster.Node
	if f.natsURL != "" {
		compress := int(f.clusterCompress)
		if compress == 0 {
			compress = cluster.Off
		}
		node, err = cluster.New(cluster.Config{NATS: f.natsURL, Prefix: f.clusterPrefix, Timeout: f.clusterTimeout, CompressMin: compress, Logger: clusterLogger}, srv)
		if err != nil {
			fmt.Fprintf(stderr, "pushrelay serve: %v\n", err)
			return 2
		}
		rel = node
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// gnet's event loops wait in epoll_wait as plain system calls and
		// keep their P while they wait. With GOMAXPROCS equal to the loop
		// count (Go's default on a host with one loop per core), the
		// ingress goroutines then wait for sysmon to take a P back, up to
		// 10 ms (measured: a push's p99 of 5 ms at 1,000 pushes/s, 92 us
		// with one P more). The loops' Ps are mostly idle, so one extra
		// P costs nothing when nothing waits.
		loops := cfg.Loops
		if loops == 0 {
			loops = runtime.NumCPU()
		}
		runtime.GOMAXPROCS(loops + 1)
	}
	icfg, err := f.ingressConfig(logger)
	if err != nil {
		fmt.Fprintf(stderr, "pushrelay serve: %v\n", err)
		return 2
	}
	// Claim the ingress socket before the client port, so a second relay
	// started by mistake fails before it touches anything.
	var unix *ingress.UnixServer
	if icfg.Path != "" {
		if unix, err = ingress.ListenUnix(icfg, rel, srv.Config().MaxMessage); err != nil {
			fmt.Fprintf(stderr, "pushrelay serve: %v\n", err)
			if errors.Is(err, ingress.ErrBadConfig) {
				return 2
			}
			return 1
		}
	}
	var httpSrv *ingress.HTTPServer
	if f.httpAddr != "" || f.httpUnix != "" {
		hcfg := ingress.HTTPConfig{Addr: f.httpAddr, UnixPath: f.httpUnix, Token: f.httpToken, MaxConns: f.httpMaxConns, MaxIDs: f.ingressMaxIDs, MaxTopics: f.ingressMaxTopics, Logger: logger,
			Hosts: splitList(f.httpHosts), Origins: splitList(f.httpOrigins)}
		if unix != nil {
			hcfg.Extra = unix.Metrics
		}
		if httpSrv, err = ingress.ListenHTTP(hcfg, rel, srv.Config().MaxMessage); err != nil {
			if unix != nil {
				unix.Close()
			}
			fmt.Fprintf(stderr, "pushrelay serve: %v\n", err)
			if errors.Is(err, ingress.ErrBadConfig) {
				return 2
			}
			return 1
		}
	}
	if err := srv.Start(); err != nil {
		if unix != nil {
			unix.Close()
		}
		if httpSrv != nil {
			httpSrv.Close()
		}
		fmt.Fprintf(stderr, "pushrelay serve: %v\n", err)
		return 1
	}
	if node != nil {
		if err := node.Start(); err != nil {
			srv.Shutdown(context.Background())
			if unix != nil {
				unix.Close()
			}
			if httpSrv != nil {
				httpSrv.Close()
			}
			fmt.Fprintf(stderr, "pushrelay serve: %v\n", err)
			return 1
		}
		// Leave the cluster before draining: other nodes then answer
		// "unknown" for this node's clients instead of queuing for them.
		defer node.Close()
	}
	ingressErr := make(chan error, 2)
	if unix != nil {
		go func() { ingressErr <- unix.Serve() }()
		defer unix.Close()
	}
	if httpSrv != nil {
		go func() {
			if err := httpSrv.Serve(); err != nil {
				ingressErr <- err
			}
		}()
		// Deferred calls run last-in first-out: HTTP closes before the
		// Unix socket, both after the relay has drained, so health
		// checks answer 503 during the drain.
		defer httpSrv.Close()
	}

	select {
	case sig := <-sigs:
		logger.Info("shutting down", "signal", sig.String(), "drain_timeout", cfg.DrainTimeout.String())
		if node != nil {
			node.Close()
		}
		go func() {
			// A second signal means "now".
			<-sigs
			logger.Warn("second signal: exiting without draining")
			os.Exit(1)
		}()
		if err := srv.Shutdown(context.Background()); err != nil {
			logger.Error("shutdown", "err", err)
			return 1
		}
		return 0
	case <-srv.Done():
		logger.Error("event loops stopped unexpectedly", "err", srv.Err())
		return 1
	case err := <-ingressErr:
		if err == nil {
			err = errors.New("its accept loop returned without an error")
		}
		logger.Error("ingress stopped unexpectedly", "err", err)
		srv.Shutdown(context.Background())
		return 1
	}
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// nodeHandler adds a cluster node's attribute at the end of every record.
type nodeHandler struct {
	slog.Handler
	node slog.Attr
}

func (h nodeHandler) Handle(ctx context.Context, r slog.Record) error {
	r.AddAttrs(h.node)
	return h.Handler.Handle(ctx, r)
}

func (h nodeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return nodeHandler{h.Handler.WithAttrs(as), h.node}
}

func (h nodeHandler) WithGroup(name string) slog.Handler {
	return nodeHandler{h.Handler.WithGroup(name), h.node}
}
