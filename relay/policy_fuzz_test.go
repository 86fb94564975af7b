package relay

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// FuzzPolicyRequest feeds the policy listener's request reader any byte
// stream, in chunks of any size: whatever comes, the player gets exactly
// the policy and its 0x00, and the connection ends (at the request's 0x00,
// past policyMaxRequest bytes, or at the client's EOF) without waiting for
// the timeout.
func FuzzPolicyRequest(f *testing.F) {
	f.Add([]byte("<policy-file-request/>\x00"), uint8(0))
	f.Add([]byte("<policy-file-request/>\x00trailing"), uint8(3))
	f.Add([]byte(""), uint8(1))
	f.Add(bytes.Repeat([]byte("A"), 300), uint8(7))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	f.Fuzz(func(t *testing.T, in []byte, chunk uint8) {
		doc := []byte("<cross-domain-policy/>\x00")
		p := &policyServer{doc: doc, log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			slot: make(chan struct{}, 1), conns: map[net.Conn]struct{}{}}
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		cli := nc.(*net.TCPConn)
		defer cli.Close()
		srv, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		p.slot <- struct{}{}
		p.conns[srv] = struct{}{}
		p.wg.Add(1)
		done := make(chan struct{})
		go func() { p.serve(srv); close(done) }()
		go func() {
			step := int(chunk%16) + 1
			for i := 0; i < len(in); i += step {
				if _, err := cli.Write(in[i:min(i+step, len(in))]); err != nil {
					return // the relay closed: fine
				}
			}
			cli.CloseWrite()
		}()
		cli.SetReadDeadline(time.Now().Add(2 * time.Second))
		got, _ := io.ReadAll(cli)
		if !bytes.Equal(got, doc) {
			t.Fatalf("got %q, want the policy %q", got, doc)
		}
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatal("serve did not end")
		}
	})
}
