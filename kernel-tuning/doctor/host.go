package doctor

import (
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Unknown marks a value that could not be read.
const Unknown = -1

// Capability bits, as numbered in linux/capability.h.
const (
	capNetAdmin    = 12
	capSysAdmin    = 21
	capSysResource = 24
)

// Host is what Read found on one host. Counts and sizes are Unknown where
// the file was missing or unreadable; Missing names those files.
type Host struct {
	// Root is the directory /proc and /sys were read under.
	Root string `json:"root"`

	// The doctor's own process: its open-file limit, identity and
	// capabilities, which decide what it (and the relay started the same
	// way) could raise.
	NofileSoft int64 `json:"nofile_soft"`
	NofileHard int64 `json:"nofile_hard"`
	UID        int64 `json:"uid"`
	// CapEff is the capability set in force; CapBnd bounds what any
	// process started from here could ever have: a capability missing from
	// it cannot be gained by sudo or by a systemd unit in this container.
	CapEff uint64 `json:"cap_eff"`
	CapBnd uint64 `json:"cap_bnd"`
	// CPUs is how many CPUs the process may run on (Cpus_allowed_list):
	// the relay's default number of event loops, each of which holds
	// descriptors of its own.
	CPUs int64 `json:"cpus"`
	// ProcSysReadOnly is true when /proc/sys is mounted read-only, as
	// container runtimes do.
	ProcSysReadOnly bool `json:"proc_sys_read_only"`

	// Files.
	FileMax       int64 `json:"file_max"`
	FileAllocated int64 `json:"file_allocated"` // first field of file-nr
	NrOpen        int64 `json:"nr_open"`
	EpollWatches  int64 `json:"epoll_max_user_watches"`

	// Accept path.
	Somaxconn     int64 `json:"somaxconn"`
	SynBacklog    int64 `json:"tcp_max_syn_backlog"`
	Syncookies    int64 `json:"tcp_syncookies"`
	NetdevBacklog int64 `json:"netdev_max_backlog"`

	// Ports, for a load generator on this host.
	PortLow  int64 `json:"port_low"`
	PortHigh int64 `json:"port_high"`

	// TCP memory: tcp_mem in pages; tcp_rmem and tcp_wmem in bytes (min,
	// default, max).
	TCPMem   [3]int64 `json:"tcp_mem_pages"`
	TCPRmem  [3]int64 `json:"tcp_rmem"`
	TCPWmem  [3]int64 `json:"tcp_wmem"`
	WmemMax  int64    `json:"wmem_max"`
	PageSize int64    `json:"page_size"`

	// TIME_WAIT and churn.
	FinTimeout   int64 `json:"tcp_fin_timeout"`
	TWReuse      int64 `json:"tcp_tw_reuse"`
	MaxTWBuckets int64 `json:"tcp_max_tw_buckets"`

	// Conntrack, when the module is loaded (its sysctls exist).
	ConntrackLoaded bool  `json:"conntrack_loaded"`
	ConntrackMax    int64 `json:"conntrack_max"`
	ConntrackCount  int64 `json:"conntrack_count"`

	// Memory, in bytes. CgroupLimit and CgroupAvailable are Unknown when no
	// cgroup memory limit applies.
	MemTotal        int64 `json:"mem_total"`
	MemAvailable    int64 `json:"mem_available"`
	CgroupLimit     int64 `json:"cgroup_limit"`
	CgroupAvailable int64 `json:"cgroup_available"`

	// Current usage.
	SocketsUsed     int64 `json:"sockets_used"`
	TCPInUse        int64 `json:"tcp_inuse"`
	TCPTimeWait     int64 `json:"tcp_time_wait"`
	TCPMemPages     int64 `json:"tcp_mem_in_use_pages"`
	ListenOverflows int64 `json:"listen_overflows"`
	ListenDrops     int64 `json:"listen_drops"`
	MemoryPressures int64 `json:"tcp_memory_pressures"`
	AbortOnMemory   int64 `json:"tcp_abort_on_memory"`
	TWOverflow      int64 `json:"tcp_time_wait_overflow"`
	SoftnetDropped  int64 `json:"softnet_dropped"`

	// Missing lists the files that could not be read, relative to Root.
	Missing []string `json:"missing,omitempty"`
}

// has reports whether capability bit c is in set.
func has(set uint64, c uint) bool { return set&(1<<c) != 0 }

// CanRaiseNofile reports whether a process started from here could raise
// its hard RLIMIT_NOFILE: that takes CAP_SYS_RESOURCE, and a capability
// outside the bounding set is out of reach even for root (a container or a
// sandbox set the limit).
func (h *Host) CanRaiseNofile() bool { return has(h.CapBnd, capSysResource) }

// CanWriteSysctls reports whether sysctls could be set from here: /proc/sys
// mounted read-write and CAP_SYS_ADMIN within reach (the fs.* keys are
// global; net.* keys also need CAP_NET_ADMIN in this network namespace).
func (h *Host) CanWriteSysctls() bool {
	return !h.ProcSysReadOnly && has(h.CapBnd, capSysAdmin) && has(h.CapBnd, capNetAdmin)
}

// Privileged reports whether this process could make both kinds of change
// itself, now, without sudo.
func (h *Host) Privileged() bool {
	return h.UID == 0 && has(h.CapEff, capSysResource) && has(h.CapEff, capSysAdmin)
}

// Live reports whether h was read from the running host rather than a
// snapshot.
func (h *Host) Live() bool { return filepath.Clean(h.Root) == "/" }

// reader reads files under a root, recording the ones it could not read
// rather than failing: a doctor that stops at the first missing file is no
// help on the unusual host that needs it most.
type reader struct {
	root    string
	missing []string
}

func (r *reader) read(name string) (string, bool) {
	s, ok := r.optional(name)
	if !ok {
		r.missing = append(r.missing, name)
	}
	return s, ok
}

// lines reads name as lines, or returns none when it cannot be read
// (recorded as missing).
func (r *reader) lines(name string) []string {
	s, ok := r.read(name)
	if !ok {
		return nil
	}
	return strings.Split(s, "\n")
}

// optional reads name without recording it as missing.
func (r *reader) optional(name string) (string, bool) {
	b, err := os.ReadFile(filepath.Join(r.root, filepath.FromSlash(name)))
	return string(b), err == nil
}

// exists reports whether name exists, without recording it as missing.
func (r *reader) exists(name string) bool {
	_, err := os.Stat(filepath.Join(r.root, filepath.FromSlash(name)))
	return err == nil
}

// ints reads n whitespace-separated integers from name, Unknown for each
// it could not read.
func (r *reader) ints(name string, n int) []int64 {
	out := make([]int64, n)
	for i := range out {
		out[i] = Unknown
	}
	s, ok := r.read(name)
	if !ok {
		return out
	}
	f := strings.Fields(s)
	for i := 0; i < n && i < len(f); i++ {
		if v, err := strconv.ParseInt(f[i], 10, 64); err == nil {
			out[i] = v
		}
	}
	return out
}

func (r *reader) int(name string) int64 { return r.ints(name, 1)[0] }

// Read collects the host's limits and usage from root ("/" for the live
// host). It fails only when root holds no /proc at all; any other file
// that is missing leaves its value Unknown and is listed in Host.Missing.
func Read(root string) (*Host, error) {
	if root == "" {
		root = "/"
	}
	if st, err := os.Stat(filepath.Join(root, "proc")); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("doctor: %s holds no proc directory: not a host root or snapshot", root)
	}
	r := &reader{root: root}
	h := &Host{Root: root}

	h.readLimits(r)
	h.readStatus(r)
	h.readMounts(r)

	fileNr := r.ints("proc/sys/fs/file-nr", 3)
	h.FileAllocated = fileNr[0]
	h.FileMax = r.int("proc/sys/fs/file-max")
	h.NrOpen = r.int("proc/sys/fs/nr_open")
	h.EpollWatches = r.int("proc/sys/fs/epoll/max_user_watches")

	h.Somaxconn = r.int("proc/sys/net/core/somaxconn")
	h.SynBacklog = r.int("proc/sys/net/ipv4/tcp_max_syn_backlog")
	h.Syncookies = r.int("proc/sys/net/ipv4/tcp_syncookies")
	h.NetdevBacklog = r.int("proc/sys/net/core/netdev_max_backlog")

	ports := r.ints("proc/sys/net/ipv4/ip_local_port_range", 2)
	h.PortLow, h.PortHigh = ports[0], ports[1]

	copy(h.TCPMem[:], r.ints("proc/sys/net/ipv4/tcp_mem", 3))
	copy(h.TCPRmem[:], r.ints("proc/sys/net/ipv4/tcp_rmem", 3))
	copy(h.TCPWmem[:], r.ints("proc/sys/net/ipv4/tcp_wmem", 3))
	h.WmemMax = r.int("proc/sys/net/core/wmem_max")

	h.FinTimeout = r.int("proc/sys/net/ipv4/tcp_fin_timeout")
	h.TWReuse = r.int("proc/sys/net/ipv4/tcp_tw_reuse")
	h.MaxTWBuckets = r.int("proc/sys/net/ipv4/tcp_max_tw_buckets")

	// Conntrack's sysctls exist only while the module is loaded; its
	// absence is not a missing file.
	h.ConntrackMax, h.ConntrackCount = Unknown, Unknown
	if r.exists("proc/sys/net/netfilter/nf_conntrack_max") {
		h.ConntrackLoaded = true
		h.ConntrackMax = r.int("proc/sys/net/netfilter/nf_conntrack_max")
		h.ConntrackCount = r.int("proc/sys/net/netfilter/nf_conntrack_count")
	}

	h.readMeminfo(r)
	h.readCgroup(r)
	h.readSockstat(r)
	h.readNetstat(r)
	h.readSoftnet(r)

	// The page size is the unit of tcp_mem. It is the machine's own on
	// the live host; snapshots are of 4 KiB-page machines.
	h.PageSize = 4096
	if h.Live() {
		h.PageSize = int64(os.Getpagesize())
	}
	h.Missing = r.missing
	return h, nil
}

// readLimits reads RLIMIT_NOFILE: with getrlimit on the live host, from
// proc/self/limits in a snapshot (or where getrlimit is not available).
func (h *Host) readLimits(r *reader) {
	h.NofileSoft, h.NofileHard = Unknown, Unknown
	if h.Live() {
		if soft, hard, err := nofileLimit(); err == nil {
			h.NofileSoft, h.NofileHard = soft, hard
			return
		}
	}
	for _, line := range r.lines("proc/self/limits") {
		if !strings.HasPrefix(line, "Max open files") {
			continue
		}
		f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
		if len(f) >= 2 {
			h.NofileSoft, h.NofileHard = parseLimit(f[0]), parseLimit(f[1])
		}
	}
}

func parseLimit(s string) int64 {
	if s == "unlimited" {
		return math.MaxInt64
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return Unknown
	}
	return v
}

// readStatus reads the UID, the capability sets and the CPUs the process
// may run on from proc/self/status.
func (h *Host) readStatus(r *reader) {
	h.UID, h.CPUs = Unknown, Unknown
	for _, line := range r.lines("proc/self/status") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Uid":
			if f := strings.Fields(v); len(f) > 1 {
				// The effective UID decides permission checks.
				h.UID, _ = strconv.ParseInt(f[1], 10, 64)
			}
		case "CapEff":
			h.CapEff, _ = strconv.ParseUint(v, 16, 64)
		case "CapBnd":
			h.CapBnd, _ = strconv.ParseUint(v, 16, 64)
		case "Cpus_allowed_list":
			h.CPUs = parseCPUList(v)
		}
	}
}

// parseCPUList counts the CPUs in a kernel CPU list ("0-3,8,10-11"), as
// runtime.NumCPU counts the affinity mask. It returns Unknown for anything
// else.
func parseCPUList(s string) int64 {
	var n int64
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 31)
		if err != nil {
			return Unknown
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 31); err != nil || b < a {
				return Unknown
			}
		}
		n += int64(b-a) + 1
	}
	return n
}

// readMounts finds the mount that holds /proc/sys and whether it is
// read-only.
func (h *Host) readMounts(r *reader) {
	s, ok := r.read("proc/self/mounts")
	if !ok {
		return
	}
	best := ""
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		mp := f[1]
		if (mp == "/proc/sys" || mp == "/proc" || mp == "/") && len(mp) >= len(best) {
			best = mp
			h.ProcSysReadOnly = false
			for _, o := range strings.Split(f[3], ",") {
				if o == "ro" {
					h.ProcSysReadOnly = true
				}
			}
		}
	}
}

func (h *Host) readMeminfo(r *reader) {
	h.MemTotal, h.MemAvailable = Unknown, Unknown
	for _, line := range r.lines("proc/meminfo") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 2 && f[2] == "kB" {
			v *= 1024
		}
		switch f[0] {
		case "MemTotal:":
			h.MemTotal = v
		case "MemAvailable:":
			h.MemAvailable = v
		}
	}
}

// cgroupFiles names one cgroup hierarchy's memory files.
type cgroupFiles struct {
	base, limit, usage, inactive string
}

var (
	cgroupV2       = cgroupFiles{"sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"}
	cgroupV2Hybrid = cgroupFiles{"sys/fs/cgroup/unified", "memory.max", "memory.current", "inactive_file"}
	cgroupV1       = cgroupFiles{"sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"}
)

// readCgroup finds the memory limit of the doctor's cgroup and its
// ancestors (cgroup v2, or v1's memory controller), and the room left
// under the tightest of them. Kernel socket memory is charged to the cgroup
// too, so a container's limit caps connections as RAM does.
func (h *Host) readCgroup(r *reader) {
	h.CgroupLimit, h.CgroupAvailable = Unknown, Unknown
	s, ok := r.read("proc/self/cgroup")
	if !ok {
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		switch {
		case f[0] == "0" && f[1] == "":
			if h.cgroupLimit(r, cgroupV2, f[2]) || h.cgroupLimit(r, cgroupV2Hybrid, f[2]) {
				return
			}
		case strings.Contains(","+f[1]+",", ",memory,"):
			if h.cgroupLimit(r, cgroupV1, f[2]) {
				return
			}
		}
	}
}

// cgroupLimit walks from the cgroup at p up to the root of one hierarchy,
// keeping the tightest limit. It reports whether the hierarchy has memory
// files at all.
func (h *Host) cgroupLimit(r *reader, c cgroupFiles, p string) bool {
	found := false
	for p = path.Clean("/" + p); ; p = path.Dir(p) {
		dir := path.Join(c.base, p)
		if r.exists(path.Join(dir, c.limit)) {
			found = true
			limS, _ := r.read(path.Join(dir, c.limit))
			lim, err := strconv.ParseInt(strings.TrimSpace(limS), 10, 64)
			// "max" (v2) fails to parse; v1's "unlimited" is near 2^63.
			if err == nil && lim < 1<<60 {
				if used := r.int(path.Join(dir, c.usage)); used != Unknown {
					used -= statField(r, path.Join(dir, "memory.stat"), c.inactive)
					room := max(lim-used, 0)
					if h.CgroupLimit == Unknown || room < h.CgroupAvailable {
						h.CgroupLimit, h.CgroupAvailable = lim, room
					}
				}
			}
		}
		if p == "/" {
			return found
		}
	}
}

// statField returns one field of a memory.stat file, 0 when absent: page
// cache the kernel can reclaim is not a limit on new connections.
func statField(r *reader, name, key string) int64 {
	s, ok := r.optional(name)
	if !ok {
		return 0
	}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// readSockstat reads /proc/net/sockstat:
//
//	sockets: used 11
//	TCP: inuse 1 orphan 0 tw 1255 alloc 1 mem 318
func (h *Host) readSockstat(r *reader) {
	h.SocketsUsed, h.TCPInUse, h.TCPTimeWait, h.TCPMemPages = Unknown, Unknown, Unknown, Unknown
	for _, line := range r.lines("proc/net/sockstat") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		kv := map[string]int64{}
		for i := 1; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseInt(f[i+1], 10, 64); err == nil {
				kv[f[i]] = v
			}
		}
		get := func(k string) int64 {
			if v, ok := kv[k]; ok {
				return v
			}
			return Unknown
		}
		switch f[0] {
		case "sockets:":
			h.SocketsUsed = get("used")
		case "TCP:":
			h.TCPInUse, h.TCPTimeWait, h.TCPMemPages = get("inuse"), get("tw"), get("mem")
		}
	}
}

// readNetstat reads the TcpExt counters of /proc/net/netstat, a header line
// of names followed by a line of values.
func (h *Host) readNetstat(r *reader) {
	h.ListenOverflows, h.ListenDrops, h.MemoryPressures, h.AbortOnMemory, h.TWOverflow = Unknown, Unknown, Unknown, Unknown, Unknown
	s, ok := r.read("proc/net/netstat")
	if !ok {
		return
	}
	lines := strings.Split(s, "\n")
	for i := 0; i+1 < len(lines); i++ {
		names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
		if len(names) == 0 || names[0] != "TcpExt:" || len(values) != len(names) || values[0] != "TcpExt:" {
			continue
		}
		for j, n := range names {
			v, err := strconv.ParseInt(values[j], 10, 64)
			if err != nil {
				continue
			}
			switch n {
			case "ListenOverflows":
				h.ListenOverflows = v
			case "ListenDrops":
				h.ListenDrops = v
			case "TCPMemoryPressures":
				h.MemoryPressures = v
			case "TCPAbortOnMemory":
				h.AbortOnMemory = v
			case "TCPTimeWaitOverflow":
				h.TWOverflow = v
			}
		}
		return
	}
}

// readSoftnet sums the second column of /proc/net/softnet_stat (hex, one
// line per CPU): packets dropped because a CPU's input queue
// (netdev_max_backlog) was full.
func (h *Host) readSoftnet(r *reader) {
	h.SoftnetDropped = Unknown
	s, ok := r.read("proc/net/softnet_stat")
	if !ok {
		return
	}
	var sum int64
	for _, line := range strings.Split(s, "\n") {
		cols := strings.Fields(line)
		if len(cols) < 2 {
			continue
		}
		if v, err := strconv.ParseUint(cols[1], 16, 32); err == nil {
			sum += int64(v)
		}
	}
	h.SoftnetDropped = sum
}
