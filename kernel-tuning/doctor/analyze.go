package doctor

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/pushrelay/pushrelay/relay"
)

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

// Analyze works out which of h's limits stop opts.Target connections, in
// what order, and what lifts each.
func Analyze(h *Host, opts Options) *Report {
	if opts.Target <= 0 {
		opts.Target = DefaultTarget
	}
	if opts.Model == (Model{}) {
		opts.Model = DefaultModel
	}
	if opts.Stalled <= 0 {
		opts.Stalled = DefaultStalled(opts.Target)
	}
	a := &analysis{h: h, n: opts.Target, lg: opts.Loadgen, m: opts.Model, stalled: opts.Stalled}
	r := &Report{
		Target:          a.n,
		Loadgen:         a.lg,
		Host:            h,
		Processes:       1,
		SysctlsWritable: h.CanWriteSysctls(),
		NofileRaisable:  h.CanRaiseNofile(),
		Warnings:        []Warning{},
		Notes:           []string{},
		Steps:           []Step{},
		Limits:          []Limit{},
	}

	for _, f := range []func() *Limit{a.nofile, a.nrOpen, a.fileMax, a.epoll, a.tcpMem, a.memory, a.conntrack, a.ports} {
		if l := f(); l != nil {
			l.Capacity = max(l.Capacity, 0)
			l.Binds = l.Capacity < a.n
			if !l.Binds {
				l.Fix = nil
			}
			r.Limits = append(r.Limits, *l)
		}
	}
	sort.SliceStable(r.Limits, func(i, j int) bool { return r.Limits[i].Capacity < r.Limits[j].Capacity })

	r.Memory = a.memoryReport()
	r.Ports = a.portsReport()
	a.plan(r)
	r.Slow = a.slowClients(r)
	r.Warnings = append(r.Warnings, a.warnings()...)
	r.Notes = append(r.Notes, a.notes()...)
	if !r.FitsNow && h.UID != 0 && (r.SysctlsWritable || r.NofileRaisable) {
		r.Notes = append(r.Notes, "The changes above need root: run them with sudo.")
	}
	return r
}

// analysis carries the inputs through the per-limit functions.
type analysis struct {
	h       *Host
	n       int64
	lg      bool
	m       Model
	stalled int64
}

// perConn is how many of a per-connection resource the host spends for
// each client: two when the load generator's end is on this host too.
func (a *analysis) perConn() int64 {
	if a.lg {
		return 2
	}
	return 1
}

// sysctlFix builds a fix made of sysctls, raisable where sysctls can be
// written.
func (a *analysis) sysctlFix(after int64, lines ...string) *Fix {
	f := &Fix{Raisable: a.h.CanWriteSysctls(), Lines: lines, CapacityAfter: after}
	if !f.Raisable {
		f.Why = a.sysctlWhy()
		f.Around = "apply the lines on the host itself (the host's administrator), or move the relay to a host where they are applied"
	}
	return f
}

func (a *analysis) sysctlWhy() string {
	if a.h.ProcSysReadOnly {
		return "/proc/sys is mounted read-only (a container): sysctls are the host's to set"
	}
	return "CAP_SYS_ADMIN or CAP_NET_ADMIN is outside this process's bounding set (a container or sandbox): sysctls are the host's to set"
}

// goSoftLimit is the soft RLIMIT_NOFILE a Go program runs with: at start
// the runtime raises a soft limit below hard-1 to hard-1 (syscall's init;
// one below the hard limit so that it can tell a later prlimit apart).
func goSoftLimit(soft, hard int64) int64 {
	if soft == Unknown || soft < hard-1 {
		return hard - 1
	}
	return soft
}

// recommendNofile is the open-file limit to ask for: the target plus the
// relay's reserve, at least the usual 1,048,576 (raising a limit costs
// nothing until descriptors are used).
func recommendNofile(n int64) int64 {
	return max(1<<20, roundUp(n+relay.FileReserve, 1<<16))
}

func (a *analysis) nofile() *Limit {
	h := a.h
	if h.NofileHard == Unknown {
		return nil
	}
	soft := goSoftLimit(h.NofileSoft, h.NofileHard)
	l := &Limit{
		ID:       LimitNofile,
		Name:     "open files per process (RLIMIT_NOFILE)",
		Setting:  fmt.Sprintf("soft %s, hard %s", count(h.NofileSoft), count(h.NofileHard)),
		Capacity: soft - relay.FileReserve,
		Scope:    ScopeProcess,
		Basis:    fmt.Sprintf("the relay's soft limit, %s, minus the %d descriptors it keeps for listeners, epoll and ingress (--max-conns defaults to this); EMFILE beyond", count(soft), relay.FileReserve),
	}
	if soft != h.NofileSoft {
		l.Basis += ". Go raises a lower soft limit to the hard limit less one when a program starts"
	}
	rec := recommendNofile(a.n)
	// How high one process can go from here: to rec, to fs.nr_open when
	// that cannot be raised, or nowhere without CAP_SYS_RESOURCE.
	ceiling := rec
	var lines []string
	if h.NrOpen != Unknown && rec > h.NrOpen {
		if h.CanWriteSysctls() {
			lines = append(lines, fmt.Sprintf("sysctl -w fs.nr_open=%d", rec))
		} else {
			ceiling = h.NrOpen
		}
	}
	if !h.CanRaiseNofile() {
		ceiling = soft
	}
	if ceiling > soft {
		lines = append(lines,
			fmt.Sprintf("LimitNOFILE=%d   # [Service] of pushrelay.service, or the drop-in kernel-tuning/pushrelay-limits.conf", ceiling),
			fmt.Sprintf("ulimit -n %d   # as root, in the shell that starts pushrelay serve by hand", ceiling),
		)
	}
	perProc := ceiling - relay.FileReserve
	fix := &Fix{Raisable: perProc >= a.n, Lines: lines, CapacityAfter: perProc}
	if !fix.Raisable {
		fix.Processes = ceilDiv(a.n, max(perProc, 1))
		if !h.CanRaiseNofile() {
			fix.Why = fmt.Sprintf("the hard limit is %s and CAP_SYS_RESOURCE is outside this process's bounding set: a container or sandbox set it, and nothing started here (not root, not systemd) can raise it", count(h.NofileHard))
		} else {
			fix.Why = fmt.Sprintf("fs.nr_open (%s) caps it and cannot be raised here: %s", count(h.NrOpen), a.sysctlWhy())
		}
		fix.Around = fmt.Sprintf("set it where the container is started (docker run --ulimit nofile=%d:%d; the runtime's LimitNOFILE under Kubernetes), or run several relay processes: %s of up to %s clients each, the clients spread over them",
			rec, rec, count(fix.Processes), count(perProc))
		if a.lg {
			fix.Around += "; the load generator needs as many worker processes (pushrelay loadgen --procs 0 starts them)"
		}
	}
	l.Fix = fix
	return l
}

func (a *analysis) nrOpen() *Limit {
	h := a.h
	if h.NrOpen == Unknown {
		return nil
	}
	rec := recommendNofile(a.n)
	l := &Limit{
		ID:       LimitNrOpen,
		Name:     "largest open-file limit (fs.nr_open)",
		Setting:  count(h.NrOpen),
		Capacity: h.NrOpen - relay.FileReserve,
		Scope:    ScopeProcess,
		Basis:    "caps what RLIMIT_NOFILE can be raised to, for every process; setrlimit fails with EPERM above it (systemd: \"Failed at step LIMITS\")",
		Fix:      a.sysctlFix(rec-relay.FileReserve, fmt.Sprintf("sysctl -w fs.nr_open=%d", rec)),
	}
	if !l.Fix.Raisable {
		l.Fix.Processes = ceilDiv(a.n, max(l.Capacity, 1))
		l.Fix.Around = fmt.Sprintf("run several relay processes: %s of up to %s clients each", count(l.Fix.Processes), count(l.Capacity))
		l.Fix.CapacityAfter = 0
	}
	return l
}

func (a *analysis) fileMax() *Limit {
	h := a.h
	if h.FileMax == Unknown || h.FileAllocated == Unknown {
		return nil
	}
	pc := a.perConn()
	rec := max(h.FileMax, roundUp((h.FileAllocated+a.n*pc)*5/4, 1<<20))
	l := &Limit{
		ID:       LimitFileMax,
		Name:     "open files on the host (fs.file-max)",
		Setting:  count(h.FileMax),
		InUse:    count(h.FileAllocated),
		Capacity: (h.FileMax - h.FileAllocated) / pc,
		Scope:    ScopeHost,
		Basis:    fmt.Sprintf("room left under the host-wide count of open files (file-nr), %d per client; ENFILE beyond", pc),
		Fix:      a.sysctlFix((rec-h.FileAllocated)/pc, fmt.Sprintf("sysctl -w fs.file-max=%d", rec)),
	}
	a.hostFix(l)
	return l
}

func (a *analysis) epoll() *Limit {
	h := a.h
	if h.EpollWatches == Unknown {
		return nil
	}
	pc := a.perConn()
	rec := max(h.EpollWatches, roundUp(a.n*pc*5/4, 1<<20))
	l := &Limit{
		ID:       LimitEpoll,
		Name:     "epoll watches per user (fs.epoll.max_user_watches)",
		Setting:  count(h.EpollWatches),
		Capacity: h.EpollWatches / pc,
		Scope:    ScopeUser,
		Basis:    fmt.Sprintf("every socket on an event loop is one epoll watch, %d per client, shared by all processes of one user; epoll_ctl fails with ENOSPC beyond", pc),
		Fix:      a.sysctlFix(rec/pc, fmt.Sprintf("sysctl -w fs.epoll.max_user_watches=%d", rec)),
	}
	a.hostFix(l)
	return l
}

// recommendTCPMem returns tcp_mem's three thresholds (low, pressure, high)
// in pages for pages of socket memory in use at once, with headroom, never
// below the running values.
func recommendTCPMem(cur [3]int64, pages int64) [3]int64 {
	p := roundUp(pages*5/4, 1<<16)
	return [3]int64{max(cur[0], p*3/4), max(cur[1], p), max(cur[2], p*3/2)}
}

func (a *analysis) tcpMem() *Limit {
	h := a.h
	if h.TCPMem[1] == Unknown {
		return nil
	}
	inUse := max(h.TCPMemPages, 0)
	ppc := a.m.PagesInFlight * a.perConn()
	rec := recommendTCPMem(h.TCPMem, inUse+a.n*ppc)
	l := &Limit{
		ID:       LimitTCPMem,
		Name:     "TCP memory (net.ipv4.tcp_mem, pressure threshold)",
		Setting:  fmt.Sprintf("%d %d %d pages", h.TCPMem[0], h.TCPMem[1], h.TCPMem[2]),
		InUse:    fmt.Sprintf("%d pages", inUse),
		Capacity: (h.TCPMem[1] - inUse) / ppc,
		Scope:    ScopeHost,
		Basis:    "idle sockets hold no buffer pages, but a broadcast makes every recipient hold one until the client acknowledges it; past the pressure threshold the kernel shrinks every send buffer (TCPMemoryPressures counts it), past the third value writes stall",
		Fix:      a.sysctlFix((rec[1]-inUse)/ppc, fmt.Sprintf("sysctl -w net.ipv4.tcp_mem=\"%d %d %d\"   # pages of %d bytes", rec[0], rec[1], rec[2], h.PageSize)),
	}
	if a.lg {
		l.Basis += "; the load generator's socket holds another page until it reads the message"
	}
	a.hostFix(l)
	return l
}

// available is the memory new connections can use, and where the figure
// came from: MemAvailable, or the cgroup's room when that is tighter.
func (a *analysis) available() (int64, string) {
	h := a.h
	avail, src := h.MemAvailable, "MemAvailable in /proc/meminfo"
	if h.CgroupAvailable != Unknown && (avail == Unknown || h.CgroupAvailable < avail) {
		avail, src = h.CgroupAvailable, fmt.Sprintf("cgroup memory limit %s minus usage", bytesIEC(h.CgroupLimit))
	}
	return avail, src
}

func (a *analysis) memory() *Limit {
	avail, src := a.available()
	if avail == Unknown {
		return nil
	}
	per := a.m.peak(a.lg)
	l := &Limit{
		ID:       LimitMemory,
		Name:     "memory",
		Setting:  bytesIEC(avail) + " available",
		Capacity: avail / per,
		Scope:    ScopeHost,
		Basis:    fmt.Sprintf("%s, divided by %s per client by the memory model (idle %s, plus %s while a small broadcast is in flight)", src, bytesIEC(per), bytesIEC(a.m.idle(a.lg)), bytesIEC(per-a.m.idle(a.lg))),
	}
	hosts := ceilDiv(a.n, max(l.Capacity, 1))
	l.Fix = &Fix{
		Raisable: false,
		Lines:    []string{},
		Why:      fmt.Sprintf("memory is not a setting: %s clients need %s at a broadcast peak and %s is available", count(a.n), bytesIEC(a.n*per), bytesIEC(avail)),
		Around:   fmt.Sprintf("add memory, or spread the clients over %s hosts of this size", count(hosts)),
		Hosts:    hosts,
	}
	if a.h.CgroupAvailable != Unknown && a.h.CgroupAvailable == avail {
		l.Fix.Around = fmt.Sprintf("raise the container's memory limit to at least %s (docker run --memory, systemd MemoryMax=, Kubernetes resources.limits.memory), or spread the clients over %s containers", bytesIEC(a.n*per+(a.h.CgroupLimit-a.h.CgroupAvailable)), count(hosts))
	}
	return l
}

func (a *analysis) conntrack() *Limit {
	h := a.h
	if !h.ConntrackLoaded || h.ConntrackMax == Unknown {
		return nil
	}
	used := max(h.ConntrackCount, 0)
	rec := max(h.ConntrackMax, roundUp((used+a.n)*5/4, 1<<16))
	l := &Limit{
		ID:       LimitConntrack,
		Name:     "connection tracking (net.netfilter.nf_conntrack_max)",
		Setting:  count(h.ConntrackMax),
		InUse:    count(used),
		Capacity: h.ConntrackMax - used,
		Scope:    ScopeHost,
		Basis:    "one entry per client connection once a firewall rule tracks it (nf_conntrack is loaded); past it the kernel drops new connections' packets (\"nf_conntrack: table full, dropping packet\")",
		Fix: a.sysctlFix(rec-used,
			fmt.Sprintf("sysctl -w net.netfilter.nf_conntrack_max=%d", rec),
			fmt.Sprintf("sysctl -w net.netfilter.nf_conntrack_buckets=%d   # hash buckets, a quarter of the entries", rec/4),
			"# or do not track the relay's port at all: iptables -t raw -A PREROUTING -p tcp --dport 8843 -j NOTRACK; iptables -t raw -A OUTPUT -p tcp --sport 8843 -j NOTRACK",
		),
	}
	a.hostFix(l)
	return l
}

// portsAfter is the ephemeral range the doctor recommends for a load
// generator: wide, and above the relay's ports (843, 8843) and the usual
// service ports.
const (
	portsAfterLow  = 10000
	portsAfterHigh = 65535
)

func (a *analysis) ports() *Limit {
	h := a.h
	if !a.lg || h.PortLow == Unknown || h.PortHigh == Unknown {
		return nil
	}
	per := h.PortHigh - h.PortLow + 1
	after := int64(portsAfterHigh - portsAfterLow + 1)
	sources := ceilDiv(a.n, max(after, per))
	l := &Limit{
		ID:       LimitPorts,
		Name:     "load generator's ephemeral ports (net.ipv4.ip_local_port_range)",
		Setting:  fmt.Sprintf("%d-%d", h.PortLow, h.PortHigh),
		Capacity: per,
		Scope:    ScopeSource,
		Basis:    "each (source address, destination address:port) pair has one connection per local port; connect fails with EADDRNOTAVAIL beyond",
		Fix: &Fix{
			Raisable: true,
			Lines: []string{
				fmt.Sprintf("sysctl -w net.ipv4.ip_local_port_range=\"%d %d\"", portsAfterLow, portsAfterHigh),
				fmt.Sprintf("# and connect from %s source addresses: on loopback, pushrelay loadgen --sources 127.0.0.2-%s", count(sources), loopbackAddr(sources+1)),
			},
			CapacityAfter: max(after, per) * sources,
		},
	}
	if !h.CanWriteSysctls() {
		sources = ceilDiv(a.n, per)
		l.Fix.Lines = []string{fmt.Sprintf("# connect from %s source addresses: on loopback, pushrelay loadgen --sources 127.0.0.2-%s", count(sources), loopbackAddr(sources+1))}
		l.Fix.CapacityAfter = per * sources
	}
	return l
}

// hostFix fills in the way around a host-wide limit that cannot be raised
// from here.
func (a *analysis) hostFix(l *Limit) {
	if l.Fix.Raisable {
		return
	}
	l.Fix.Hosts = ceilDiv(a.n, max(l.Capacity, 1))
	l.Fix.CapacityAfter = 0
}

// plan walks the binding limits from the lowest capacity up and writes the
// ordered fix list and the verdict.
func (a *analysis) plan(r *Report) {
	r.FitsNow, r.FitsAfterFixes = true, true
	var binding []*Limit
	for i := range r.Limits {
		if r.Limits[i].Binds {
			binding = append(binding, &r.Limits[i])
		}
	}
	if len(binding) == 0 {
		return
	}
	r.FitsNow = false
	r.Binding, r.BindingAt = binding[0].ID, binding[0].Capacity
	seen := map[string]int{}
	for i, l := range binding {
		st := Step{Limit: l.ID, Name: l.Name, Capacity: l.Capacity, Fix: *l.Fix}
		// The nofile fix raises fs.nr_open first when it must; the nr_open
		// step then has nothing left to add but a pointer back.
		st.Lines = []string{}
		done := 0
		for _, line := range l.Fix.Lines {
			if k, dup := seen[line]; dup {
				done = k
				continue
			}
			seen[line] = i + 1
			st.Lines = append(st.Lines, line)
		}
		if len(st.Lines) == 0 && done > 0 {
			st.Lines = append(st.Lines, fmt.Sprintf("# done by step %d", done))
		}
		switch {
		case l.Fix.Raisable:
		case l.Scope == ScopeProcess:
			r.Processes = max(r.Processes, l.Fix.Processes)
		default:
			r.FitsAfterFixes = false
		}
		if i+1 < len(binding) {
			st.Then = fmt.Sprintf("%s binds next, at %s", binding[i+1].Name, count(binding[i+1].Capacity))
		}
		r.Steps = append(r.Steps, st)
	}
	last := &r.Steps[len(r.Steps)-1]
	switch {
	case !r.FitsAfterFixes:
		last.Then = "does not fit on this host"
	case r.Processes > 1:
		last.Then = fmt.Sprintf("fits, as %s relay processes", count(r.Processes))
	default:
		last.Then = "fits"
	}
}

func (a *analysis) memoryReport() Memory {
	avail, src := a.available()
	return Memory{
		Model:       a.m,
		PerConnIdle: a.m.idle(a.lg),
		PerConnPeak: a.m.peak(a.lg),
		Idle:        a.n * a.m.idle(a.lg),
		Peak:        a.n * a.m.peak(a.lg),
		Available:   avail,
		Source:      src,
	}
}

// slowClients works out the send buffer that keeps a.stalled clients that
// stop reading under tcp_mem's pressure value, beside a small broadcast in
// flight to the whole target. It runs after plan: when the plan raises
// tcp_mem, the raised value is the one to fit under.
func (a *analysis) slowClients(r *Report) *SlowClients {
	h := a.h
	if h.TCPMem[1] == Unknown || h.TCPWmem[2] == Unknown {
		return nil
	}
	page := h.PageSize
	inUse := max(h.TCPMemPages, 0)
	peak := inUse + a.n*a.m.PagesInFlight*a.perConn()
	sc := &SlowClients{
		Stalled:       a.stalled,
		PressurePages: h.TCPMem[1],
		AutotunePages: ceilDiv(h.TCPWmem[2], page),
		RelayBytes:    a.stalled * relay.DefaultMaxOutbound,
	}
	if l := r.limit(LimitTCPMem); l.Binds && l.Fix != nil && l.Fix.Raisable {
		sc.PressurePages = recommendTCPMem(h.TCPMem, peak)[1]
	}
	sc.RoomPages = max(sc.PressurePages-peak, 0)
	sc.PagesPerClient = sc.RoomPages / a.stalled
	if sc.PagesPerClient >= sc.AutotunePages {
		sc.AutotuneFits = true
		return sc
	}
	// The kernel doubles SO_SNDBUF (capped at net.core.wmem_max) and lets a
	// socket's queued bytes, with their overhead, reach that: half the
	// share, rounded down to whole KiB.
	b := sc.PagesPerClient * page / 2 / 1024 * 1024
	if h.WmemMax != Unknown {
		b = min(b, h.WmemMax)
	}
	if b < minSendBuffer {
		b = minSendBuffer
		need := recommendTCPMem(h.TCPMem, peak+a.stalled*ceilDiv(2*b, page))
		sc.TCPMem = fmt.Sprintf("sysctl -w net.ipv4.tcp_mem=\"%d %d %d\"", need[0], need[1], need[2])
	}
	sc.SendBuffer = b
	return sc
}

func (a *analysis) portsReport() *Ports {
	h := a.h
	if !a.lg || h.PortLow == Unknown || h.PortHigh == Unknown {
		return nil
	}
	per := h.PortHigh - h.PortLow + 1
	after := int64(portsAfterHigh - portsAfterLow + 1)
	return &Ports{
		Range:        fmt.Sprintf("%d-%d", h.PortLow, h.PortHigh),
		PerSource:    per,
		Sources:      ceilDiv(a.n, per),
		RangeAfter:   fmt.Sprintf("%d-%d", portsAfterLow, portsAfterHigh),
		SourcesAfter: ceilDiv(a.n, max(per, after)),
	}
}

// recommendBacklog sizes a listen queue for a reconnect storm: every
// client back within about ten seconds of a restart queues roughly 1% of
// them behind a 100 ms stall of an event loop. At least the kernel's
// default 4096; at most 65535, where gnet truncates the backlog.
func recommendBacklog(n int64) int64 {
	return min(max(nextPow2(n/100), 4096), 65535)
}

func (a *analysis) warnings() []Warning {
	h := a.h
	var w []Warning
	rec := recommendBacklog(a.n)
	if h.Somaxconn != Unknown && h.Somaxconn < rec {
		w = append(w, Warning{
			ID: "somaxconn",
			Text: fmt.Sprintf("net.core.somaxconn %s caps each listener's accept queue (the relay has one listener per event loop and reads the value when it starts). It does not limit how many clients stay connected, but a reconnect storm of %s clients overflows a short queue: ListenOverflows counts the SYNs dropped, and those clients retry after 1 s, 3 s, 7 s. Raise it to %d and restart the relay.",
				count(h.Somaxconn), count(a.n), rec),
			Lines: []string{fmt.Sprintf("sysctl -w net.core.somaxconn=%d", rec)},
		})
	}
	// tcp_max_syn_backlog counts only without SYN cookies: with them, a
	// full SYN queue (sized by the listen backlog) is answered with cookies.
	if h.Syncookies == 0 {
		text := "net.ipv4.tcp_syncookies is off: a storm that fills a listener's SYN queue drops connections instead of answering with cookies."
		lines := []string{"sysctl -w net.ipv4.tcp_syncookies=1"}
		if h.SynBacklog != Unknown && h.SynBacklog < rec {
			text += fmt.Sprintf(" Without cookies, net.ipv4.tcp_max_syn_backlog %s bounds half-open connections too: raise it to %d.", count(h.SynBacklog), rec)
			lines = append(lines, fmt.Sprintf("sysctl -w net.ipv4.tcp_max_syn_backlog=%d", rec))
		}
		w = append(w, Warning{ID: "tcp_syncookies", Text: text, Lines: lines})
	}
	if h.NetdevBacklog != Unknown && h.NetdevBacklog < 16384 && a.n >= 100_000 {
		text := fmt.Sprintf("net.core.netdev_max_backlog %s is each CPU's queue of received packets handed to the stack by RPS, veth (containers) and loopback; the acknowledgements of a broadcast to %s clients arrive in a burst, and packets past it are dropped (second column of /proc/net/softnet_stat).", count(h.NetdevBacklog), count(a.n))
		w = append(w, Warning{ID: "netdev_max_backlog", Text: text, Lines: []string{"sysctl -w net.core.netdev_max_backlog=16384"}})
	}
	if !h.CanWriteSysctls() {
		for i := range w {
			if len(w[i].Lines) > 0 {
				w[i].Text += " Set it on the host: " + a.sysctlWhy() + "."
			}
		}
	}
	counter := func(id string, v int64, what, advice string) {
		if v > 0 {
			w = append(w, Warning{ID: id, Text: fmt.Sprintf("%s %s times since boot: %s", what, count(v), advice)})
		}
	}
	counter("listen_overflows", max(h.ListenOverflows, h.ListenDrops), "Listen queues overflowed (TcpExt ListenOverflows/ListenDrops)",
		"a listener on this host could not keep up with connections at some point; watch it with `nstat -az TcpExtListenOverflows TcpExtListenDrops`.")
	counter("tcp_memory_pressure", h.MemoryPressures, "TCP entered memory pressure (TcpExt TCPMemoryPressures)",
		"tcp_mem's second value was reached and the kernel shrank socket buffers.")
	counter("tcp_abort_on_memory", h.AbortOnMemory, "TCP aborted connections for lack of memory (TcpExt TCPAbortOnMemory)",
		"tcp_mem's third value, or orphan limits, were reached.")
	counter("time_wait_overflow", h.TWOverflow, "The TIME_WAIT table overflowed (TcpExt TCPTimeWaitOverflow)",
		"closed connections skipped TIME_WAIT because tcp_max_tw_buckets was full; harmless for the relay, raise it if a load generator reconnects fast.")
	counter("softnet_dropped", h.SoftnetDropped, "CPUs dropped received packets (softnet_stat)",
		"netdev_max_backlog was full.")
	if a.lg {
		if h.TWReuse != 1 {
			w = append(w, Warning{ID: "tcp_tw_reuse", Text: fmt.Sprintf("net.ipv4.tcp_tw_reuse is %d: a connection the load generator closes keeps its local port in TIME_WAIT for 60 s (the kernel's fixed TCP_TIMEWAIT_LEN; tcp_fin_timeout is FIN-WAIT-2, not this), so churn at R connections a second ties up 60×R ports. 1 lets new outgoing connections reuse them.", h.TWReuse),
				Lines: []string{"sysctl -w net.ipv4.tcp_tw_reuse=1"}})
		}
	}
	return w
}

func (a *analysis) notes() []string {
	h := a.h
	var n []string
	n = append(n, "Capacities count connections on top of what the host uses now (open files, conntrack entries, TCP memory, available memory); a relay already running here has its clients counted as usage.")
	if a.lg {
		n = append(n, "With --loadgen the load generator's sockets, files and epoll watches are counted here as well; its own process memory is not (measure it with its own bench).")
	}
	if len(h.Missing) > 0 {
		n = append(n, "Not read (the limits that depend on them are left out): "+strings.Join(h.Missing, ", ")+".")
	}
	return n
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }

func roundUp(v, step int64) int64 { return ceilDiv(v, step) * step }

func nextPow2(v int64) int64 {
	p := int64(1)
	for p < v && p < math.MaxInt64/2 {
		p <<= 1
	}
	return p
}

// loopbackAddr is the i-th address of 127.0.0.0/8 (i from 1).
func loopbackAddr(i int64) string {
	return fmt.Sprintf("127.%d.%d.%d", (i>>16)&0xff, (i>>8)&0xff, i&0xff)
}

// count formats n with thousands separators.
func count(n int64) string {
	if n == math.MaxInt64 {
		return "unlimited"
	}
	if n < 0 {
		return "-" + count(-n)
	}
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// bytesIEC formats a byte count in KiB, MiB or GiB.
func bytesIEC(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
