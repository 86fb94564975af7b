package relay

import (
	"errors"

	"github.com/pushrelay/pushrelay/pkg/framing"
)

// Sentinel errors of package relay. Callers match them with errors.Is; the
// wrapped message says what exactly was wrong.
var (
	// ErrBadPayload: the payload holds a byte the framing cannot carry.
	ErrBadPayload = framing.ErrBadPayload
	// ErrEmpty: the payload is empty, which a client would read as a
	// heartbeat.
	ErrEmpty = errors.New("empty payload")
	// ErrTooLarge: the payload is larger than Config.MaxMessage.
	ErrTooLarge = errors.New("payload too large")
	// ErrBadConfig: a configuration value is out of range.
	ErrBadConfig = errors.New("invalid configuration")
	// ErrAddrInUse: another process (or another relay) holds the address.
	ErrAddrInUse = errors.New("address already in use")
	// ErrClosed: the relay is shut down (or was never started).
	ErrClosed = errors.New("relay closed")
	// ErrUnreachable: in a cluster, the node that holds the client did not
	// answer in time (the Unreachable status, as an error).
	ErrUnreachable = errors.New("the client's relay node did not answer")
)
