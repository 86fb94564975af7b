package doctor

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/pushrelay/pushrelay/relay"
)

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
	a.loops = max(h.CPUs, 1)
	a.reserve = int64(relay.FileReserveFor(int(a.loops), 0))
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
	// loops is the relay's default number of event loops here (one per
	// CPU, at least one), and reserve the descriptors its default MaxConns
	// leaves out of RLIMIT_NOFILE: the relay's own budget, policy listener
	// off.
	loops   int64
	reserve int64
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
