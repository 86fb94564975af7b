// Package ingress is how the web app beside the relay talks to it: a binary
// request/response protocol on a Unix socket (package ingress/wire has the
// frames) and an HTTP API. Both only decode requests and encode replies:
// the operations layer (ops.go) checks each operation, runs it on the
// relay through the small Relay interface and words its outcome, once for
// both.
package ingress

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
)

// Relay is what the ingress needs of the relay. *relay.Server implements it;
// every method is safe for concurrent use.
type Relay interface {
	Send(id string, payload []byte) relay.Status
	// SendPipelined is Send when more requests are already read behind
	// this one: the relay queues it for its event loop rather than write
	// it on the caller's goroutine, so a pipelined batch is written in
	// batches (relay.Server.SendPipelined).
	SendPipelined(id string, payload []byte) relay.Status
	SendMany(ids []string, payload []byte) (relay.Counts, relay.Status)
	Publish(topic string, payload []byte) (relay.Counts, relay.Status)
	Broadcast(payload []byte) (relay.Counts, relay.Status)
	Subscribe(id string, topics ...string) (int, error)
	Unsubscribe(id string, topics ...string) (int, error)
	Kick(id string) relay.Status
	Info(id string) (relay.ClientInfo, bool)
	List(cursor string, limit int) ([]string, string, error)
	// Presence pages through a topic's subscribers and counts them
	// (relay.Server.Presence).
	Presence(topic, cursor string, limit int) (ids []string, next string, count int, err error)
	Metrics() []relay.Metric
	EventsSince(from uint64, dst []relay.Event, max int) ([]relay.Event, uint64, uint64, <-chan struct{})
	LastEventSeq() uint64
	Instance() string
	CheckPayload(payload []byte) error
	// Serving is nil while the relay accepts pushes, else why not.
	Serving() error
}

var _ Relay = (*relay.Server)(nil)

// Config configures the Unix-socket server. Zero values mean the defaults.
type Config struct {
	// Path of the socket. Required.
	Path string
	// Mode of the socket file. Default 0660: the relay's user and group.
	Mode os.FileMode
	// MaxRequest caps one frame, header included. Default 1 MiB; it must
	// hold the relay's largest message with room for its fields.
	MaxRequest int
	// MaxIDs caps the IDs in one send_many. Default 10,000.
	MaxIDs int
	// MaxTopics caps the topics in one subscribe or unsubscribe. Default 100.
	MaxTopics int
	// MaxConns caps ingress connections open at once. Default 64.
	MaxConns int
	// MaxWatches caps watch streams on one connection. Default 4.
	MaxWatches int
	// FrameTimeout is how long a request frame may take to arrive once
	// the relay starts reading it (its first byte is in); a connection
	// whose frame is still partial then gets an error reply and is
	// closed. Connections may idle between frames without limit.
	// Default 5 s.
	FrameTimeout time.Duration
	// Logger for lifecycle and errors. Default slog.Default().
	Logger *slog.Logger
}

// Defaults of Config.
const (
	// DefaultPath is where serve puts the socket, and where the client
	// commands look for it, unless told otherwise.
	DefaultPath       = "./pushrelay.sock"
	DefaultMode       = 0o660
	DefaultMaxConns   = 64
	DefaultMaxWatches = 4
	// DefaultFrameTimeout is Config.FrameTimeout's default.
	DefaultFrameTimeout = 5 * time.Second
)

// ErrBadConfig: a configuration value is out of range.
var ErrBadConfig = errors.New("invalid ingress configuration")

func (cfg Config) withDefaults(maxMessage int) (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: "+format, append([]any{ErrBadConfig}, args...)...)
	}
	if cfg.Path == "" {
		return bad("no socket path")
	}
	if len(cfg.Path) > 107 {
		return bad("socket path %q is %d bytes; Unix sockets allow 107", cfg.Path, len(cfg.Path))
	}
	cfg.Mode = cmp.Or(cfg.Mode, DefaultMode)
	if cfg.Mode&^os.ModePerm != 0 {
		return bad("mode %v: want permission bits only, such as 0660", cfg.Mode)
	}
	cfg.MaxRequest = cmp.Or(cfg.MaxRequest, wire.DefaultMaxRequest)
	if cfg.MaxRequest < maxMessage+wire.HeaderLen+wire.MaxStr8+1 {
		return bad("max request %d cannot hold a message of max-message %d and its fields", cfg.MaxRequest, maxMessage)
	}
	cfg.MaxIDs = cmp.Or(cfg.MaxIDs, wire.DefaultMaxIDs)
	cfg.MaxTopics = cmp.Or(cfg.MaxTopics, wire.DefaultMaxTopics)
	cfg.MaxConns = cmp.Or(cfg.MaxConns, DefaultMaxConns)
	cfg.MaxWatches = cmp.Or(cfg.MaxWatches, DefaultMaxWatches)
	if cfg.MaxIDs < 0 || cfg.MaxIDs > 65535 || cfg.MaxTopics < 0 || cfg.MaxTopics > 65535 || cfg.MaxConns < 0 || cfg.MaxWatches < 0 {
		return bad("limits out of range (ids %d, topics %d: 1 to 65535; conns %d, watches %d: positive)", cfg.MaxIDs, cfg.MaxTopics, cfg.MaxConns, cfg.MaxWatches)
	}
	cfg.FrameTimeout = cmp.Or(cfg.FrameTimeout, DefaultFrameTimeout)
	if cfg.FrameTimeout < 0 {
		return bad("frame timeout %v: want a positive duration, such as 5s", cfg.FrameTimeout)
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	return cfg, nil
}
