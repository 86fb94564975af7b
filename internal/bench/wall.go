package bench

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/pushrelay/pushrelay/kernel-tuning/doctor"
)

// Walls. A capacity ramp stops at its first failure; naming the limit that
// ran out, with its evidence and its fix, is the point of the ramp. The
// kinds are the doctor's limit IDs where the doctor knows the limit, so
// the fix comes from the same place `pushrelay doctor` gets it.
const (
	WallNone          = "none"             // the target was reached
	WallNofile        = doctor.LimitNofile // a process's open-file limit
	WallFileMax       = doctor.LimitFileMax
	WallPorts         = doctor.LimitPorts
	WallTCPMem        = doctor.LimitTCPMem
	WallConntrack     = doctor.LimitConntrack
	WallMemory        = doctor.LimitMemory
	WallListenBacklog = "listen_backlog" // accept queues overflowed
	WallUnknown       = "unknown"
)

// HostCounters are the kernel's counters a wall leaves a trace in, read
// before and after a step. A value of -1 means unknown (file missing).
type HostCounters struct {
	ListenOverflows    uint64 `json:"listen_overflows"`
	ListenDrops        uint64 `json:"listen_drops"`
	TCPMemoryPressures uint64 `json:"tcp_memory_pressures"`
	FilesOpen          int64  `json:"files_open"` // /proc/sys/fs/file-nr, first field
	FilesMax           int64  `json:"files_max"`  // its third field
	TCPInUse           int64  `json:"tcp_inuse"`  // /proc/net/sockstat
	TCPMemPages        int64  `json:"tcp_mem_pages"`
	TCPMemPressure     int64  `json:"tcp_mem_pressure"` // tcp_mem's second field, pages
	ConntrackCount     int64  `json:"conntrack_count"`
	ConntrackMax       int64  `json:"conntrack_max"`
}

// ReadHostCounters reads the counters from the live host.
func ReadHostCounters() HostCounters {
	c := HostCounters{FilesOpen: -1, FilesMax: -1, TCPInUse: -1, TCPMemPages: -1, TCPMemPressure: -1, ConntrackCount: -1, ConntrackMax: -1}
	if m, err := readNetstat("TcpExt", "ListenOverflows", "ListenDrops", "TCPMemoryPressures"); err == nil {
		c.ListenOverflows, c.ListenDrops, c.TCPMemoryPressures = m["ListenOverflows"], m["ListenDrops"], m["TCPMemoryPressures"]
	}
	if f := fields("/proc/sys/fs/file-nr"); len(f) == 3 {
		c.FilesOpen, c.FilesMax = f[0], f[2]
	}
	if m, err := readSockstatTCP(); err == nil {
		c.TCPInUse, c.TCPMemPages = m["inuse"], m["mem"]
	}
	if f := fields("/proc/sys/net/ipv4/tcp_mem"); len(f) == 3 {
		c.TCPMemPressure = f[1]
	}
	if f := fields("/proc/sys/net/netfilter/nf_conntrack_count"); len(f) == 1 {
		c.ConntrackCount = f[0]
	}
	if f := fields("/proc/sys/net/netfilter/nf_conntrack_max"); len(f) == 1 {
		c.ConntrackMax = f[0]
	}
	return c
}

// fields reads whitespace-separated integers from a file.
func fields(path string) []int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []int64
	for _, f := range strings.Fields(string(b)) {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil
		}
		out = append(out, n)
	}
	return out
}

// WallEvidence is what a step of the ramp saw.
type WallEvidence struct {
	Target      int              `json:"target"`      // connections the step wanted
	Established int              `json:"established"` // connections that got an ID
	Failures    map[string]int64 `json:"failures"`    // the load generator's, by kind (EMFILE, ...)
	// RelayRejectedFull counts sockets the relay closed over --max-conns;
	// RelayMaxConns is that limit, from RLIMIT_NOFILE.
	RelayRejectedFull uint64       `json:"relay_rejected_full"`
	RelayMaxConns     int          `json:"relay_max_conns"`
	RelayNofile       [2]uint64    `json:"relay_nofile"` // soft, hard
	Before            HostCounters `json:"before"`
	After             HostCounters `json:"after"`
}

// Wall is the limit a ramp ran into.
type Wall struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	At       int      `json:"at"`       // connections held when it stopped the ramp
	Evidence []string `json:"evidence"` // the readings that show it, as sentences
	Fix      []string `json:"fix,omitempty"`
	Around   string   `json:"around,omitempty"`
}

var wallNames = map[string]string{
	WallNone:          "none: the target was reached",
	WallNofile:        "open files per process (RLIMIT_NOFILE)",
	WallFileMax:       "open files on the host (fs.file-max)",
	WallPorts:         "ephemeral ports (net.ipv4.ip_local_port_range)",
	WallTCPMem:        "TCP memory (net.ipv4.tcp_mem)",
	WallConntrack:     "connection tracking (net.netfilter.nf_conntrack_max)",
	WallMemory:        "memory",
	WallListenBacklog: "listen backlog (net.core.somaxconn, tcp_max_syn_backlog)",
	WallUnknown:       "unknown: see the failures",
}

// NameWall says which limit stopped a step, from its evidence alone: the
// first matching rule wins, in the order a kernel runs into them.
func NameWall(ev WallEvidence) Wall {
	w := Wall{At: ev.Established}
	fail := func(kind string) int64 { return ev.Failures[kind] }
	d := func(a, b uint64) uint64 {
		if a > b {
			return a - b
		}
		return 0
	}
	overflows := d(ev.After.ListenOverflows, ev.Before.ListenOverflows) + d(ev.After.ListenDrops, ev.Before.ListenDrops)
	pressures := d(ev.After.TCPMemoryPressures, ev.Before.TCPMemoryPressures)
	set := func(id string, evidence ...string) Wall {
		w.ID, w.Name, w.Evidence = id, wallNames[id], evidence
		return w
	}
	switch {
	case ev.Established >= ev.Target && len(ev.Failures) == 0 && ev.RelayRejectedFull == 0:
		return set(WallNone, fmt.Sprintf("%d of %d connections established, no failures", ev.Established, ev.Target))
	case fail("EMFILE") > 0:
		return set(WallNofile, fmt.Sprintf("the load generator's connects failed with EMFILE %d times: a worker process ran out of descriptors", fail("EMFILE")))
	case ev.RelayRejectedFull > 0:
		return set(WallNofile,
			fmt.Sprintf("the relay closed %d connections over --max-conns %d", ev.RelayRejectedFull, ev.RelayMaxConns),
			fmt.Sprintf("its RLIMIT_NOFILE is soft %d, hard %d; --max-conns defaults to the soft limit minus a reserve", ev.RelayNofile[0], ev.RelayNofile[1]))
	case fail("ENFILE") > 0 || (ev.After.FilesMax > 0 && ev.After.FilesOpen >= ev.After.FilesMax-64):
		return set(WallFileMax, fmt.Sprintf("ENFILE %d times; file-nr %d of %d", fail("ENFILE"), ev.After.FilesOpen, ev.After.FilesMax))
	case fail("EADDRNOTAVAIL") > 0:
		return set(WallPorts, fmt.Sprintf("the load generator's connects failed with EADDRNOTAVAIL %d times: no free ephemeral port for a source address and the target", fail("EADDRNOTAVAIL")))
	case pressures > 0 || (ev.After.TCPMemPressure > 0 && ev.After.TCPMemPages >= ev.After.TCPMemPressure):
		return set(WallTCPMem, fmt.Sprintf("TcpExt TCPMemoryPressures rose by %d; TCP memory %d pages, pressure threshold %d", pressures, ev.After.TCPMemPages, ev.After.TCPMemPressure))
	case ev.After.ConntrackMax > 0 && ev.After.ConntrackCount >= ev.After.ConntrackMax*99/100:
		return set(WallConntrack, fmt.Sprintf("conntrack holds %d entries of %d", ev.After.ConntrackCount, ev.After.ConntrackMax))
	case fail("ENOMEM") > 0 || fail("ENOBUFS") > 0:
		return set(WallMemory, fmt.Sprintf("ENOMEM %d, ENOBUFS %d times", fail("ENOMEM"), fail("ENOBUFS")))
	case overflows > 0:
		return set(WallListenBacklog,
			fmt.Sprintf("TcpExt ListenOverflows and ListenDrops rose by %d: connections arrived faster than the relay accepted them and the accept queue was full", overflows),
			fmt.Sprintf("the load generator saw %s", failureList(ev.Failures)))
	}
	return set(WallUnknown, fmt.Sprintf("%d of %d established; failures: %s", ev.Established, ev.Target, failureList(ev.Failures)))
}

// failureList formats failures by kind, largest first.
func failureList(f map[string]int64) string {
	if len(f) == 0 {
		return "no failures"
	}
	kinds := make([]string, 0, len(f))
	for k := range f {
		kinds = append(kinds, k)
	}
	sort.Slice(kinds, func(i, j int) bool {
		return f[kinds[i]] > f[kinds[j]] || f[kinds[i]] == f[kinds[j]] && kinds[i] < kinds[j]
	})
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%s %d", k, f[k])
	}
	return strings.Join(parts, ", ")
}

// AddFix fills w's fix from the doctor's analysis of the host for target
// connections: the same lines `pushrelay doctor --target` prints.
func (w *Wall) AddFix(rep *doctor.Report) {
	if w.ID == WallListenBacklog {
		for _, warn := range rep.Warnings {
			if warn.ID == "somaxconn" || warn.ID == "tcp_syncookies" {
				w.Fix = append(w.Fix, warn.Lines...)
			}
		}
		if len(w.Fix) == 0 {
			w.Fix = []string{"sysctl -w net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535 (accept bursts larger than the relay's accept queues)"}
		}
		return
	}
	for _, l := range rep.Limits {
		if l.ID != w.ID || l.Fix == nil {
			continue
		}
		w.Fix = append(w.Fix, l.Fix.Lines...)
		if !l.Fix.Raisable {
			w.Around = "Cannot be raised here: " + strings.TrimSuffix(l.Fix.Why, ".") + ". Way around: " + l.Fix.Around
		}
	}
}
