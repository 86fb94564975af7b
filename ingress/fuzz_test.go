package ingress

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/ingress/wire"
	"github.com/pushrelay/pushrelay/relay"
	"golang.org/x/sys/unix"
)

// FuzzRequests feeds arbitrary bytes to a real ingress connection (over a
// socketpair, backed by a real relay) and checks that the relay never
// crashes or hangs, and that every frame it writes back is well formed:
// a reply to an operation or an event, with a message on every error.
func FuzzRequests(f *testing.F) {
	rel, err := relay.New(relay.Config{Listen: "127.0.0.1:0", Logger: quietLogger()})
	if err != nil {
		f.Fatal(err)
	}
	if err := rel.Start(); err != nil {
		f.Fatal(err)
	}
	defer rel.Shutdown(context.Background())
	cfg, _ := Config{Path: "/unused", MaxRequest: 64 << 10, Logger: quietLogger()}.withDefaults(relay.DefaultMaxMessage / 2)
	u := &UnixServer{cfg: cfg, relay: rel, log: cfg.Logger, conns: map[*ingressConn]struct{}{}}

	id := "AAAAAAAAAAAAAAAAAAAAAA"
	f.Add(frame(wire.OpSend, 0, 1, append(wire.AppendStr8(nil, id), "hi"...)))
	f.Add(frame(wire.OpSendMany, 0, 2, append(binary.BigEndian.AppendUint16(wire.AppendStr8(nil, id)[:0], 1), append(wire.AppendStr8(nil, id), 'x')...)))
	f.Add(frame(wire.OpSubscribe, 1, 3, append(binary.BigEndian.AppendUint16(wire.AppendStr8(nil, id), 1), wire.AppendStr8(nil, "t")...)))
	f.Add(frame(wire.OpList, 0, 4, binary.BigEndian.AppendUint16(wire.AppendStr8(nil, "3."), 10)))
	f.Add(append(frame(wire.OpStats, 0, 5, nil), frame(wire.OpWatch, 0, 6, make([]byte, 8))...))
	f.Add(frame(wire.OpPublish, 0, 7, append(wire.AppendStr8(nil, "news"), "x"...)))
	f.Add(frame(wire.OpPresence, 0, 8, binary.BigEndian.AppendUint16(wire.AppendStr8(wire.AppendStr8(nil, "news"), ""), 10)))
	f.Add([]byte{0, 0, 0, 1, 2})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Skip(err)
		}
		srvFile, cliFile := os.NewFile(uintptr(fds[0]), "srv"), os.NewFile(uintptr(fds[1]), "cli")
		srvConn, err1 := net.FileConn(srvFile)
		cliConn, err2 := net.FileConn(cliFile)
		srvFile.Close()
		cliFile.Close()
		if err1 != nil || err2 != nil {
			t.Skip(err1, err2)
		}
		c := newIngressConn(u, srvConn.(*net.UnixConn))
		done := make(chan struct{})
		go func() { c.serve(); close(done) }()
		cli := cliConn.(*net.UnixConn)
		defer cli.Close()
		go func() {
			cli.Write(data)
			cli.CloseWrite()
		}()
		br := bufio.NewReader(cli)
		cli.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			var hdr [wire.HeaderLen]byte
			if _, err := io.ReadFull(br, hdr[:]); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				t.Fatalf("reading replies: %v", err)
			}
			h, err := wire.ParseHeader(hdr[:], 1<<30)
			if err != nil {
				t.Fatalf("relay wrote a bad frame header: %v", err)
			}
			body := make([]byte, h.BodyLen())
			if _, err := io.ReadFull(br, body); err != nil {
				t.Fatalf("reply body: %v", err)
			}
			switch {
			case h.Kind == wire.KindEvent:
			case h.Kind&wire.ReplyBit != 0:
				if h.Flags != uint8(wire.StatusOK) {
					r := wire.NewReader(body)
					msg := r.Str16("message")
					r.End()
					if r.Err() != nil || len(msg) == 0 {
						t.Fatalf("error reply without a message: %q", body)
					}
				}
			default:
				t.Fatalf("relay wrote a frame of kind 0x%02x", h.Kind)
			}
			// The relay stops reading at EOF; watches then end too.
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("connection goroutine did not end after EOF")
		}
	})
}

// FuzzWireReader: no input makes the field reader panic or read past the
// body.
func FuzzWireReader(f *testing.F) {
	f.Add([]byte{3, 'a', 'b', 'c', 0, 1, 0, 0, 0, 0, 0, 0, 0, 9})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := wire.NewReader(b)
		total := 0
		total += len(r.Str8("a"))
		r.U16("b")
		total += len(r.Str16("c"))
		r.U64("d")
		_ = r.Counts()
		total += len(r.Rest())
		if total > len(b) {
			t.Fatalf("read %d bytes of fields from %d", total, len(b))
		}
		if len(b) >= wire.HeaderLen {
			wire.ParseHeader(b, 1<<20)
		}
		// Counts survive the round trip, the optional sixth field too;
		// a body of four (an older relay) reads unsupported as 0.
		if len(b) >= 24 {
			u := func(i int) uint32 { return binary.BigEndian.Uint32(b[4*i:]) }
			c := wire.Counts{Queued: u(0), UnknownID: u(1), DroppedSlow: u(2), Overloaded: u(3), Unsupported: u(4), Unreachable: u(5)}
			r := wire.NewReader(wire.AppendCounts(nil, c))
			if got := r.Counts(); got != c || r.Err() != nil {
				t.Fatalf("counts %+v came back %+v (%v)", c, got, r.Err())
			}
			old := wire.NewReader(b[:16])
			if got := old.Counts(); got.Unsupported != 0 || got.Unreachable != 0 || got.Overloaded != u(3) {
				t.Fatalf("a four-count body read as %+v", got)
			}
		}
	})
}

// FuzzHostAllowed: no Host header makes the check panic; with no names
// configured it accepts only what names the relay itself (an IP address
// literal or localhost, with any port), and every IP address, written as a
// Host header, is accepted.
func FuzzHostAllowed(f *testing.F) {
	s, err := ListenHTTP(HTTPConfig{Addr: "127.0.0.1:0", Logger: quietLogger()}, nil, 1024)
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	for _, h := range []string{"127.0.0.1:8844", "[::1]:8844", "localhost", "localhost.", "evil.example:8844", "[::1", "[::1]x", "[fe80::1%25eth0]:1", "1.2.3.4.5", ":8844", "", "[127.0.0.1]"} {
		f.Add([]byte(h))
	}
	f.Fuzz(func(t *testing.T, host []byte) {
		ok := s.hostAllowed(host)
		if ok {
			h := string(host)
			if hp, _, err := net.SplitHostPort(h); err == nil {
				h = hp
			} else if strings.HasPrefix(h, "[") {
				h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
			}
			h = strings.TrimSuffix(h, ".")
			if _, err := netip.ParseAddr(h); err != nil && !strings.EqualFold(h, "localhost") {
				t.Fatalf("Host %q accepted: it is neither an IP address nor localhost", host)
			}
		}
		if a, ok := netip.AddrFromSlice(host); ok && !a.Is4In6() {
			literal := netip.AddrPortFrom(a, 8844).String()
			if !s.hostAllowed([]byte(literal)) {
				t.Fatalf("Host %q, an IP address, refused", literal)
			}
		}
	})
}
