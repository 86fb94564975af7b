package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// ErrUnsupported is returned where a measurement needs Linux.
var ErrUnsupported = errors.New("bench: needs Linux (/proc and Linux socket options)")

// Machine describes the host a run was measured on. Figures from different
// machines are not comparable; ratios within one run are.
type Machine struct {
	Kernel         string `json:"kernel"`          // uname -srm
	Hostname       string `json:"hostname"`        // uname -n
	Cores          int    `json:"cores"`           // runtime.NumCPU
	MemTotalBytes  int64  `json:"mem_total_bytes"` // MemTotal from /proc/meminfo
	RlimitNofile   uint64 `json:"rlimit_nofile"`   // soft limit, as Go raised it
	Somaxconn      int    `json:"somaxconn"`       // the largest listen backlog
	TCPSyncookies  string `json:"tcp_syncookies"`
	TCPMaxSynBklog string `json:"tcp_max_syn_backlog"`
	PortRange      string `json:"ip_local_port_range"`
	// The other limits a host runs into as connections grow.
	RlimitNofileHard uint64 `json:"rlimit_nofile_hard"`
	FileMax          string `json:"file_max"` // fs.file-max
	NrOpen           string `json:"nr_open"`  // fs.nr_open: the ceiling for RLIMIT_NOFILE
	TCPMem           string `json:"tcp_mem"`  // net.ipv4.tcp_mem, pages: low, pressure, high
	ConntrackMax     string `json:"nf_conntrack_max,omitempty"`
	PageSize         int    `json:"page_size"`
	GoVersion        string `json:"go_version"`
}

// String is the one-line description used in reports.
func (m Machine) String() string {
	return fmt.Sprintf("%s, %d cores, %.1f GiB RAM, RLIMIT_NOFILE %d, somaxconn %d, %s",
		m.Kernel, m.Cores, float64(m.MemTotalBytes)/(1<<30), m.RlimitNofile, m.Somaxconn, m.GoVersion)
}

// readMachine describes this host. Missing /proc entries leave fields empty
// rather than fail: the description is context, not a measurement.
func readMachine() Machine {
	m := Machine{
		Cores:     runtime.NumCPU(),
		PageSize:  os.Getpagesize(),
		GoVersion: runtime.Version(),
	}
	m.Kernel, m.Hostname = uname()
	m.RlimitNofile = nofileLimit()
	if mi, err := readMeminfo(); err == nil {
		m.MemTotalBytes = mi["MemTotal"]
	}
	m.Somaxconn = readSomaxconn()
	m.TCPSyncookies = readTrimmed("/proc/sys/net/ipv4/tcp_syncookies")
	m.TCPMaxSynBklog = readTrimmed("/proc/sys/net/ipv4/tcp_max_syn_backlog")
	m.PortRange = strings.Join(strings.Fields(readTrimmed("/proc/sys/net/ipv4/ip_local_port_range")), "-")
	m.RlimitNofileHard = procNofile(os.Getpid())[1]
	m.FileMax = readTrimmed("/proc/sys/fs/file-max")
	m.NrOpen = readTrimmed("/proc/sys/fs/nr_open")
	m.TCPMem = strings.Join(strings.Fields(readTrimmed("/proc/sys/net/ipv4/tcp_mem")), " ")
	m.ConntrackMax = readTrimmed("/proc/sys/net/netfilter/nf_conntrack_max")
	return m
}

func readTrimmed(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// readSomaxconn returns the kernel's cap on listen backlogs; listen(2)
// silently clamps larger values to it, so it is the backlog to ask for.
func readSomaxconn() int {
	n, err := strconv.Atoi(readTrimmed("/proc/sys/net/core/somaxconn"))
	if err != nil || n <= 0 {
		return 4096 // the kernel's default since 5.4
	}
	return n
}

// readMeminfo returns /proc/meminfo in bytes, keyed by field name.
func readMeminfo() (map[string]int64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return nil, fmt.Errorf("bench: read meminfo: %w", err)
	}
	m := map[string]int64{}
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			n <<= 10
		}
		m[name] = n
	}
	return m, nil
}

// readVmRSS returns this process's resident set size in bytes.
func readVmRSS() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("bench: read own status: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			fs := strings.Fields(rest)
			if len(fs) == 0 {
				break
			}
			kb, err := strconv.ParseInt(fs[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: parse VmRSS %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("bench: no VmRSS in /proc/self/status")
}

// SlabCache is one line of /proc/slabinfo.
type SlabCache struct {
	ActiveObjs int64 `json:"active_objs"`
	ObjSize    int64 `json:"obj_size"`
	Bytes      int64 `json:"bytes"` // ActiveObjs * ObjSize
}

// slabCaches are the caches a TCP socket held by a process draws from: the
// socket itself, its inode, the dentry and struct file behind its
// descriptor, and the epoll entry of the server that watches it.
var slabCaches = []string{"TCP", "sock_inode_cache", "dentry", "filp", "eventpoll_epi", "eventpoll_pwq"}

// readSlabinfo returns the slabCaches found in /proc/slabinfo (root only on
// most kernels); absent caches are left out.
func readSlabinfo() (map[string]SlabCache, error) {
	b, err := os.ReadFile("/proc/slabinfo")
	if err != nil {
		return nil, fmt.Errorf("bench: read slabinfo: %w", err)
	}
	want := map[string]bool{}
	for _, n := range slabCaches {
		want[n] = true
	}
	out := map[string]SlabCache{}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) < 4 || !want[f[0]] {
			continue
		}
		active, err1 := strconv.ParseInt(f[1], 10, 64)
		size, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		out[f[0]] = SlabCache{ActiveObjs: active, ObjSize: size, Bytes: active * size}
	}
	return out, nil
}

// readSockstatTCP returns the TCP line of /proc/net/sockstat: inuse, orphan,
// tw, alloc and mem (mem in pages).
func readSockstatTCP() (map[string]int64, error) {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return nil, fmt.Errorf("bench: read sockstat: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "TCP:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		m := map[string]int64{}
		for i := 0; i+1 < len(f); i += 2 {
			if n, err := strconv.ParseInt(f[i+1], 10, 64); err == nil {
				m[f[i]] = n
			}
		}
		return m, nil
	}
	return nil, errors.New("bench: no TCP line in /proc/net/sockstat")
}

// readNetstat returns the named counters of group (such as "TcpExt") from
// /proc/net/netstat, whose groups come as a line of names followed by a
// line of values. Counters this kernel does not have are left out.
func readNetstat(group string, names ...string) (map[string]uint64, error) {
	b, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		return nil, fmt.Errorf("bench: read netstat: %w", err)
	}
	lines := bytes.Split(b, []byte("\n"))
	prefix := []byte(group + ":")
	for i := 0; i+1 < len(lines); i++ {
		if !bytes.HasPrefix(lines[i], prefix) || !bytes.HasPrefix(lines[i+1], prefix) {
			continue
		}
		keys := strings.Fields(string(lines[i][len(prefix):]))
		vals := strings.Fields(string(lines[i+1][len(prefix):]))
		out := map[string]uint64{}
		for _, want := range names {
			for j, k := range keys {
				if k == want && j < len(vals) {
					v, err := strconv.ParseUint(vals[j], 10, 64)
					if err != nil {
						return nil, fmt.Errorf("bench: netstat %s %s=%q: %w", group, k, vals[j], err)
					}
					out[k] = v
				}
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("bench: netstat has no %s group", group)
}

// Kernel is a snapshot of the kernel's memory that sockets draw on.
type Kernel struct {
	SlabBytes     int64                `json:"slab_bytes"` // SReclaimable + SUnreclaim
	SReclaimable  int64                `json:"sreclaimable_bytes"`
	SUnreclaim    int64                `json:"sunreclaim_bytes"`
	TCPMemPages   int64                `json:"tcp_mem_pages"` // sockstat TCP mem: buffer memory charged to TCP
	TCPMemBytes   int64                `json:"tcp_mem_bytes"`
	TCPInuse      int64                `json:"tcp_inuse"`
	TCPTimeWait   int64                `json:"tcp_time_wait"`
	Caches        map[string]SlabCache `json:"slab_caches,omitempty"`
	SlabinfoError string               `json:"slabinfo_error,omitempty"`
}

// Total is the kernel memory that counts towards sockets: all slab plus
// TCP's buffer pages.
func (k Kernel) Total() int64 { return k.SlabBytes + k.TCPMemBytes }

// Sockets is the kernel memory that idle sockets hold: the slab caches a
// socket draws from (slabCaches, active objects × object size); Total when
// /proc/slabinfo could not be read. TCP's buffer pages are left out: an
// idle socket holds next to none, and other processes' traffic moves them
// by megabytes. On a shared host it moves much less than Total with what
// else runs there (a compile grows slab by megabytes of inodes).
func (k Kernel) Sockets() int64 {
	if len(k.Caches) == 0 {
		return k.Total()
	}
	var b int64
	for _, c := range k.Caches {
		b += c.Bytes
	}
	return b
}

func readKernel() (Kernel, error) {
	var k Kernel
	mi, err := readMeminfo()
	if err != nil {
		return k, err
	}
	k.SReclaimable, k.SUnreclaim = mi["SReclaimable"], mi["SUnreclaim"]
	k.SlabBytes = k.SReclaimable + k.SUnreclaim
	ss, err := readSockstatTCP()
	if err != nil {
		return k, err
	}
	k.TCPMemPages = ss["mem"]
	k.TCPMemBytes = ss["mem"] * int64(os.Getpagesize())
	k.TCPInuse, k.TCPTimeWait = ss["inuse"], ss["tw"]
	if c, err := readSlabinfo(); err == nil {
		k.Caches = c
	} else {
		k.SlabinfoError = err.Error()
	}
	return k, nil
}

// cpuTicks is the first line of /proc/stat: the whole host's CPU time, in
// USER_HZ ticks, by kind.
type cpuTicks struct {
	user, system, softirq, idle, total uint64
}

func readCPUTicks() (cpuTicks, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTicks{}, fmt.Errorf("bench: read /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return cpuTicks{}, fmt.Errorf("bench: /proc/stat starts %q, want the cpu line", line)
	}
	var v [10]uint64
	for i := 1; i < len(f) && i <= len(v); i++ {
		v[i-1], _ = strconv.ParseUint(f[i], 10, 64)
	}
	// user nice system idle iowait irq softirq steal guest guest_nice;
	// guest time is already inside user.
	t := cpuTicks{user: v[0] + v[1], system: v[2] + v[5], softirq: v[6], idle: v[3] + v[4]}
	t.total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7]
	return t, nil
}

// userHZ is the unit of /proc/stat: 100 ticks a second on every Linux
// architecture Go supports.
const userHZ = 100

// HostCPU is how the host's CPUs spent an interval, as fractions of all of
// them (1 = every core, all the time).
type HostCPU struct {
	// BusySeconds is the CPU time all cores spent not idle, in seconds
	// (USER_HZ ticks of 10 ms: coarse for short intervals).
	BusySeconds float64 `json:"busy_seconds"`
	User        float64 `json:"user"`
	System      float64 `json:"system"`
	Softirq     float64 `json:"softirq"`
	Idle        float64 `json:"idle"`
}

func hostCPU(before, after cpuTicks) HostCPU {
	d := float64(after.total - before.total)
	if d <= 0 {
		return HostCPU{}
	}
	return HostCPU{
		BusySeconds: float64(d-float64(after.idle-before.idle)) / userHZ,
		User:        float64(after.user-before.user) / d,
		System:      float64(after.system-before.system) / d,
		Softirq:     float64(after.softirq-before.softirq) / d,
		Idle:        float64(after.idle-before.idle) / d,
	}
}

// readRunqWait returns how long, in total, this process's threads have
// waited on a run queue (runnable but not running): a server starved of CPU
// shows it. It sums /proc/self/task/*/schedstat; threads that have exited
// are not counted.
func readRunqWait() (time.Duration, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return 0, fmt.Errorf("bench: list own threads: %w", err)
	}
	var total int64
	for _, t := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + t.Name() + "/schedstat")
		if err != nil {
			continue // the thread exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err == nil {
			total += n
		}
	}
	return time.Duration(total), nil
}

// quitInto quits the child (see quit), recording its error in *err unless
// *err already holds one: for a deferred call.
func (c *child) quitInto(err *error) {
	if qerr := c.quit(); qerr != nil && *err == nil {
		*err = qerr
	}
}

// closeFds closes each open descriptor of fds (-1 is none) with a RST.
func closeFds(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			closeReset(fd)
		}
	}
}
