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
	"strconv"
	"strings"
	"syscall"

	"github.com/pushrelay/pushrelay/cluster"
	"github.com/pushrelay/pushrelay/ingress"
	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// serveConfig is everything `pushrelay serve` runs on: the components' own
// Config structs, which the flags fill directly (as nats-server's
// ConfigureOptions binds its flags onto Options), and the few values the
// command line spells differently, which finish turns into Config values.
type serveConfig struct {
	Relay   relay.Config
	Ingress ingress.Config
	HTTP    ingress.HTTPConfig
	Cluster cluster.Config

	// Spelled differently on the command line: names (framing, slow),
	// octal (ingressMode), a file to read (policyFile), comma-separated
	// lists, the negation of relay.Config.NoDirectWrites, a node ID wider
	// than relay.Config.NodeID so that a bad one gets a clear error, and
	// a compression threshold whose 0 means cluster.Off.
	framing, slow, ingressMode, policyFile string
	webOrigins, httpHosts, httpOrigins     string
	directWrites                           bool
	node                                   int
	clusterCompress                        byteSize
	logLevel, logFormat                    string
	readyFile                              string
}

// bytesVar binds a byte-count flag straight onto an int Config field.
func bytesVar(fs *flagSet, p *int, name string, value int, usage string) {
	*p = value
	fs.Var((*byteSize)(p), name, usage)
}

func (c *serveConfig) register(fs *flagSet) {
	r, in, h, cl := &c.Relay, &c.Ingress, &c.HTTP, &c.Cluster
	fs.StringVar(&r.Listen, "listen", relay.DefaultListen, "The `HOST:PORT` clients connect to. Port 0 picks a free port.")
	fs.IntVar(&r.Loops, "loops", 0, "How many event loops (`N`) run the client sockets; 0 means one per CPU core.")
	fs.StringVar(&c.framing, "framing", "nul", "How frames are delimited on the client listener: `nul` (payload then 0x00, Flash XMLSocket), line (payload then \\n) or len32 (4-byte big-endian length, then payload).")
	bytesVar(fs, &r.MaxMessage, "max-message", relay.DefaultMaxMessage, "The largest payload accepted for a push, in `bytes` (suffixes KiB, MiB allowed).")
	bytesVar(fs, &r.MaxInbound, "max-inbound", relay.DefaultMaxInbound, "How many `bytes` a client may send in total before it is disconnected; the relay never reads them. 0 disconnects a client on its first byte.")
	bytesVar(fs, &r.MaxOutbound, "max-outbound", relay.DefaultMaxOutbound, "The cap on each connection's unsent `bytes`; a message that would pass it triggers the --slow policy.")
	bytesVar(fs, &r.SendBuffer, "sndbuf", 0, "SO_SNDBUF for every client socket, in `bytes` (the kernel doubles it): bounds the kernel memory a client that stops reading can hold, at the cost of the kernel's autotuning; 0 keeps autotuning.")
	fs.StringVar(&c.slow, "slow", "close", "What happens to a client whose unsent bytes would pass --max-outbound: `close` disconnects it, drop drops that message for that client only.")
	fs.IntVar(&r.MaxConns, "max-conns", 0, "The most client connections held at once (`N`); more are closed at once and counted. 0 means the open-file limit minus a reserve (160, 7 per event loop, and --flash-policy-max-conns with the policy listener), logged at start.")
	fs.DurationVar(&r.KeepAlive, "keepalive", relay.DefaultKeepAlive, "TCP keepalive idle `time` before probes (three probes, a third of it apart); 0 turns keepalive off.")
	fs.DurationVar(&r.WriteTimeout, "write-timeout", relay.DefaultWriteTimeout, "TCP_USER_TIMEOUT: a client that leaves written data unacknowledged this `long` is dropped by the kernel; 0 leaves the kernel default.")
	fs.DurationVar(&r.Heartbeat, "heartbeat", 0, "Write an empty frame to every client at this `interval` (a lone \\n under line framing); 0 turns heartbeats off.")
	fs.DurationVar(&r.DrainTimeout, "drain-timeout", relay.DefaultDrainTimeout, "On SIGINT or SIGTERM, how `long` to keep writing queued messages before closing every connection.")
	fs.StringVar(&r.FlashPolicyListen, "flash-policy-listen", "", "Serve the Flash socket policy on this `HOST:PORT` (Flash players ask port 843); empty turns it off.")
	fs.IntVar(&r.FlashPolicyMaxConns, "flash-policy-max-conns", relay.DefaultFlashPolicyMaxConns, "The most Flash policy connections open at once (`N`); more are closed at once and counted. They come out of the descriptor budget, so the default --max-conns is lower by as many.")
	fs.StringVar(&c.policyFile, "flash-policy-file", "", "A `file` holding the cross-domain policy to serve; empty serves one that allows the client port from any domain.")
	fs.StringVar(&in.Path, "ingress", ingress.DefaultPath, "The Unix socket `PATH` the web app pushes through (the ingress protocol, docs/protocol.md); empty turns it off.")
	fs.StringVar(&c.ingressMode, "ingress-mode", fmt.Sprintf("%#o", ingress.DefaultMode), "Permission bits of the ingress socket, in `octal`: who may push.")
	fs.IntVar(&in.MaxConns, "ingress-max-conns", ingress.DefaultMaxConns, "The most ingress connections open at once (`N`); more are told why and closed.")
	bytesVar(fs, &in.MaxRequest, "ingress-max-request", wire.DefaultMaxRequest, "The largest ingress request frame, in `bytes`; it must hold --max-message and its fields.")
	fs.IntVar(&in.MaxIDs, "ingress-max-ids", wire.DefaultMaxIDs, "The most client IDs in one send-to-many request (`N`, at most 65535).")
	fs.IntVar(&in.MaxTopics, "ingress-max-topics", wire.DefaultMaxTopics, "The most topics in one subscribe or unsubscribe request (`N`, at most 65535).")
	fs.DurationVar(&in.FrameTimeout, "ingress-frame-timeout", ingress.DefaultFrameTimeout, "How long one ingress request frame may take to arrive once it has begun (`DURATION`); a connection whose frame is still partial then gets an error and is closed. Idle connections between frames are kept.")
	fs.StringVar(&h.Addr, "http", ingress.DefaultHTTPAddr, "The `HOST:PORT` of the HTTP API (docs/http.md); empty turns it off. A non-loopback address needs --http-token.")
	fs.StringVar(&h.UnixPath, "http-unix", "", "Also serve the HTTP API on this Unix socket `PATH` (mode 0660); empty: no.")
	fs.StringVar(&h.Token, "http-token", "", "Require `Authorization: Bearer TOKEN` on every HTTP route but /healthz. Prefer the environment variable: command lines are visible in ps.")
	fs.IntVar(&h.MaxConns, "http-max-conns", ingress.DefaultHTTPMaxConns, "The most HTTP connections open at once (`N`), both listeners together.")
	fs.StringVar(&c.httpHosts, "http-hosts", "", "Comma-separated DNS `NAMES` the HTTP API answers to in the Host header, besides IP addresses and localhost (against DNS rebinding; docs/http.md); * allows any.")
	fs.StringVar(&c.httpOrigins, "http-origins", "", "Comma-separated browser `ORIGINS`, such as https://app.example.com, whose requests the HTTP API serves (with CORS headers); others that send an Origin header are refused; * allows any.")
	fs.StringVar(&r.Web, "web", ":8845", "The `HOST:PORT` browsers connect to: WebSocket at /ws, Server-Sent Events at /sse, a demo page at / (docs/web.md); empty turns it off.")
	bytesVar(fs, &r.WebMaxHeader, "web-max-header", relay.DefaultWebMaxHeader, "The largest request head (request line and headers) a browser may send, in `bytes`; more is answered 431.")
	fs.DurationVar(&r.WebHandshakeTimeout, "web-handshake-timeout", relay.DefaultWebHandshakeTimeout, "How `long` a web connection may take to send its request head; then it is answered 408 and closed.")
	fs.StringVar(&c.webOrigins, "web-origins", "", "Comma-separated `origins` (scheme://host[:port]) whose pages may connect; others get 403. Empty allows any; requests without Origin are always allowed.")
	fs.BoolVar(&r.WebCompress, "web-compress", false, "Compress WebSocket messages with permessage-deflate for browsers that offer it: each message is compressed once, for every such client.")
	bytesVar(fs, &r.WebCompressMin, "web-compress-min", relay.DefaultWebCompressMin, "The smallest payload, in `bytes`, that --web-compress compresses.")
	fs.IntVar(&r.MaxTopicsPerConn, "max-topics-per-conn", relay.DefaultMaxTopicsPerConn, "The most topics one client may be subscribed to (`N`).")
	fs.IntVar(&r.MaxSubscribers, "max-subscribers", 0, "The most subscribers one topic may have (`N`); 0 means no cap.")
	fs.IntVar(&r.MaxTopics, "max-topics", relay.DefaultMaxTopics, "The most topics that may exist at once (`N`); a topic exists while it has a subscriber.")
	fs.BoolVar(&c.directWrites, "direct-writes", true, "Let the goroutine that takes a push to one client write it to the client's socket itself when that client's event loop is idle, sparing a thread wake-up (lower latency at low push rates); false sends every push through the event loop.")
	fs.BoolVar(&r.OwnAccept, "own-accept", false, "Accept client and web connections in the relay and hand them to the event loops, so that running out of descriptors or socket memory in accept (EMFILE, ENFILE) is a counted pause (pushrelay_accept_errors_total) instead of stopping the relay; costs about 1.5 times the CPU per accepted connection (docs/operations.md, Listeners).")
	fs.BoolVar(&r.ReusePort, "reuse-port", false, "Share the client port with other relay processes (SO_REUSEPORT): the kernel spreads new connections over every process listening. Without it a port already bound is an error at start.")
	fs.StringVar(&cl.NATS, "nats", "", "Join a relay cluster through the NATS server at this `URL` (several: comma-separated); needs --node. Empty: a standalone relay (docs/cluster.md).")
	fs.IntVar(&c.node, "node", 0, "This relay's node `ID` in the cluster, 1 to 65535, unique among the relays on one NATS: it is written into every client ID, so any node can route a push to this one.")
	fs.StringVar(&cl.Prefix, "cluster-prefix", cluster.DefaultPrefix, "The `prefix` of every NATS subject the cluster uses; several clusters may share one NATS under different prefixes.")
	fs.DurationVar(&cl.Timeout, "cluster-timeout", cluster.DefaultTimeout, "How `long` a push waits for the other nodes it involves to answer; past it they are reported unreachable.")
	c.clusterCompress = cluster.DefaultCompressMin
	fs.Var(&c.clusterCompress, "cluster-compress-min", "Payloads of at least this many `bytes` cross NATS compressed (s2) when that saves bytes; 0 never compresses.")
	fs.StringVar(&c.logLevel, "log-level", "info", "Log `level`: debug (adds one line per connection), info, warn or error.")
	fs.StringVar(&c.logFormat, "log-format", "text", "Log `format`: text or json.")

	fs.StringVar(&c.readyFile, "ready-file", "", "Once every listener is bound and the relay serves, write this `PATH` (atomically: a temporary file, then a rename) with one JSON object: pid, version, node and the address of every listener as bound (port 0 resolved; \"\" for what is off), for scripts and tests to wait on; removed at exit. Empty: none.")
}

// finish turns the command line's spellings into Config values, with
// errors that name the flag; the Configs' own checks run in New and Listen.
func (c *serveConfig) finish(logger, clusterLogger *slog.Logger) error {
	r := &c.Relay
	r.Logger, c.Ingress.Logger, c.HTTP.Logger, c.Cluster.Logger = logger, logger, logger, clusterLogger
	r.NoDirectWrites = !c.directWrites
	switch {
	case c.Cluster.NATS != "" && (c.node < 1 || c.node > 65535):
		return errors.New("--nats needs --node: an ID from 1 to 65535, unique in the cluster")
	case c.Cluster.NATS == "" && c.node != 0:
		return errors.New("--node needs --nats: a node ID means something only in a cluster")
	case c.Cluster.Timeout <= 0:
		return errors.New("--cluster-timeout: want a positive duration")
	}
	r.NodeID = uint16(c.node)
	c.Cluster.CompressMin = int(c.clusterCompress)
	if c.clusterCompress == 0 {
		c.Cluster.CompressMin = cluster.Off
	}
	if r.MaxTopicsPerConn <= 0 || r.MaxTopics <= 0 || r.MaxSubscribers < 0 {
		return errors.New("--max-topics-per-conn and --max-topics want a positive count, --max-subscribers 0 or more")
	}
	var err error
	if r.Framing, err = relay.ParseFraming(c.framing); err != nil {
		return fmt.Errorf("--framing: %v", err)
	}
	if r.Slow, err = relay.ParseSlowPolicy(c.slow); err != nil {
		return fmt.Errorf("--slow: %v", err)
	}
	// On the command line 0 means "none"/"off"; in relay.Config zero means
	// "default" and relay.Off means off.
	if r.MaxInbound == 0 {
		r.MaxInbound = relay.Off
	}
	if r.KeepAlive == 0 {
		r.KeepAlive = relay.Off
	}
	if r.WriteTimeout == 0 {
		r.WriteTimeout = relay.Off
	}
	if r.MaxMessage == 0 {
		return errors.New("--max-message: want at least 1 byte")
	}
	if r.MaxOutbound == 0 {
		return errors.New("--max-outbound: want at least one frame's worth of bytes")
	}
	r.WebOrigins = splitList(c.webOrigins)
	if r.WebHandshakeTimeout <= 0 {
		return errors.New("--web-handshake-timeout: want a positive duration")
	}
	if r.WebCompressMin == 0 {
		r.WebCompressMin = 1
	}
	if r.DrainTimeout <= 0 {
		return errors.New("--drain-timeout: want a positive duration")
	}
	if r.FlashPolicyMaxConns <= 0 {
		return errors.New("--flash-policy-max-conns: want a positive count")
	}
	if c.policyFile != "" {
		doc, err := os.ReadFile(c.policyFile)
		if err != nil {
			return fmt.Errorf("--flash-policy-file: %v", err)
		}
		doc = bytes.TrimRight(doc, "\x00\r\n\t ")
		if len(doc) == 0 || len(doc) > 64<<10 || bytes.IndexByte(doc, 0) >= 0 {
			return fmt.Errorf("--flash-policy-file: %s must hold one policy document, 1 byte to 64 KiB, with no 0x00 inside", c.policyFile)
		}
		if r.FlashPolicyListen == "" {
			return errors.New("--flash-policy-file needs --flash-policy-listen")
		}
		r.FlashPolicy = doc
	}
	return nil
}

// finishIngress does finish's work for the ingress and HTTP flags.
func (c *serveConfig) finishIngress() error {
	in, h := &c.Ingress, &c.HTTP
	if in.FrameTimeout <= 0 {
		return fmt.Errorf("--ingress-frame-timeout %v: want a positive duration, such as 5s", in.FrameTimeout)
	}
	mode, err := strconv.ParseUint(c.ingressMode, 8, 32)
	if err != nil || mode == 0 || mode > 0o777 {
		return fmt.Errorf("--ingress-mode: %q is not permission bits in octal, such as 0660", c.ingressMode)
	}
	in.Mode = os.FileMode(mode)
	if in.MaxConns <= 0 || in.MaxIDs <= 0 || in.MaxTopics <= 0 || in.MaxRequest <= 0 {
		return errors.New("--ingress-max-conns, --ingress-max-ids, --ingress-max-topics and --ingress-max-request want positive values")
	}
	if h.MaxConns <= 0 {
		return errors.New("--http-max-conns wants a positive count")
	}
	if room := relay.FileReserve - relay.OwnFiles; in.MaxConns+h.MaxConns > room {
		return fmt.Errorf("--ingress-max-conns %d plus --http-max-conns %d exceed %d, the descriptors the relay keeps back from clients for ingress connections", in.MaxConns, h.MaxConns, room)
	}
	h.MaxIDs, h.MaxTopics = in.MaxIDs, in.MaxTopics
	h.Hosts, h.Origins = splitList(c.httpHosts), splitList(c.httpOrigins)
	return nil
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
	var c serveConfig
	c.register(fs)
	if err := fs.parse(args, stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "pushrelay serve: %v\n", err)
		return 2
	}
	logger, err := newLogger(c.logLevel, c.logFormat, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "pushrelay serve: %v\n", err)
		return 2
	}
	clusterLogger := logger // the cluster names the node itself
	if c.node != 0 {
		// In a cluster every line names its node, start-up and shutdown
		// included: the nodes of run-cluster share one terminal. Last on
		// the line, so what reads "msg=... addr=..." still does.
		logger = slog.New(nodeHandler{logger.Handler(), slog.Int("node", c.node)})
	}
	if err := c.finish(logger, clusterLogger); err != nil {
		fmt.Fprintf(stderr, "pushrelay serve: %v\n", err)
		return 2
	}
	// Catch signals before anything listens: a SIGTERM that came between
	// the "listening" log line and the handler would kill the relay with
	// Go's default action, undrained and with a failing status.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	var a app
	if err := a.Start(&c); err != nil {
		fmt.Fprintf(stderr, "pushrelay serve: %v\n", err)
		return exitStatus(err)
	}
	select {
	case sig := <-sigs:
		logger.Info("shutting down", "signal", sig.String(), "drain_timeout", c.Relay.DrainTimeout.String())
		go func() {
			// A second signal means "now".
			<-sigs
			logger.Warn("second signal: exiting without draining")
			os.Exit(1)
		}()
		if err := a.Close(); err != nil {
			logger.Error("shutdown", "err", err)
			return 1
		}
		return 0
	case <-a.srv.Done():
		logger.Error("event loops stopped unexpectedly", "err", a.srv.Err())
		a.Close()
		return 1
	case err := <-a.ingressErr:
		if err == nil {
			err = errors.New("its accept loop returned without an error")
		}
		logger.Error("ingress stopped unexpectedly", "err", err)
		a.Close()
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
