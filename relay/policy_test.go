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

// TestPolicyListenerThatDiesFailsHealth: a policy listener that stops
// accepting for a reason other than a passing shortage makes Serving (and
// so /healthz) fail with the reason, and pushrelay_policy_up drop to 0.
func TestPolicyListenerThatDiesFailsHealth(t *testing.T) {
	srv := startServer(t, Config{FlashPolicyListen: "127.0.0.1:0"})
	if err := srv.Serving(); err != nil {
		t.Fatalf("Serving before: %v", err)
	}
	srv.policy.ln.Close() // the listener breaks under the relay
	<-srv.policy.dead
	err := srv.Serving()
	if err == nil || !strings.Contains(err.Error(), "Flash policy listener") {
		t.Fatalf("Serving = %v, want the policy listener named", err)
	}
	for _, m := range srv.Metrics() {
		if m.Name == "pushrelay_policy_up" && m.Value != 0 {
			t.Fatalf("pushrelay_policy_up = %v, want 0", m.Value)
		}
	}
}

// TestFlashPolicyLimit: past FlashPolicyMaxConns open connections, a new
// one is closed without the policy and counted; one slot freed, the next
// gets the policy.
func TestFlashPolicyLimit(t *testing.T) {
	srv := startServer(t, Config{FlashPolicyListen: "127.0.0.1:0", FlashPolicyMaxConns: 2})
	var held []net.Conn
	for i := 0; i < 2; i++ {
		nc, err := net.Dial("tcp", srv.PolicyAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		held = append(held, nc)
	}
	for srv.policy.served.Load() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	nc, err := net.Dial("tcp", srv.PolicyAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(nc)
	nc.Close()
	if len(got) != 0 || srv.policy.rejected.Load() != 1 {
		t.Fatalf("third connection got %q, rejected %d; want nothing and 1", got, srv.policy.rejected.Load())
	}
	held[0].Close()
	for {
		nc, err := net.Dial("tcp", srv.PolicyAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		nc.Write([]byte("<policy-file-request/>\x00"))
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(nc)
		nc.Close()
		if len(got) > 0 {
			break
		}
		if srv.policy.rejected.Load() > 20 {
			t.Fatal("a freed slot is never reused")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
