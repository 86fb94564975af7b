//go:build !linux

package bench

import "net"

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
