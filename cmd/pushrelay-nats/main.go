// Command pushrelay-nats runs a NATS server (nats-server/v2, embedded) for
// trying a relay cluster on one host: `make run-cluster` and `pushrelay
// bench cluster` start it. In production run nats-server itself, or a
// NATS cluster; the relays only need its URL (--nats).
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:4222", "The `HOST:PORT` NATS clients (the relays) connect to.")
	flag.Parse()
	host, portText, err := net.SplitHostPort(*listen)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil || port < 0 || port > 65535 {
		fmt.Fprintf(os.Stderr, "pushrelay-nats: --listen %q: want HOST:PORT\n", *listen)
		os.Exit(2)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{Host: host, Port: port, NoSigs: true, MaxPayload: 8 << 20})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pushrelay-nats: %v\n", err)
		os.Exit(2)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		fmt.Fprintln(os.Stderr, "pushrelay-nats: the server did not start (is the port in use?)")
		os.Exit(1)
	}
	// One line for scripts: where to point --nats.
	fmt.Println(ns.ClientURL())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	<-sigs
	ns.Shutdown()
	ns.WaitForShutdown()
}
