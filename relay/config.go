package relay

import (
	"cmp"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"time"
)

// SlowPolicy says what happens to a client whose unsent bytes would pass
// Config.MaxOutbound.
type SlowPolicy uint8

const (
	// SlowClose disconnects the client (the default).
	SlowClose SlowPolicy = iota
	// SlowDrop drops the message for that client only and keeps it connected.
	SlowDrop
)

// String returns the policy's flag name.
func (p SlowPolicy) String() string {
	if p == SlowDrop {
		return "drop"
	}
	return "close"
}

// ParseSlowPolicy reads a policy name ("close", "drop") for Config.Slow.
func ParseSlowPolicy(s string) (SlowPolicy, error) {
	switch s {
	case "close":
		return SlowClose, nil
	case "drop":
		return SlowDrop, nil
	}
	return 0, fmt.Errorf("unknown slow-consumer policy %q (want close or drop)", s)
}

// Defaults. A zero field in Config means the default below.
const (
	DefaultListen       = ":8843"
	DefaultMaxInbound   = 1 << 10
	DefaultMaxOutbound  = 256 << 10
	DefaultKeepAlive    = 30 * time.Second
	DefaultWriteTimeout = 30 * time.Second
	DefaultDrainTimeout = 5 * time.Second
	DefaultMailboxItems = 1 << 16
	DefaultMailboxBytes = 64 << 20

	// FileReserve is how many file descriptors the default MaxConns
	// leaves for everything that is not a client: ingress connections (64
	// Unix, 32 HTTP by default) and 64 for listeners, epoll and doorbell
	// sockets, log files and the like. gnet stops its engine on EMFILE in
	// accept, so client connections must never take the last descriptors.
	FileReserve = 160
	// DefaultWebMaxHeader and DefaultWebHandshakeTimeout bound a web
	// request's head.
	DefaultWebMaxHeader        = 8 << 10
	DefaultWebHandshakeTimeout = 5 * time.Second

	// OwnFiles is the part of FileReserve the relay needs for itself; the
	// rest is what ingress connections may use.
	OwnFiles = 64

	// LoopFiles is what each event loop holds besides its clients, kept
	// back from the default MaxConns on top of FileReserve: its epoll and
	// eventfd, its own listener on the client and on the web port
	// (SO_REUSEPORT), the two ends of its doorbell, and the one accepted
	// socket that may wait for admission. The count measured at start
	// and under clients is in docs/architecture.md (One listener per loop).
	LoopFiles = 7

	// DefaultFlashPolicyMaxConns is how many Flash policy connections may
	// be open at once. A player holds one for a round trip; an idle one
	// is closed after 5 s. With the policy listener on, these descriptors
	// come out of the default MaxConns too.
	DefaultFlashPolicyMaxConns = 32
)

// Off is the value that turns off a duration or limit whose zero value means
// "the default": KeepAlive, WriteTimeout, MaxInbound (where it means "close
// on any byte").
const Off = -1

// Config configures a relay Server. The zero value of every field means its
// default; New validates the rest.
type Config struct {
	// Listen is the client listener's HOST:PORT. Default ":8843". Port 0
	// picks a free port (Server.Addr tells which).
	Listen string
	// Loops is the number of event loops. Default: one per CPU.
	Loops int
	// Framing of every frame written on the client listener.
	Framing Framing
	// MaxMessage is the largest payload, in bytes. Default 64 KiB, at most
	// MaxMessageLimit.
	MaxMessage int
	// MaxInbound is how many bytes a client may send in total before it is
	// disconnected. Default 1 KiB; Off closes a client on its first byte.
	MaxInbound int
	// MaxOutbound caps the relay memory each connection's unsent bytes
	// may take. Default 256 KiB. The unsent bytes themselves are capped
	// at 4/5 of the largest power of two within it (204.8 KiB of the
	// default): gnet's buffer grows past what it holds (outboundHold).
	MaxOutbound int
	// Slow is what happens when a message would pass MaxOutbound.
	Slow SlowPolicy
	// SendBuffer, if positive, sets SO_SNDBUF on every client socket (the
	// kernel doubles it), bounding the kernel memory a client that stops
	// reading can hold, at the cost of the kernel's send-buffer
	// autotuning (up to tcp_wmem's maximum, 4 MiB by default). Default 0:
	// autotuning.
	SendBuffer int
	// MaxConns caps open client connections; connections above it are
	// closed at once and counted. Default: RLIMIT_NOFILE minus FileReserve,
	// LoopFiles per event loop and, with the policy listener,
	// FlashPolicyMaxConns.
	MaxConns int
	// KeepAlive is the TCP keepalive idle time (probes follow at a third of
	// it, three of them). Default 30s; Off disables keepalive.
	KeepAlive time.Duration
	// WriteTimeout is TCP_USER_TIMEOUT: a peer that leaves written data
	// unacknowledged this long is dropped by the kernel. Default 30s; Off
	// leaves the kernel's default (about 15 minutes of retransmissions).
	WriteTimeout time.Duration
	// Heartbeat, when positive, writes an empty frame to every connection
	// at this interval so dead peers surface and middleboxes keep state.
	// Default 0: off.
	Heartbeat time.Duration
	// DrainTimeout bounds how long Shutdown waits for queued messages to be
	// written. Default 5s.
	DrainTimeout time.Duration
	// NodeID, when non-zero, makes this relay a node of a cluster: it is
	// written in the first two bytes of every client ID (see IDBytes), so
	// any node can tell which node holds a client. Default 0: standalone,
	// every ID bit random.
	NodeID uint16
	// ReusePort lets other processes bind the same client port with
	// SO_REUSEPORT. Default false: an address already bound by anyone is an
	// error at start.
	ReusePort bool
	// OwnAccept has the relay accept client and web connections itself
	// (relay/accept.go) and hand each one to gnet's event loops, so that
	// running out of descriptors or socket memory in accept (EMFILE,
	// ENFILE, ENOBUFS, ENOMEM) is a pause, counted and logged, instead of
	// stopping every event loop as gnet v2.10.0 does. Default false: gnet
	// accepts, with 1.4 to 1.7 times less CPU per accepted connection and
	// a 1.3 to 1.7 times faster connect storm (docs/operations.md).
	OwnAccept bool
	// NoDirectWrites sends every unicast through its event loop's
	// mailbox. Default false: a producer that finds the loop idle writes
	// the frame to the client's socket itself, which spares a thread
	// wake-up per push (direct.go).
	NoDirectWrites bool
	// MailboxItems and MailboxBytes bound each event loop's queue of
	// pending work; a push that does not fit is refused (Overloaded).
	// Defaults 65,536 items and 64 MiB.
	MailboxItems int
	MailboxBytes int
	// MaxTopicsPerConn caps the topics one client may be subscribed to.
	// Default 1024.
	MaxTopicsPerConn int
	// MaxSubscribers caps the subscribers of one topic. Default 0: no cap.
	MaxSubscribers int
	// MaxTopics caps the topics that exist at once (a topic exists while
	// it has a subscriber). Default 1,048,576.
	MaxTopics int
	// EventLog is how many recent connect and disconnect events are kept
	// for watchers (rounded up to a power of two). Default 65,536.
	EventLog int
	// Web, when set, is the HOST:PORT of the browser listener: WebSocket
	// at /ws, Server-Sent Events at /sse, a demo page at /. Its clients
	// live on the same event loops, registry and topics as raw ones.
	// Default "": no web listener.
	Web string
	// WebMaxHeader caps a web request's head (request line and headers).
	// Default 8 KiB.
	WebMaxHeader int
	// WebHandshakeTimeout bounds the wait for a web request's head.
	// Default 5s.
	WebHandshakeTimeout time.Duration
	// WebOrigins, when not empty, lists the Origin values browsers may
	// connect from ("https://app.example.com"; "*" allows any). Requests
	// without an Origin (not from a page) are always allowed.
	WebOrigins []string
	// WebCompress turns on permessage-deflate for WebSockets that offer it.
	WebCompress bool
	// WebCompressMin is the smallest payload compressed. Default 256 bytes.
	WebCompressMin int
	// FlashPolicyListen, when set, starts a Flash socket-policy listener on
	// that HOST:PORT (843 is Flash's port).
	FlashPolicyListen string
	// FlashPolicy is the policy document served there, without the
	// trailing 0x00. Default: allow the client port from any domain.
	FlashPolicy []byte
	// FlashPolicyMaxConns caps the policy connections open at once; more
	// are closed at once and counted. They are part of the descriptor
	// budget: with the policy listener on, the default MaxConns leaves
	// them out. Default 32.
	FlashPolicyMaxConns int
	// Logger receives lifecycle logs (info) and per-connection logs
	// (debug). Default slog.Default().
	Logger *slog.Logger
}

// withDefaults returns cfg with defaults filled in, or an error naming the
// first invalid field.
func (cfg Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: "+format, append([]any{ErrBadConfig}, args...)...)
	}
	cfg.Listen = cmp.Or(cfg.Listen, DefaultListen)
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		return bad("listen address %q: %v", cfg.Listen, err)
	}
	if cfg.Loops < 0 || cfg.Loops > 1024 {
		return bad("loops %d: want 0 (one per CPU) to 1024", cfg.Loops)
	}
	if cfg.Framing > FramingLen32 {
		return bad("framing %d unknown", cfg.Framing)
	}
	cfg.MaxMessage = cmp.Or(cfg.MaxMessage, DefaultMaxMessage)
	if cfg.MaxMessage < 0 || cfg.MaxMessage > MaxMessageLimit {
		return bad("max-message %d: want 1 to %d bytes", cfg.MaxMessage, MaxMessageLimit)
	}
	cfg.MaxInbound = cmp.Or(cfg.MaxInbound, DefaultMaxInbound)
	if cfg.MaxInbound != Off && (cfg.MaxInbound < 0 || cfg.MaxInbound > 1<<31) {
		return bad("max-inbound %d: want a byte count up to 2 GiB, or Off", cfg.MaxInbound)
	}
	cfg.MaxOutbound = cmp.Or(cfg.MaxOutbound, DefaultMaxOutbound)
	if cfg.MaxOutbound < 0 {
		return bad("max-outbound %d: want a positive byte count", cfg.MaxOutbound)
	}
	if frame := cfg.MaxMessage + cfg.Framing.Overhead(); outboundHold(cfg.MaxOutbound) < frame {
		return bad("max-outbound %d keeps at most %d bytes unsent (4/5 of the largest power of two within it, so that gnet's buffer stays within it), smaller than one frame of max-message %d (%d bytes): no message could ever be written; raise --max-outbound to %d or lower --max-message",
			cfg.MaxOutbound, outboundHold(cfg.MaxOutbound), cfg.MaxMessage, frame, minMaxOutbound(frame))
	}
	if cfg.SendBuffer < 0 {
		return bad("send buffer %d: want a byte count, or 0 for the kernel's autotuning", cfg.SendBuffer)
	}
	if cfg.Slow > SlowDrop {
		return bad("slow-consumer policy %d unknown", cfg.Slow)
	}
	cfg.FlashPolicyMaxConns = cmp.Or(cfg.FlashPolicyMaxConns, DefaultFlashPolicyMaxConns)
	if cfg.FlashPolicyMaxConns < 0 || cfg.FlashPolicyMaxConns > 1<<16 {
		return bad("flash-policy-max-conns %d: want 1 to 65536", cfg.FlashPolicyMaxConns)
	}
	limit, err := fileLimit()
	if err != nil {
		return Config{}, fmt.Errorf("relay: read RLIMIT_NOFILE: %w", err)
	}
	// Every descriptor the relay may hold is in the budget, so accept on
	// the client listeners never meets EMFILE: gnet v2.10.0 stops its
	// whole engine when it does.
	loops := cfg.Loops
	if loops == 0 {
		loops = numCPU()
	}
	policyConns := 0
	why := fmt.Sprintf(" (%d, and %d for each of %d event loops", FileReserve, LoopFiles, loops)
	if cfg.FlashPolicyListen != "" {
		policyConns = cfg.FlashPolicyMaxConns
		why += fmt.Sprintf(", and flash-policy-max-conns %d", cfg.FlashPolicyMaxConns)
	}
	reserve := FileReserveFor(loops, policyConns)
	why += ")"
	room := limit - reserve
	switch {
	case cfg.MaxConns == 0:
		cfg.MaxConns = max(room, 1)
	case cfg.MaxConns < 0:
		return bad("max-conns %d: want a positive count", cfg.MaxConns)
	case cfg.MaxConns > room:
		return bad("max-conns %d exceeds the open-file limit %d minus a reserve of %d%s: raise RLIMIT_NOFILE (ulimit -n, systemd LimitNOFILE) or lower max-conns to %d", cfg.MaxConns, limit, reserve, why, room)
	}
	cfg.KeepAlive = cmp.Or(cfg.KeepAlive, DefaultKeepAlive)
	if cfg.KeepAlive < 0 && cfg.KeepAlive != Off {
		return bad("keepalive %v: want a positive duration, or Off", cfg.KeepAlive)
	} else if cfg.KeepAlive > 0 && cfg.KeepAlive < time.Second {
		return bad("keepalive %v: the kernel counts in whole seconds, want at least 1s", cfg.KeepAlive)
	}
	cfg.WriteTimeout = cmp.Or(cfg.WriteTimeout, DefaultWriteTimeout)
	if cfg.WriteTimeout < 0 && cfg.WriteTimeout != Off {
		return bad("write-timeout %v: want a positive duration, or Off", cfg.WriteTimeout)
	}
	if cfg.Heartbeat < 0 {
		return bad("heartbeat %v: want a positive duration, or 0 for off", cfg.Heartbeat)
	}
	cfg.DrainTimeout = cmp.Or(cfg.DrainTimeout, DefaultDrainTimeout)
	if cfg.DrainTimeout < 0 {
		return bad("drain-timeout %v: want a positive duration", cfg.DrainTimeout)
	}
	cfg.MailboxItems = cmp.Or(cfg.MailboxItems, DefaultMailboxItems)
	cfg.MailboxBytes = cmp.Or(cfg.MailboxBytes, DefaultMailboxBytes)
	if cfg.MailboxItems < 0 || cfg.MailboxBytes < cfg.MaxMessage+cfg.Framing.Overhead() {
		return bad("mailbox bounds (%d items, %d bytes) must hold at least one largest message", cfg.MailboxItems, cfg.MailboxBytes)
	}
	cfg.MaxTopicsPerConn = cmp.Or(cfg.MaxTopicsPerConn, DefaultMaxTopicsPerConn)
	cfg.MaxTopics = cmp.Or(cfg.MaxTopics, DefaultMaxTopics)
	cfg.EventLog = cmp.Or(cfg.EventLog, DefaultEventLog)
	if cfg.MaxTopicsPerConn < 0 || cfg.MaxTopics < 0 || cfg.MaxSubscribers < 0 {
		return bad("topic limits must not be negative (max-topics-per-conn %d, max-topics %d, max-subscribers %d)", cfg.MaxTopicsPerConn, cfg.MaxTopics, cfg.MaxSubscribers)
	}
	if cfg.EventLog < 0 || cfg.EventLog > 1<<24 {
		return bad("event log of %d events: want 1 to %d", cfg.EventLog, 1<<24)
	}
	if cfg.Web != "" {
		if _, _, err := net.SplitHostPort(cfg.Web); err != nil {
			return bad("web listen address %q: %v", cfg.Web, err)
		}
	}
	cfg.WebMaxHeader = cmp.Or(cfg.WebMaxHeader, DefaultWebMaxHeader)
	if cfg.WebMaxHeader < 256 || cfg.WebMaxHeader > 64<<10 {
		return bad("web-max-header %d: want 256 bytes to 64 KiB", cfg.WebMaxHeader)
	}
	cfg.WebHandshakeTimeout = cmp.Or(cfg.WebHandshakeTimeout, DefaultWebHandshakeTimeout)
	if cfg.WebHandshakeTimeout < 0 {
		return bad("web-handshake-timeout %v: want a positive duration", cfg.WebHandshakeTimeout)
	}
	for _, o := range cfg.WebOrigins {
		if o != "*" && (!strings.Contains(o, "://") || strings.ContainsAny(o, " \t,")) {
			return bad("web origin %q: want scheme://host[:port] as browsers send it, or *", o)
		}
	}
	cfg.WebCompressMin = cmp.Or(cfg.WebCompressMin, DefaultWebCompressMin)
	if cfg.WebCompressMin < 0 {
		return bad("web-compress-min %d: want a byte count", cfg.WebCompressMin)
	}
	if frame := cfg.MaxMessage + wsHeaderLen(cfg.MaxMessage); cfg.Web != "" && outboundHold(cfg.MaxOutbound) < frame {
		return bad("max-outbound %d keeps at most %d bytes unsent, smaller than one WebSocket frame of max-message %d (%d bytes): raise --max-outbound to %d or lower --max-message",
			cfg.MaxOutbound, outboundHold(cfg.MaxOutbound), cfg.MaxMessage, frame, minMaxOutbound(frame))
	}
	if cfg.FlashPolicyListen != "" {
		if _, _, err := net.SplitHostPort(cfg.FlashPolicyListen); err != nil {
			return bad("flash policy listen address %q: %v", cfg.FlashPolicyListen, err)
		}
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return cfg, nil
}

// FileReserveFor is how many descriptors of RLIMIT_NOFILE the default
// MaxConns leaves out for a relay with that many event loops and, with the
// Flash policy listener on, that FlashPolicyMaxConns (0 with it off):
// FileReserve, LoopFiles per loop, and the policy connections. The default
// MaxConns is RLIMIT_NOFILE minus this; a larger MaxConns is refused.
// Capacity planners (pushrelay doctor) use it too, so the budget is
// written once.
func FileReserveFor(loops, policyConns int) int {
	return FileReserve + loops*LoopFiles + policyConns
}

// fileLimit returns the soft RLIMIT_NOFILE. Go raises the soft limit to the
// hard one at start-up, so this is normally the hard limit.
func fileLimit() (int, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur > 1<<30 {
		return 1 << 30, nil
	}
	return int(rl.Cur), nil
}
