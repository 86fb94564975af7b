package relay

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFlashPolicyExchange plays a Flash player: it asks the policy port for
// the policy, reads it up to its 0x00, and sees a clean close (EOF, not a
// reset). The client port stays pure: its first frame is the ID.
func TestFlashPolicyExchange(t *testing.T) {
	srv := startServer(t, Config{FlashPolicyListen: "127.0.0.1:0"})
	nc, err := net.DialTimeout("tcp", srv.PolicyAddr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write([]byte("<policy-file-request/>\x00")); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(nc)
	if err != nil {
		t.Fatalf("reading the policy: %v (a reset here loses the policy in some players)", err)
	}
	want := string(DefaultFlashPolicy(srv.Addr().Port)) + "\x00"
	if string(got) != want {
		t.Fatalf("policy = %q, want %q", got, want)
	}
	if !strings.Contains(string(got), `to-ports="`+strconv.Itoa(srv.Addr().Port)+`"`) {
		t.Fatalf("policy does not allow the client port %d", srv.Addr().Port)
	}
	// The client port answers with the ID, not the policy.
	c := dialRaw(t, srv.Addr().String(), FramingNUL)
	first, err := c.next(5 * time.Second)
	if err != nil || !ValidID(string(first)) {
		t.Fatalf("client port first frame %q, %v; want an ID", first, err)
	}
}

func TestFlashPolicyCustomDocumentAndTimeout(t *testing.T) {
	doc := []byte(`<cross-domain-policy><allow-access-from domain="example.com" to-ports="*"/></cross-domain-policy>`)
	srv := startServer(t, Config{FlashPolicyListen: "127.0.0.1:0", FlashPolicy: doc})
	nc, err := net.DialTimeout("tcp", srv.PolicyAddr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Send nothing: the relay writes the policy at once and closes the
	// connection itself within its timeout.
	nc.SetReadDeadline(time.Now().Add(policyTimeout + 3*time.Second))
	got, err := io.ReadAll(nc)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, append(doc, 0)) {
		t.Fatalf("policy = %q, want the custom document and 0x00", got)
	}
}
