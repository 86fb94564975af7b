package bench

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/pushrelay/pushrelay/relay"
)

// Procs names the processes a scenario starts and where their output goes;
// every scenario's options embed it, and a scenario leaves alone what it
// does not start.
type Procs struct {
	// RelayCommand starts the relay (`pushrelay serve`); the scenario
	// appends its listener and log flags. Default DefaultRelayCommand().
	// Extra serve flags, for an experiment, go at its end.
	RelayCommand []string
	// RelayEnv holds NAME=VALUE settings added to the relay's environment
	// (GOMAXPROCS=3, say), for an experiment (ingress and fanout).
	RelayEnv []string
	// ChildCommand starts the baseline, accept4 and floor children; the
	// server flags are appended. Default DefaultChildCommand().
	ChildCommand []string
	// Stderr receives progress lines and the children's logs. Default
	// os.Stderr.
	Stderr io.Writer
}

// fill fills Stderr and, for the processes the scenario starts (relay,
// child), the empty commands with their defaults.
func (p *Procs) fill(relay, child bool) error {
	orZero(&p.Stderr, io.Writer(os.Stderr))
	var relayCmd, childCmd *[]string
	if relay {
		relayCmd = &p.RelayCommand
	}
	if child {
		childCmd = &p.ChildCommand
	}
	return fillCommands(relayCmd, childCmd)
}

// Each scenario's defaults are written here once. A scenario's withDefaults
// fills every zero field from them, and `pushrelay bench` binds its flags
// onto the options' fields with these as the flags' defaults, so the
// command line and a caller of Run* agree by construction.

// IdleDefaults are RunIdle's defaults.
func IdleDefaults() IdleOptions {
	return IdleOptions{Conns: 10000, Servers: []string{ServerRelay, ServerBaseline}, Workers: 32, Warmup: 1,
		Settle: 2 * time.Second}
}

// StormDefaults are RunStorm's defaults.
func StormDefaults() StormOptions {
	return StormOptions{Conns: 18000, Servers: []string{ServerAccept4, ServerRelay}, Rounds: 5, Dialers: 2,
		Sources: 8, Warmup: 1, Pause: time.Second, Timeout: 60 * time.Second, Poll: 5 * time.Millisecond}
}

// IngressDefaults are RunIngress's defaults.
func IngressDefaults() IngressOptions {
	return IngressOptions{Conns: []int{1000, 18000}, Rate: 1000, Duration: 5 * time.Second, Payload: 64,
		UnixWorkers: 4, Batch: 256, HTTPWorkers: 8, Pause: 500 * time.Millisecond}
}

// FanoutDefaults are RunFanout's defaults.
func FanoutDefaults() FanoutOptions {
	return FanoutOptions{Sizes: []int{1000, 5000, 10000, 19000}, Servers: []string{ServerRelay, ServerBaseline, ServerFloor},
		Broadcasts: 20, Warmup: 2, Payload: 32, Gap: 20 * time.Millisecond,
		CoalesceClients: 1000, Burst: 8, Bursts: 200, BusyClients: 18000, BusyRate: 1000, BusyDuration: 5 * time.Second}
}

// CapacityDefaults are RunCapacity's defaults: the ramp of `bench capacity`.
// Steps is left empty: it follows from Target.
func CapacityDefaults() CapacityOptions {
	return CapacityOptions{Target: 50000, Servers: []string{ServerRelay, ServerBaseline, ServerFloor},
		Broadcasts: 3, Payload: 64, UnicastRate: 500, Unicasts: 500, Throughput: time.Second,
		Settle: time.Second, StepTimeout: 60 * time.Second}
}

// QuickDefaults are `bench quick`'s: one step of the ramp, at Target
// clients, with longer series than a ramp's step.
func QuickDefaults() CapacityOptions {
	o := CapacityDefaults()
	o.Target, o.Steps = 5000, []int{5000}
	o.Broadcasts, o.Unicasts, o.UnicastRate, o.Throughput = 20, 2000, 1000, 2*time.Second
	return o
}

// WebDefaults are RunWeb's defaults.
func WebDefaults() WebOptions {
	return WebOptions{Conns: 10000, Transports: []string{"tcp", "ws", "ws-deflate", "sse"}, Broadcasts: 20, Warmup: 2,
		Size: 2048, Settle: 2 * time.Second, Gap: 50 * time.Millisecond}
}

// ClusterDefaults are RunCluster's defaults.
func ClusterDefaults() ClusterOptions {
	return ClusterOptions{Nodes: 2, Conns: 1000, Rate: 1000, Duration: 5 * time.Second, Rounds: 3, Payload: 64,
		Pause: 500 * time.Millisecond}
}

// ClusterCapacityDefaults are RunClusterCapacity's defaults.
func ClusterCapacityDefaults() ClusterCapacityOptions {
	return ClusterCapacityOptions{Conns: 50000, Nodes: 3, Single: 18000, Rate: 10000, Broadcasts: 3, Unicasts: 2000,
		UnicastRate: 500}
}

// orZero sets *v to d if *v is its zero value.
func orZero[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// orPositive sets *v to d unless *v is positive.
func orPositive[T ~int | ~int64 | ~float64](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// orEmpty sets *v to d if *v is empty.
func orEmpty[T any](v *[]T, d []T) {
	if len(*v) == 0 {
		*v = d
	}
}

// fillCommands fills an empty relay or child command with its default; a
// nil pointer is a command the scenario does not start.
func fillCommands(relayCmd, childCmd *[]string) error {
	var err error
	if relayCmd != nil && len(*relayCmd) == 0 {
		if *relayCmd, err = DefaultRelayCommand(); err != nil {
			return err
		}
	}
	if childCmd != nil && len(*childCmd) == 0 {
		*childCmd, err = DefaultChildCommand()
	}
	return err
}

// orNone sets *v to d if it is 0, and to 0 if negative (none).
func orNone(v *int, d int) {
	orZero(v, d)
	*v = max(*v, 0)
}

// fillServers fills an empty server list from d and refuses a name not in
// allowed, which the error lists in order.
func fillServers(scenario string, v *[]string, d []string, allowed ...string) error {
	orEmpty(v, d)
	for _, s := range *v {
		if !slices.Contains(allowed, s) {
			n := len(allowed) - 1
			return fmt.Errorf("bench: %s: server %q: want %s or %s", scenario, s, strings.Join(allowed[:n], ", "), allowed[n])
		}
	}
	return nil
}

// fillCounts fills an empty list of client counts from d and refuses a
// count that is not positive; what names one in the error.
func fillCounts(scenario, what string, v *[]int, d []int) error {
	orEmpty(v, d)
	for _, n := range *v {
		if n <= 0 {
			return fmt.Errorf("bench: %s: %s %d: want a positive count", scenario, what, n)
		}
	}
	return nil
}

// fillPayload fills a zero payload size from d and refuses one that is
// negative or above the relay's largest message.
func fillPayload(scenario string, v *int, d int) error {
	orZero(v, d)
	if *v < 0 || *v > relay.DefaultMaxMessage {
		return fmt.Errorf("bench: %s: payload %d: want 1 to %d bytes", scenario, *v, relay.DefaultMaxMessage)
	}
	return nil
}

// fillCount fills a zero count from d and refuses a negative one; what
// names it in the error.
func fillCount(scenario, what string, v *int, d int) error {
	orZero(v, d)
	if *v < 0 {
		return fmt.Errorf("bench: %s: %s %d: want a positive count", scenario, what, *v)
	}
	return nil
}
