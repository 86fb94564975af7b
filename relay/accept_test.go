package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// acceptChildEnv makes the test binary a relay process for
// TestEMFILEInAcceptIsAPause; its value is "own" for Config.OwnAccept.
const acceptChildEnv = "PUSHRELAY_ACCEPT_CHILD"

// acceptChild runs a relay and answers commands on stdin: "b" broadcasts
// "hello", "m" prints the accept-pause counters. It exits 3 if the event
// loops stop.
func acceptChild(mode string) {
	srv, err := New(Config{Listen: "127.0.0.1:0", Web: "127.0.0.1:0", Loops: 2, OwnAccept: mode == "own", Logger: testLogger()})
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println("addrs", srv.Addr(), srv.WebAddr())
	go func() {
		<-srv.Done()
		fmt.Println("stopped", srv.Err())
		os.Exit(3)
	}()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "b":
			c, st := srv.Broadcast([]byte("hello"))
			fmt.Println("broadcast", st, c.Queued)
		case "m":
			fmt.Println("pauses", srv.counters.acceptPauses[0].Load(), srv.counters.acceptPauses[1].Load())
		}
	}
}

func TestMain(m *testing.M) {
	if mode := os.Getenv(acceptChildEnv); mode != "" {
		acceptChild(mode)
		return
	}
	os.Exit(m.Run())
}

// TestEMFILEInAcceptIsAPause lowers the file limit of a running relay
// process below what it holds (as an operator's prlimit, or the host's
// file table filling up, would) and floods the client and web ports.
// With Config.OwnAccept the relay backs off and counts it; the client
// already connected keeps its connection and gets a broadcast; once the
// limit is raised, new clients and browsers are served. (Without it,
// gnet v2.10.0 stops every event loop and the process exits.)
func TestEMFILEInAcceptIsAPause(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), acceptChildEnv+"=own")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	next := func(prefix string) []string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the relay process exited (%v), want it serving", cmd.Wait())
			}
			f := strings.Fields(l)
			if len(f) == 0 || f[0] != prefix {
				t.Fatalf("relay process said %q, want %s ...", l, prefix)
			}
			return f[1:]
		case <-time.After(10 * time.Second):
			t.Fatalf("no %q line from the relay process", prefix)
		}
		return nil
	}
	addrs := next("addrs")
	addr, webAddr := addrs[0], addrs[1]

	old, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	fr := NewFrameReader(old, FramingNUL, 0)
	old.SetReadDeadline(time.Now().Add(5 * time.Second))
	if id, err := fr.Next(); err != nil || !ValidID(string(id)) {
		t.Fatalf("first client: ID %q, %v", id, err)
	}

	pid := cmd.Process.Pid
	var orig unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, nil, &orig); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	// The limit caps new descriptor numbers: leave none free.
	low := unix.Rlimit{Cur: uint64(len(fds)), Max: orig.Max}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &low, nil); err != nil {
		t.Fatal(err)
	}
	var flood []net.Conn
	for i := 0; i < 20; i++ {
		for _, a := range []string{addr, webAddr} {
			if nc, err := net.DialTimeout("tcp", a, time.Second); err == nil {
				flood = append(flood, nc)
			}
		}
	}
	time.Sleep(300 * time.Millisecond) // the acceptors meet EMFILE and back off

	io.WriteString(stdin, "b\n")
	if got := next("broadcast"); got[0] != "queued" {
		t.Fatalf("broadcast during EMFILE: %v, want queued", got)
	}
	old.SetReadDeadline(time.Now().Add(5 * time.Second))
	if msg, err := fr.Next(); err != nil || string(msg) != "hello" {
		t.Fatalf("the client connected before EMFILE got %q, %v; want hello", msg, err)
	}
	for _, c := range flood {
		c.Close()
	}
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &orig, nil); err != nil {
		t.Fatal(err)
	}

	eventuallyOK(t, "a new client gets an ID once descriptors are back", func() error {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		defer nc.Close()
		nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		id, err := NewFrameReader(nc, FramingNUL, 0).Next()
		if err == nil && !ValidID(string(id)) {
			err = fmt.Errorf("ID %q", id)
		}
		return err
	})
	eventuallyOK(t, "the web port answers once descriptors are back", func() error {
		hc := http.Client{Timeout: 2 * time.Second}
		resp, err := hc.Get("http://" + webAddr + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("GET /: %s", resp.Status)
		}
		return nil
	})
	io.WriteString(stdin, "m\n")
	got := next("pauses")
	if got[0] == "0" || got[1] == "0" {
		t.Fatalf("accept pauses client=%s web=%s, want both counted", got[0], got[1])
	}
}

// eventuallyOK retries check every 50 ms for up to 10 s.
func eventuallyOK(t *testing.T, what string, check func() error) {
	t.Helper()
	var err error
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if err = check(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %v", what, err)
}

// TestOwnAcceptRebindsAtOnceAndRefusesASecondRelay: with the relay's own
// listeners, a relay stopped with clients connected (its closed
// connections linger in FIN-WAIT-2 and TIME_WAIT) is followed at once by
// a new one on the same ports, a second live relay on them is refused,
// and with ReusePort two relays share a port.
func TestOwnAcceptRebindsAtOnceAndRefusesASecondRelay(t *testing.T) {
	first, err := New(Config{Listen: "127.0.0.1:0", Web: "127.0.0.1:0", OwnAccept: true, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	addr, web := first.Addr().String(), first.WebAddr().String()
	for i := 0; i < 3; i++ {
		c := dial(t, first)
		defer c.conn.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	again := startServer(t, Config{Listen: addr, Web: web, OwnAccept: true})
	dial(t, again).conn.Close()

	_, err = startErr(Config{Listen: addr, OwnAccept: true, Logger: testLogger()})
	if !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("a second relay on %s: %v, want ErrAddrInUse", addr, err)
	}

	port := freePort(t)
	a := startServer(t, Config{Listen: port, ReusePort: true, OwnAccept: true})
	b := startServer(t, Config{Listen: port, ReusePort: true, OwnAccept: true})
	dial(t, a).conn.Close()
	dial(t, b).conn.Close()
}

func startErr(cfg Config) (*Server, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	s.Shutdown(context.Background())
	return s, nil
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
