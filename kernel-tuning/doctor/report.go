package doctor

// DefaultTarget is the connection count the doctor plans for unless told.
const DefaultTarget = 1_000_000

// Scopes: how far a limit reaches, which decides whether several relay
// processes get around it.
const (
	ScopeProcess = "process" // each process has its own: several processes multiply it
	ScopeUser    = "user"    // shared by every process of one user
	ScopeHost    = "host"    // shared by the whole host (or its network namespace)
	ScopeSource  = "source address"
)

// Limit IDs, stable for --json consumers.
const (
	LimitNofile    = "nofile"
	LimitNrOpen    = "nr_open"
	LimitFileMax   = "file_max"
	LimitEpoll     = "epoll_watches"
	LimitTCPMem    = "tcp_mem"
	LimitMemory    = "memory"
	LimitConntrack = "conntrack"
	LimitPorts     = "ports"
)

// Options says what to plan for.
type Options struct {
	// Target is how many client connections to hold, on top of what the
	// host uses now. Zero means DefaultTarget.
	Target int64
	// Loadgen counts a load generator on the same host: its sockets, files
	// and ephemeral ports too.
	Loadgen bool
	// Model is the memory model; the zero value means DefaultModel.
	Model Model
	// Stalled is how many clients to plan for that stop reading at once;
	// zero means DefaultStalled(Target).
	Stalled int64
}

// DefaultStalled is how many clients the doctor plans to stop reading at
// once: 1% of the target, and at least a thousand (or the whole target
// when smaller), since a thousand connections that never read cost an
// attacker nothing.
func DefaultStalled(target int64) int64 {
	return min(target, max(1000, target/100))
}

// Limit is one host limit and how many client connections it allows.
type Limit struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Setting is the limit as configured, InUse what is used of it now.
	Setting string `json:"setting"`
	InUse   string `json:"in_use,omitempty"`
	// Capacity is how many client connections fit under the limit: per
	// process, per user, per host or per source address, as Scope says.
	Capacity int64  `json:"capacity"`
	Scope    string `json:"scope"`
	// Basis is how Capacity follows from the setting, in one sentence.
	Basis string `json:"basis"`
	// Binds is true when Capacity is below the target.
	Binds bool `json:"binds"`
	// Fix is how to lift the limit to the target; nil unless Binds.
	Fix *Fix `json:"fix,omitempty"`
}

// Fix is the change that lifts one limit.
type Fix struct {
	// Raisable is true when the change can be made on this host (as root
	// where it needs root). When false, Why says why and Around gives the
	// way around it.
	Raisable bool `json:"raisable"`
	// Lines are the exact commands and configuration lines, in order.
	Lines []string `json:"lines"`
	// CapacityAfter is the limit's capacity once Lines are applied.
	CapacityAfter int64  `json:"capacity_after,omitempty"`
	Why           string `json:"why,omitempty"`
	Around        string `json:"around,omitempty"`
	// Processes, when above 1, is how many relay processes get around a
	// per-process limit that cannot be raised.
	Processes int64 `json:"processes,omitempty"`
	// Hosts, when above 1, is how many hosts of this size the target needs
	// when a host-wide limit cannot be raised.
	Hosts int64 `json:"hosts,omitempty"`
}

// Memory is the memory model applied to the target.
type Memory struct {
	Model Model `json:"model"`
	// PerConnIdle and PerConnPeak are bytes per client, idle and while a
	// broadcast is in flight to everyone.
	PerConnIdle int64 `json:"per_conn_idle"`
	PerConnPeak int64 `json:"per_conn_peak"`
	// Idle and Peak are the target's totals.
	Idle int64 `json:"idle"`
	Peak int64 `json:"peak"`
	// Available is the memory new connections can use, and Source where
	// the figure came from.
	Available int64  `json:"available"`
	Source    string `json:"source"`
}

// SlowClients is what clients that stop reading cost the kernel's TCP
// memory, and the send buffer (--sndbuf) that keeps them under tcp_mem's
// pressure value. Each stalled socket holds what it was written up to its
// send buffer; with the kernel's autotuning that buffer can grow to
// tcp_wmem's maximum. Past the pressure value the kernel shrinks every
// socket's buffers, healthy clients' included, and the relay then finds
// healthy clients over --max-outbound too (measured: 1,000 stalled clients
// with autotuned buffers passed the default pressure value, and healthy
// clients were reset as slow consumers).
type SlowClients struct {
	// Stalled is the number of clients planned to stop reading at once.
	Stalled int64 `json:"stalled"`
	// PressurePages is tcp_mem's pressure value planned with: the
	// doctor's raised value when its tcp_mem step applies.
	PressurePages int64 `json:"tcp_mem_pressure_pages"`
	// RoomPages is what is left under it beside a small broadcast in
	// flight to every client of the target; PagesPerClient its share per
	// stalled client.
	RoomPages      int64 `json:"room_pages"`
	PagesPerClient int64 `json:"pages_per_client"`
	// AutotunePages is what one stalled client can hold with autotuning:
	// tcp_wmem's maximum, in pages.
	AutotunePages int64 `json:"autotune_pages_per_client"`
	// AutotuneFits: autotuning keeps Stalled clients under the pressure
	// value, and SendBuffer is 0.
	AutotuneFits bool `json:"autotune_fits"`
	// SendBuffer is the --sndbuf to run the relay with, in bytes: the
	// kernel doubles it, and charges what the socket holds up to that.
	SendBuffer int64 `json:"sndbuf,omitempty"`
	// TCPMem, when even the smallest send buffer does not fit, is the
	// tcp_mem the stalled clients need beside the broadcast.
	TCPMem string `json:"tcp_mem,omitempty"`
	// RelayBytes is what they hold in the relay: --max-outbound each.
	RelayBytes int64 `json:"relay_bytes"`
}

// minSendBuffer is the smallest --sndbuf the doctor recommends: one page,
// about the kernel's own floor (SOCK_MIN_SNDBUF).
const minSendBuffer = 4096

// Ports is the ephemeral-port arithmetic for a load generator on this host.
type Ports struct {
	Range string `json:"range"`
	// PerSource is how many connections one (source address, destination
	// address:port) pair can have: one per local port in the range.
	PerSource int64 `json:"per_source"`
	// Sources is how many source addresses the target needs with the
	// range as it is; SourcesAfter with RangeAfter.
	Sources      int64  `json:"sources"`
	RangeAfter   string `json:"range_after"`
	SourcesAfter int64  `json:"sources_after"`
}

// Warning is something that does not cap the connection count but
// matters for it: accept bursts, drops already counted, churn.
type Warning struct {
	ID    string   `json:"id"`
	Text  string   `json:"text"`
	Lines []string `json:"lines,omitempty"`
}

// Step is one entry of the ordered fix list: the limit that binds next and
// what lifts it.
type Step struct {
	Limit    string `json:"limit"`
	Name     string `json:"name"`
	Capacity int64  `json:"capacity"`
	Fix
	// Then names what binds once this step is done, or "fits".
	Then string `json:"then"`
}

// Report is the doctor's answer for one target.
type Report struct {
	Target  int64 `json:"target"`
	Loadgen bool  `json:"loadgen"`
	// Limits are sorted by capacity, lowest first.
	Limits []Limit `json:"limits"`
	// Binding is the ID of the first limit that stops the target, and
	// BindingAt its capacity; empty when the target fits.
	Binding   string `json:"binding,omitempty"`
	BindingAt int64  `json:"binding_at,omitempty"`
	// Steps lift every binding limit in order.
	Steps []Step `json:"steps"`
	// FitsNow: the target fits as the host stands. FitsAfterFixes: it fits
	// once every change this host can apply is made, as Processes relay
	// processes.
	FitsNow        bool   `json:"fits_now"`
	FitsAfterFixes bool   `json:"fits_after_fixes"`
	Processes      int64  `json:"processes"`
	Memory         Memory `json:"memory"`
	Ports          *Ports `json:"ports,omitempty"`
	// Slow is the arithmetic for clients that stop reading; nil when
	// tcp_mem or tcp_wmem could not be read.
	Slow *SlowClients `json:"slow_clients,omitempty"`
	// SysctlsWritable and NofileRaisable say what this host lets be
	// changed at all.
	SysctlsWritable bool      `json:"sysctls_writable"`
	NofileRaisable  bool      `json:"nofile_raisable"`
	Warnings        []Warning `json:"warnings"`
	Notes           []string  `json:"notes"`
	Host            *Host     `json:"host"`
}
