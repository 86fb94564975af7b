//go:build !linux

package bench

import (
	"net"
	"time"

	"github.com/pushrelay/pushrelay/loadgen"
	"github.com/pushrelay/pushrelay/relay"
)

// FloorServer is the bare write(2) floor; it exists on Linux only.
type FloorServer struct{}

// FloorRun is what one of FloorServer's write runs did.
type FloorRun struct {
	Writes     int64   `json:"writes"`
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	Errors     int64   `json:"errors"`
	CPUSeconds float64 `json:"cpu_seconds"`
	Error      string  `json:"error,omitempty"`
}

// NewFloor returns a server whose Start fails: the floor needs Linux.
func NewFloor(string, relay.Framing) *FloorServer { return &FloorServer{} }

// Start reports ErrUnsupported.
func (s *FloorServer) Start() error { return ErrUnsupported }

// Addr returns nil.
func (s *FloorServer) Addr() *net.TCPAddr { return nil }

// Accepted returns 0.
func (s *FloorServer) Accepted() uint64 { return 0 }

// Len returns 0.
func (s *FloorServer) Len() int { return 0 }

// WriteRate reports ErrUnsupported.
func (s *FloorServer) WriteRate(time.Duration, int) (FloorRun, error) {
	return FloorRun{}, ErrUnsupported
}

// WritePaced reports ErrUnsupported.
func (s *FloorServer) WritePaced(float64, time.Duration, int) (FloorRun, error) {
	return FloorRun{}, ErrUnsupported
}

// Prune reports ErrUnsupported.
func (s *FloorServer) Prune() (int, error) { return 0, ErrUnsupported }

// Sweep reports ErrUnsupported.
func (s *FloorServer) Sweep(int) (FloorRun, error) { return FloorRun{}, ErrUnsupported }

// Close does nothing.
func (s *FloorServer) Close() error { return nil }

// LoopbackProbe reports ErrUnsupported.
func LoopbackProbe(int, int, time.Duration, relay.Framing) (loadgen.Summary, error) {
	return loadgen.Summary{}, ErrUnsupported
}

// Accept4Server is the bare accept4(2) loop; it exists on Linux only.
type Accept4Server struct {
	// Greeting is written to each accepted connection.
	Greeting []byte
}

// NewAccept4 returns a server whose Start fails: accept4 needs Linux.
func NewAccept4(listen string) *Accept4Server { return &Accept4Server{} }

// Start reports ErrUnsupported.
func (s *Accept4Server) Start() error { return ErrUnsupported }

// Addr returns nil.
func (s *Accept4Server) Addr() *net.TCPAddr { return nil }

// Accepted returns 0.
func (s *Accept4Server) Accepted() uint64 { return 0 }

// Len returns 0.
func (s *Accept4Server) Len() int { return 0 }

// AcceptTimes returns zeros.
func (s *Accept4Server) AcceptTimes() (first, last int64) { return 0, 0 }

// Close does nothing.
func (s *Accept4Server) Close() error { return nil }
