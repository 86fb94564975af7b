// Package bench measures the relay against the designs it claims to beat, in
// one run, on one machine, so every figure it reports is a ratio that means
// something wherever it was measured:
//
//   - RunIdle holds N idle client connections open against the relay and
//     against Baseline (a goroutine-per-connection server on Go's net
//     package) and reports what each connection costs: the server process's
//     RSS and Go heap, and the kernel's memory per socket.
//   - RunStorm opens N connections as fast as one client process can and
//     reports how fast the relay accepts them compared with Accept4Server,
//     a bare accept4(2) loop that is the kernel's floor for accepting (and,
//     on request, the same loop writing each connection an ID frame: the
//     floor for what the relay's protocol requires).
//   - RunIngress pushes through the real relay's Unix socket and HTTP API to
//     idle clients, for throughput and latency, beside a kernel floor child
//     (FloorServer: bare write(2) to the same clients) in the same run.
//   - RunFanout broadcasts to 1,000 to 19,000 clients: time to the last
//     client and CPU per delivery for the relay, Baseline and the floor;
//     bursts on a topic; unicasts during broadcasts.
//   - RunCapacity ramps connections step by step to the real relay, and to
//     Baseline and the floor beside it, until a target or the relay's
//     first wall, which NameWall names with its evidence and the doctor's
//     fix. Each step measures every server's memory per connection, accept
//     rate, broadcasts and unicasts, plus a bare loopback write
//     (LoopbackProbe), and sets the relay's figures beside the others' as
//     ratios. `pushrelay bench quick` is one such step, at 5,000 clients.
//
// Each server runs in a child process of its own (`pushrelay bench child`,
// see RunChild), so its memory figures are its own and not the client's. The
// parent talks to the child over stdin and stdout, one JSON line per
// command.
//
// Everything here reads Linux's /proc files and uses Linux socket options;
// on other systems the measurements fail with ErrUnsupported.
package bench
