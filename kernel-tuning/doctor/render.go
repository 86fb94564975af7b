package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/pushrelay/pushrelay/relay"
)

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes r for people: the limits, the first one that binds, the
// ordered changes, memory, warnings and the verdict.
func (r *Report) WriteText(w io.Writer) error {
	p := &printer{w: w}
	h := r.Host
	what := "client connections"
	if r.Loadgen {
		what = "client connections, with their load generator on this host"
	}
	p.f("pushrelay doctor: can this host hold %s %s?\n", count(r.Target), what)
	if !h.Live() {
		p.f("(read from the snapshot %s, not the running host)\n", h.Root)
	}

	p.f("\nLimits, lowest capacity first (capacity in client connections):\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  limit\tsetting\tcapacity\tbinds\n")
	for _, l := range r.Limits {
		setting := l.Setting
		if l.InUse != "" {
			setting += " (" + l.InUse + " in use)"
		}
		verdict := "no"
		if l.Binds {
			verdict = "YES"
		}
		capacity := count(l.Capacity)
		if l.Scope != ScopeHost {
			capacity += " per " + l.Scope
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", l.Name, setting, capacity, verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if r.FitsNow {
		text := fmt.Sprintf("No limit binds: %s connections fit as the host stands.", count(r.Target))
		if len(r.Limits) > 0 {
			text += fmt.Sprintf(" The lowest is %s, at %s.", r.Limits[0].Name, count(r.Limits[0].Capacity))
		}
		p.f("\n")
		p.wrap("", text)
	} else {
		first := r.Steps[0]
		p.f("\nFirst to bind: %s, at %s connections.\n", first.Name, count(first.Capacity))
		p.f("\nTo reach %s, in order:\n", count(r.Target))
		for i, st := range r.Steps {
			l := r.limit(st.Limit)
			head := fmt.Sprintf("%s: %s", st.Name, count(st.Capacity))
			if l.Scope != ScopeHost {
				head += " per " + l.Scope
			}
			p.wrap(fmt.Sprintf("  %d. ", i+1), head+".")
			p.wrap("     ", capitalize(l.Basis)+".")
			if !st.Raisable {
				p.wrap("     ", "Cannot be raised here: "+st.Why+".")
			}
			for _, line := range st.Lines {
				p.f("       %s\n", line)
			}
			if st.Raisable && st.CapacityAfter > 0 {
				p.f("     Capacity after: %s.\n", count(st.CapacityAfter))
			}
			if st.Around != "" {
				p.wrap("     ", "Way around: "+st.Around+".")
			}
			p.wrap("     ", "Then: "+st.Then+".")
		}
		switch {
		case r.hasSysctlStep() && r.SysctlsWritable:
			p.wrap("  ", "To keep the sysctls across reboots, install kernel-tuning/99-pushrelay.conf in /etc/sysctl.d/ (kernel-tuning/apply-sysctl.sh --dry-run shows what it would change first).")
		case r.hasSysctlStep():
			p.wrap("  ", "On the host, kernel-tuning/99-pushrelay.conf in /etc/sysctl.d/ sets the sysctls at every boot.")
		}
	}

	m := r.Memory
	model := fmt.Sprintf("Model: %s in the kernel and %s in the relay per idle client", bytesIEC(m.Model.KernelPerConn), bytesIEC(m.Model.RelayPerConn))
	if r.Loadgen {
		model += fmt.Sprintf(", and %s for the load generator's socket", bytesIEC(m.Model.KernelPerConn))
	}
	p.f("\nMemory:\n")
	p.wrap("  ", model+".")
	p.wrap("  ", fmt.Sprintf("%s idle clients need %s; a small broadcast to all of them adds %s while in flight, %s at the peak. Available: %s (%s).",
		count(r.Target), bytesIEC(m.Idle), bytesIEC(m.Peak-m.Idle), bytesIEC(m.Peak), bytesIEC(m.Available), m.Source))

	if pt := r.Ports; pt != nil {
		p.f("\nLoad generator ports:\n")
		p.wrap("  ", fmt.Sprintf("ip_local_port_range %s gives %s connections per (source address, relay address:port). %s clients need %s source addresses as it is, %s with the range %s.",
			pt.Range, count(pt.PerSource), count(r.Target), count(pt.Sources), count(pt.SourcesAfter), pt.RangeAfter))
	}

	if sc := r.Slow; sc != nil {
		p.f("\nClients that stop reading:\n")
		p.wrap("  ", fmt.Sprintf("Planned for %s of them at once (--stalled; by default 1%% of the target, at least 1,000: a thousand connections that never read cost an attacker nothing). Each holds what it was sent up to its send buffer in the kernel, and --max-outbound (default %s) in the relay: %s there.",
			count(sc.Stalled), bytesIEC(relay.DefaultMaxOutbound), bytesIEC(sc.RelayBytes)))
		room := fmt.Sprintf("Beside a small broadcast in flight to all %s clients, tcp_mem's pressure value, %s pages, leaves %s pages: %s per stalled client.",
			count(r.Target), count(sc.PressurePages), count(sc.RoomPages), count(sc.PagesPerClient))
		if sc.AutotuneFits {
			p.wrap("  ", room+fmt.Sprintf(" With the kernel's autotuning a stalled client holds up to tcp_wmem's maximum, %s (%s pages): that fits, and the relay needs no --sndbuf.",
				bytesIEC(sc.AutotunePages*r.Host.PageSize), count(sc.AutotunePages)))
		} else {
			p.wrap("  ", room+fmt.Sprintf(" With the kernel's autotuning a stalled client can hold up to tcp_wmem's maximum, %s (%s pages); past the pressure value the kernel shrinks every socket's buffers, and healthy clients are then reset as slow consumers too. Bound it with the relay's send buffer (the kernel doubles it):",
				bytesIEC(sc.AutotunePages*r.Host.PageSize), count(sc.AutotunePages)))
			p.f("      pushrelay serve --sndbuf %dKiB\n", sc.SendBuffer/1024)
			if sc.TCPMem != "" {
				where := "raise tcp_mem too"
				if !r.SysctlsWritable {
					where = "the host must raise tcp_mem too (sysctls are not writable here)"
				}
				p.wrap("  ", "Even the smallest send buffer does not fit under the pressure value: "+where+", or plan for fewer stalled clients per host.")
				p.f("      %s\n", sc.TCPMem)
			}
		}
	}

	if len(r.Warnings) > 0 {
		p.f("\nWarnings (these do not cap the count):\n")
		for _, wn := range r.Warnings {
			p.wrap("  - ", wn.Text)
			for _, line := range wn.Lines {
				p.f("      %s\n", line)
			}
		}
	}
	if len(r.Notes) > 0 {
		p.f("\nNotes:\n")
		for _, n := range r.Notes {
			p.wrap("  - ", n)
		}
	}

	var verdict string
	switch {
	case r.FitsNow:
		verdict = fmt.Sprintf("%s connections fit as the host stands (exit 0).", count(r.Target))
	case r.FitsAfterFixes && r.Processes > 1:
		verdict = fmt.Sprintf("%s connections do not fit as the host stands (exit 1). They fit after the changes above, as %s relay processes.", count(r.Target), count(r.Processes))
	case r.FitsAfterFixes:
		verdict = fmt.Sprintf("%s connections do not fit as the host stands (exit 1). They fit after the changes above.", count(r.Target))
	default:
		verdict = fmt.Sprintf("%s connections do not fit as the host stands (exit 1), nor after every change this host allows: see \"Cannot be raised here\" above.", count(r.Target))
	}
	p.f("\n")
	p.wrap("Verdict: ", verdict)
	return p.err
}

func (r *Report) limit(id string) Limit {
	for _, l := range r.Limits {
		if l.ID == id {
			return l
		}
	}
	return Limit{}
}

func (r *Report) hasSysctlStep() bool {
	for _, st := range r.Steps {
		for _, l := range st.Lines {
			if strings.HasPrefix(l, "sysctl ") {
				return true
			}
		}
	}
	return false
}

// printer keeps the first write error so the text can be written without
// checking every line.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

// wrap writes text wrapped at 80 columns, the first line after prefix and
// the rest indented to match it.
func (p *printer) wrap(prefix, text string) {
	const width = 80
	indent := strings.Repeat(" ", len(prefix))
	line := prefix
	for _, word := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(word) > width {
			p.f("%s\n", line)
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	p.f("%s\n", line)
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
