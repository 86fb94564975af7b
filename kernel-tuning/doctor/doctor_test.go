package doctor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/relay"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// snapReserve is the descriptors a default relay keeps back from
// RLIMIT_NOFILE on the recorded hosts, whose Cpus_allowed_list is 0-1:
// two event loops.
var snapReserve = int64(relay.FileReserveFor(2, 0))

// The snapshots in testdata were recorded on a 24 GiB, 2-core Linux 6.18
// machine and edited: "default" is that host's sysctls with a systemd
// host's usual open-file limits (soft 1024, hard 524288) and root's full
// capabilities; "tuned" has 99-pushrelay.conf applied and LimitNOFILE=1048576,
// read as the unprivileged pushrelay user; "container" has a hard limit of
// 20000 that nothing inside may raise (no CAP_SYS_RESOURCE, as on the
// recording machine), a read-only /proc/sys and a 2 GiB cgroup memory limit.
func snapshot(t *testing.T, name string) *Host {
	t.Helper()
	h, err := Read(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Missing) > 0 {
		t.Fatalf("snapshot %s: missing %v", name, h.Missing)
	}
	return h
}

func TestReadSnapshots(t *testing.T) {
	tests := []struct {
		name                     string
		soft, hard               int64
		uid                      int64
		raiseNofile, writeSysctl bool
		privileged               bool
		cgroupLimit              int64
		cgroupAvailable          int64
		conntrackMax             int64
		tcpMemPressure           int64
		fileMax, fileAllocated   int64
		listenOverflows          int64
	}{
		{"default", 1024, 524288, 0, true, true, true, Unknown, Unknown, 262144, 383868, 2466177, 1184, 0},
		{"tuned", 1048576, 1048576, 998, true, true, false, Unknown, Unknown, 1310720, 1310720, 4194304, 1184, 0},
		// 2 GiB limit, 100 MiB used of which 50 MiB is reclaimable page cache.
		{"container", 20000, 20000, 0, false, false, false, 2 << 30, 2<<30 - 50<<20, 262144, 383868, 2466177, 1184, 1840},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := snapshot(t, tt.name)
			check := func(what string, got, want any) {
				t.Helper()
				if got != want {
					t.Errorf("%s: got %v, want %v", what, got, want)
				}
			}
			check("nofile soft", h.NofileSoft, tt.soft)
			check("nofile hard", h.NofileHard, tt.hard)
			check("uid", h.UID, tt.uid)
			check("CanRaiseNofile", h.CanRaiseNofile(), tt.raiseNofile)
			check("CanWriteSysctls", h.CanWriteSysctls(), tt.writeSysctl)
			check("Privileged", h.Privileged(), tt.privileged)
			check("cgroup limit", h.CgroupLimit, tt.cgroupLimit)
			check("cgroup available", h.CgroupAvailable, tt.cgroupAvailable)
			check("conntrack max", h.ConntrackMax, tt.conntrackMax)
			check("tcp_mem pressure", h.TCPMem[1], tt.tcpMemPressure)
			check("file-max", h.FileMax, tt.fileMax)
			check("files allocated", h.FileAllocated, tt.fileAllocated)
			check("ListenOverflows", h.ListenOverflows, tt.listenOverflows)
			check("page size", h.PageSize, int64(4096))
			check("port range", [2]int64{h.PortLow, h.PortHigh}, map[string][2]int64{
				"default": {32768, 60999}, "tuned": {10000, 65535}, "container": {32768, 60999}}[tt.name])
		})
	}
}

func TestReadMissingFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := Read(dir); err == nil {
		t.Fatal("Read of a directory without proc: got no error, want one")
	}
	// A root with only proc/sys/fs/file-max: everything else is Unknown
	// and listed, and Analyze still answers from what there is.
	if err := os.MkdirAll(filepath.Join(dir, "proc", "sys", "fs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "proc", "sys", "fs", "file-max"), []byte("100\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if h.FileMax != 100 || h.NofileHard != Unknown || h.ConntrackLoaded {
		t.Errorf("got file-max %d, nofile hard %d, conntrack loaded %v; want 100, Unknown, false", h.FileMax, h.NofileHard, h.ConntrackLoaded)
	}
	if !slices.Contains(h.Missing, "proc/sys/fs/nr_open") || slices.Contains(h.Missing, "proc/sys/fs/file-max") {
		t.Errorf("missing: got %v, want nr_open listed and file-max not", h.Missing)
	}
	r := Analyze(h, Options{Target: 10})
	if len(r.Limits) != 0 || !r.FitsNow {
		t.Errorf("with file-nr unreadable: got %d limits, fits %v; want none, fits", len(r.Limits), r.FitsNow)
	}
}

func TestAnalyzeSnapshots(t *testing.T) {
	tests := []struct {
		snap    string
		target  int64
		loadgen bool
		// want
		binding     string // first limit to bind, "" when the target fits
		bindingAt   int64
		lowest      string // the lowest limit, binding or not
		lowestAt    int64
		steps       []string
		fitsAfter   bool
		processes   int64
		nofileLines []string // substrings of the nofile step's lines, if any
	}{
		{
			snap: "default", target: 1_000_000,
			binding: LimitConntrack, bindingAt: 262_144, lowest: LimitConntrack, lowestAt: 262_144,
			steps:     []string{LimitConntrack, LimitTCPMem, LimitNofile},
			fitsAfter: true, processes: 1,
			nofileLines: []string{"LimitNOFILE=1048576", "ulimit -n 1048576"},
		},
		{
			snap: "default", target: 15_000,
			lowest: LimitConntrack, lowestAt: 262_144,
			steps: []string{}, fitsAfter: true, processes: 1,
		},
		{
			// Past fs.nr_open: the nofile step raises it first, and the
			// nr_open step points back.
			snap: "default", target: 2_000_000,
			binding: LimitConntrack, bindingAt: 262_144, lowest: LimitConntrack, lowestAt: 262_144,
			steps:     []string{LimitConntrack, LimitTCPMem, LimitNofile, LimitNrOpen},
			fitsAfter: true, processes: 1,
			nofileLines: []string{"sysctl -w fs.nr_open=2031616", "LimitNOFILE=2031616"},
		},
		{
			// Two sockets, files and tcp_mem pages per client; ports bind.
			snap: "default", target: 1_000_000, loadgen: true,
			binding: LimitPorts, bindingAt: 60999 - 32768 + 1, lowest: LimitPorts, lowestAt: 28_232,
			steps:     []string{LimitPorts, LimitTCPMem, LimitConntrack, LimitNofile},
			fitsAfter: true, processes: 1,
		},
		{
			snap: "tuned", target: 1_000_000,
			lowest: LimitNofile, lowestAt: 1_048_576 - snapReserve,
			steps: []string{}, fitsAfter: true, processes: 1,
		},
		{
			snap: "tuned", target: 2_000_000,
			binding: LimitNofile, bindingAt: 1<<20 - snapReserve, lowest: LimitNofile, lowestAt: 1<<20 - snapReserve,
			steps:     []string{LimitNofile, LimitTCPMem, LimitConntrack},
			fitsAfter: true, processes: 1,
			nofileLines: []string{"LimitNOFILE=2031616"},
		},
		{
			// The hard limit cannot be raised: several processes; the
			// rest fits.
			snap: "container", target: 100_000,
			binding: LimitNofile, bindingAt: 20_000 - snapReserve, lowest: LimitNofile, lowestAt: 20_000 - snapReserve,
			steps:     []string{LimitNofile},
			fitsAfter: true, processes: 6,
		},
		{
			// Read-only sysctls and a 2 GiB cgroup: no fit on this host.
			snap: "container", target: 1_000_000,
			binding: LimitNofile, bindingAt: 20_000 - snapReserve, lowest: LimitNofile, lowestAt: 20_000 - snapReserve,
			steps:     []string{LimitNofile, LimitConntrack, LimitMemory, LimitTCPMem},
			fitsAfter: false, processes: 51,
		},
		{
			snap: "container", target: 15_000,
			lowest: LimitNofile, lowestAt: 20_000 - snapReserve,
			steps: []string{}, fitsAfter: true, processes: 1,
		},
	}
	for _, tt := range tests {
		name := tt.snap + "/" + count(tt.target)
		if tt.loadgen {
			name += "/loadgen"
		}
		t.Run(name, func(t *testing.T) {
			r := Analyze(snapshot(t, tt.snap), Options{Target: tt.target, Loadgen: tt.loadgen})
			if r.Binding != tt.binding || r.BindingAt != tt.bindingAt {
				t.Errorf("binding: got %q at %d, want %q at %d", r.Binding, r.BindingAt, tt.binding, tt.bindingAt)
			}
			if got := r.Limits[0]; got.ID != tt.lowest || got.Capacity != tt.lowestAt {
				t.Errorf("lowest limit: got %q at %d, want %q at %d", got.ID, got.Capacity, tt.lowest, tt.lowestAt)
			}
			var steps []string
			for _, s := range r.Steps {
				steps = append(steps, s.Limit)
			}
			if !slices.Equal(steps, tt.steps) && !(len(steps) == 0 && len(tt.steps) == 0) {
				t.Errorf("steps: got %v, want %v", steps, tt.steps)
			}
			if wantNow := tt.binding == ""; r.FitsNow != wantNow {
				t.Errorf("fits now: got %v, want %v", r.FitsNow, wantNow)
			}
			if r.FitsAfterFixes != tt.fitsAfter || r.Processes != tt.processes {
				t.Errorf("after fixes: got fits %v as %d processes, want fits %v as %d", r.FitsAfterFixes, r.Processes, tt.fitsAfter, tt.processes)
			}
			if !slices.IsSortedFunc(r.Limits, func(a, b Limit) int { return int(a.Capacity - b.Capacity) }) {
				t.Errorf("limits not sorted by capacity: %v", r.Limits)
			}
			for _, l := range r.Limits {
				if l.Binds != (l.Capacity < tt.target) || (l.Fix != nil) != l.Binds {
					t.Errorf("%s: capacity %d, binds %v, fix %v: inconsistent for target %d", l.ID, l.Capacity, l.Binds, l.Fix != nil, tt.target)
				}
			}
			for _, s := range r.Steps {
				if s.Raisable && s.CapacityAfter < tt.target && s.Limit != LimitPorts {
					t.Errorf("step %s: raisable, but capacity after %d is below the target %d", s.Limit, s.CapacityAfter, tt.target)
				}
				if !s.Raisable && (s.Why == "" || s.Around == "") {
					t.Errorf("step %s: cannot be raised, but says neither why (%q) nor the way around (%q)", s.Limit, s.Why, s.Around)
				}
				if s.Limit != LimitNofile {
					continue
				}
				joined := strings.Join(s.Lines, "\n")
				for _, want := range tt.nofileLines {
					if !strings.Contains(joined, want) {
						t.Errorf("nofile step lines %q: want %q among them", joined, want)
					}
				}
			}
		})
	}
}

// TestAnalyzeArithmetic checks capacities against the formulas in the
// docs, from the snapshots' raw numbers.
func TestAnalyzeArithmetic(t *testing.T) {
	m := DefaultModel
	tests := []struct {
		snap    string
		loadgen bool
		id      string
		want    func(h *Host) int64
	}{
		{"default", false, LimitNofile, func(h *Host) int64 { return h.NofileHard - 1 - snapReserve }}, // Go raises soft 1024 to hard-1
		{"tuned", false, LimitNofile, func(h *Host) int64 { return h.NofileHard - snapReserve }},
		{"default", false, LimitNrOpen, func(h *Host) int64 { return h.NrOpen - snapReserve }},
		{"default", false, LimitFileMax, func(h *Host) int64 { return h.FileMax - h.FileAllocated }},
		{"default", true, LimitFileMax, func(h *Host) int64 { return (h.FileMax - h.FileAllocated) / 2 }},
		{"default", false, LimitEpoll, func(h *Host) int64 { return h.EpollWatches }},
		{"default", false, LimitTCPMem, func(h *Host) int64 { return h.TCPMem[1] - h.TCPMemPages }},
		{"default", true, LimitTCPMem, func(h *Host) int64 { return (h.TCPMem[1] - h.TCPMemPages) / 2 }},
		{"default", false, LimitConntrack, func(h *Host) int64 { return h.ConntrackMax - h.ConntrackCount }},
		{"default", false, LimitMemory, func(h *Host) int64 {
			return h.MemAvailable / (m.KernelPerConn + m.RelayPerConn + m.InFlightPerConn)
		}},
		{"default", true, LimitMemory, func(h *Host) int64 {
			return h.MemAvailable / (2*m.KernelPerConn + m.RelayPerConn + 2*m.InFlightPerConn)
		}},
		{"container", false, LimitMemory, func(h *Host) int64 {
			return h.CgroupAvailable / (m.KernelPerConn + m.RelayPerConn + m.InFlightPerConn)
		}},
		{"tuned", true, LimitPorts, func(h *Host) int64 { return 65535 - 10000 + 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.snap+"/"+tt.id, func(t *testing.T) {
			h := snapshot(t, tt.snap)
			r := Analyze(h, Options{Target: 1, Loadgen: tt.loadgen})
			l := r.limit(tt.id)
			if l.ID == "" {
				t.Fatalf("no limit %q in %v", tt.id, r.Limits)
			}
			if want := tt.want(h); l.Capacity != want {
				t.Errorf("capacity: got %d, want %d", l.Capacity, want)
			}
		})
	}
}

func TestLoadgenPorts(t *testing.T) {
	r := Analyze(snapshot(t, "default"), Options{Target: 1_000_000, Loadgen: true})
	if r.Ports == nil {
		t.Fatal("no port arithmetic with --loadgen")
	}
	got := *r.Ports
	want := Ports{Range: "32768-60999", PerSource: 28232, Sources: 36, RangeAfter: "10000-65535", SourcesAfter: 19}
	if got != want {
		t.Errorf("ports: got %+v, want %+v", got, want)
	}
	if r := Analyze(snapshot(t, "default"), Options{Target: 1_000_000}); r.Ports != nil {
		t.Errorf("ports without --loadgen: got %+v, want none", r.Ports)
	}
}

func TestGoSoftLimit(t *testing.T) {
	for _, tt := range []struct{ soft, hard, want int64 }{
		{1024, 524288, 524287}, // raised, to one below the hard limit
		{524287, 524288, 524287},
		{20000, 20000, 20000}, // left alone
		{Unknown, 4096, 4095},
	} {
		if got := goSoftLimit(tt.soft, tt.hard); got != tt.want {
			t.Errorf("goSoftLimit(%d, %d): got %d, want %d", tt.soft, tt.hard, got, tt.want)
		}
	}
}

func TestRecommendations(t *testing.T) {
	for _, tt := range []struct {
		n, nofile, backlog int64
	}{
		{15_000, 1 << 20, 4096},
		{1_000_000, 1 << 20, 16384},
		{1<<20 - snapReserve, 1 << 20, 16384},
		{1_048_449, 1<<20 + 1<<16, 16384},
		{2_000_000, 2031616, 32768},
		{100_000_000, 100_007_936, 65535},
	} {
		if got := (&analysis{n: tt.n, reserve: snapReserve}).recommendNofile(); got != tt.nofile {
			t.Errorf("recommendNofile(%d): got %d, want %d", tt.n, got, tt.nofile)
		}
		if got := recommendBacklog(tt.n); got != tt.backlog {
			t.Errorf("recommendBacklog(%d): got %d, want %d", tt.n, got, tt.backlog)
		}
	}
	got := recommendTCPMem([3]int64{287901, 383868, 575802}, 1_000_002)
	if want := [3]int64{983040, 1310720, 1966080}; got != want {
		t.Errorf("recommendTCPMem: got %v, want %v", got, want)
	}
	// Never below the running values.
	got = recommendTCPMem([3]int64{4000000, 5000000, 6000000}, 10)
	if want := [3]int64{4000000, 5000000, 6000000}; got != want {
		t.Errorf("recommendTCPMem above the need: got %v, want %v", got, want)
	}
}

// TestTunedSnapshotIsTheConf keeps the tuned snapshot and 99-pushrelay.conf
// in step: the snapshot is what the file does to a host.
func TestTunedSnapshotIsTheConf(t *testing.T) {
	conf := readConf(t, filepath.Join("..", "99-pushrelay.conf"))
	if len(conf) < 15 {
		t.Fatalf("99-pushrelay.conf: got %d keys, want every setting the issue lists", len(conf))
	}
	for key, want := range conf {
		b, err := os.ReadFile(filepath.Join("testdata", "tuned", "proc", "sys", filepath.FromSlash(strings.ReplaceAll(key, ".", "/"))))
		if err != nil {
			t.Errorf("%s: %v", key, err)
			continue
		}
		if got := strings.Join(strings.Fields(string(b)), " "); got != want {
			t.Errorf("%s: tuned snapshot has %q, the conf %q", key, got, want)
		}
	}
	// And the doctor finds the tuned host holds the million the file is
	// sized for.
	if r := Analyze(snapshot(t, "tuned"), Options{Target: 1_000_000}); !r.FitsNow || len(r.Warnings) != 0 {
		t.Errorf("tuned host, 1,000,000: got fits %v with warnings %v, want a fit and no warnings", r.FitsNow, r.Warnings)
	}
}

// readConf reads a sysctl.d file into key -> value, whitespace squeezed.
func readConf(t *testing.T, name string) map[string]string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	conf := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not key = value: %q", name, line)
		}
		conf[strings.TrimSpace(k)] = strings.Join(strings.Fields(v), " ")
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return conf
}

func TestWriteTextGolden(t *testing.T) {
	for _, tt := range []struct {
		snap   string
		target int64
	}{
		{"default", 1_000_000},
		{"container", 1_000_000},
		{"tuned", 1_000_000},
	} {
		t.Run(tt.snap, func(t *testing.T) {
			r := Analyze(snapshot(t, tt.snap), Options{Target: tt.target})
			// The snapshot's path is in the header; keep the golden file
			// independent of where the test runs from.
			r.Host.Root = "testdata/" + tt.snap
			var buf bytes.Buffer
			if err := r.WriteText(&buf); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tt.snap+"-"+strings.ReplaceAll(count(tt.target), ",", "")+".golden")
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if got := buf.String(); got != string(want) {
				t.Errorf("text report differs from %s (go test -update rewrites it):\ngot:\n%s", golden, got)
			}
		})
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := Analyze(snapshot(t, "container"), Options{Target: 1_000_000, Loadgen: true})
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Binding != r.Binding || back.BindingAt != r.BindingAt || back.FitsAfterFixes != r.FitsAfterFixes ||
		len(back.Steps) != len(r.Steps) || back.Ports == nil || back.Host.NofileHard != 20000 {
		t.Errorf("JSON round trip: got %+v, want %+v", back, r)
	}
}

// TestLiveHost runs the doctor on the machine the tests run on. The
// numbers are the machine's own, so it checks only that the report holds
// together.
func TestLiveHost(t *testing.T) {
	h, err := Read("/")
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if h.NofileHard == Unknown || h.FileMax == Unknown {
		t.Skipf("not a Linux host with /proc/sys: missing %v", h.Missing)
	}
	if len(h.Missing) > 0 {
		t.Logf("not read on this host: %v", h.Missing)
	}
	for _, target := range []int64{1000, DefaultTarget} {
		r := Analyze(h, Options{Target: target})
		fits := true
		for _, l := range r.Limits {
			if l.Capacity < target {
				fits = false
			}
		}
		if r.FitsNow != fits {
			t.Errorf("target %d: fits now %v, but the capacities %v say %v", target, r.FitsNow, r.Limits, fits)
		}
		if !r.FitsNow && (r.Binding != r.Limits[0].ID || len(r.Steps) == 0) {
			t.Errorf("target %d: binding %q with %d steps, want the lowest limit %q and a step each", target, r.Binding, len(r.Steps), r.Limits[0].ID)
		}
		if r.Limits[0].Capacity > target && r.Binding != "" {
			t.Errorf("target %d: binding %q while every limit fits", target, r.Binding)
		}
		var buf bytes.Buffer
		if err := r.WriteText(&buf); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), "Verdict: ") || strings.Contains(buf.String(), "(read from the snapshot") {
			t.Errorf("target %d: text report without a verdict, or calling the live host a snapshot:\n%s", target, buf.String())
		}
		t.Logf("target %d: fits %v, lowest %s at %d", target, r.FitsNow, r.Limits[0].ID, r.Limits[0].Capacity)
	}
	// getrlimit and /proc/self/limits describe the same process.
	soft, hard := h.NofileSoft, h.NofileHard
	snap := &Host{Root: "not the live root"}
	snap.readLimits(&reader{root: "/"})
	if snap.NofileSoft != soft || snap.NofileHard != hard {
		t.Errorf("RLIMIT_NOFILE: getrlimit says %d/%d, /proc/self/limits %d/%d", soft, hard, snap.NofileSoft, snap.NofileHard)
	}
}

// TestSlowClientsSendBuffer checks the --sndbuf the doctor recommends for
// clients that stop reading: their send buffers, doubled by the kernel,
// must fit under tcp_mem's pressure value (raised by the plan when it
// raises it) beside a small broadcast to the whole target. Autotuning lets
// each grow to tcp_wmem's maximum, 4 MiB (1,024 pages) in the snapshots.
func TestSlowClientsSendBuffer(t *testing.T) {
	tests := []struct {
		snap    string
		target  int64
		loadgen bool
		stalled int64 // 0: the default
		// want
		wantStalled int64
		pressure    int64
		perClient   int64 // pages
		sndbuf      int64 // 0: autotuning fits
		tcpMem      bool  // even the smallest send buffer needs more tcp_mem
	}{
		// tcp_mem's step raises the pressure value to 1,310,720; the
		// broadcast takes 1,000,000 (+2 in use), 10,000 stalled clients
		// share the rest: 31 pages, so 31 × 4096 / 2 bytes of SO_SNDBUF.
		{snap: "default", target: 1_000_000, wantStalled: 10_000, pressure: 1_310_720, perClient: 31, sndbuf: 62 << 10},
		// The case: 1,000 stalled clients on a host at its default
		// tcp_mem would pass the pressure value with autotuned buffers.
		{snap: "default", target: 15_000, wantStalled: 1000, pressure: 383_868, perClient: 368, sndbuf: 736 << 10},
		{snap: "default", target: 2_000_000, wantStalled: 20_000, pressure: 2_555_904, perClient: 27, sndbuf: 54 << 10},
		// With the load generator, two pages per client in flight.
		{snap: "default", target: 1_000_000, loadgen: true, wantStalled: 10_000, pressure: 2_555_904, perClient: 55, sndbuf: 110 << 10},
		{snap: "tuned", target: 1_000_000, wantStalled: 10_000, pressure: 1_310_720, perClient: 31, sndbuf: 62 << 10},
		// Few stalled clients: autotuning fits.
		{snap: "default", target: 15_000, stalled: 100, wantStalled: 100, pressure: 383_868, perClient: 3688},
		// A read-only tcp_mem below the broadcast alone: the smallest
		// buffer, and tcp_mem must rise on the host.
		{snap: "container", target: 1_000_000, wantStalled: 10_000, pressure: 383_868, perClient: 0, sndbuf: 4096, tcpMem: true},
		{snap: "container", target: 100_000, wantStalled: 1000, pressure: 383_868, perClient: 283, sndbuf: 566 << 10},
		// A target below a thousand plans for all of it.
		{snap: "default", target: 300, wantStalled: 300, pressure: 383_868, perClient: 1278},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/%s/stalled=%d/loadgen=%v", tt.snap, count(tt.target), tt.stalled, tt.loadgen)
		t.Run(name, func(t *testing.T) {
			r := Analyze(snapshot(t, tt.snap), Options{Target: tt.target, Loadgen: tt.loadgen, Stalled: tt.stalled})
			sc := r.Slow
			if sc == nil {
				t.Fatal("no slow-client arithmetic")
			}
			if sc.Stalled != tt.wantStalled || sc.PressurePages != tt.pressure || sc.PagesPerClient != tt.perClient {
				t.Errorf("got %d stalled, pressure %d, %d pages each; want %d, %d, %d",
					sc.Stalled, sc.PressurePages, sc.PagesPerClient, tt.wantStalled, tt.pressure, tt.perClient)
			}
			if sc.SendBuffer != tt.sndbuf || sc.AutotuneFits != (tt.sndbuf == 0) || (sc.TCPMem != "") != tt.tcpMem {
				t.Errorf("got --sndbuf %d (autotuning fits %v, tcp_mem %q), want %d (tcp_mem needed %v)",
					sc.SendBuffer, sc.AutotuneFits, sc.TCPMem, tt.sndbuf, tt.tcpMem)
			}
			// What the recommendation promises: the stalled clients' doubled
			// buffers fit in the room, unless tcp_mem must rise anyway.
			if sc.SendBuffer > 0 && !tt.tcpMem {
				if need := sc.Stalled * ceilDiv(2*sc.SendBuffer, 4096); need > sc.RoomPages {
					t.Errorf("--sndbuf %d: %d stalled clients charge %d pages, over the %d left", sc.SendBuffer, sc.Stalled, need, sc.RoomPages)
				}
			}
			var buf bytes.Buffer
			if err := r.WriteText(&buf); err != nil {
				t.Fatal(err)
			}
			text := buf.String()
			if sc.SendBuffer > 0 && !strings.Contains(text, fmt.Sprintf("pushrelay serve --sndbuf %dKiB", sc.SendBuffer>>10)) {
				t.Errorf("text report without the --sndbuf line:\n%s", text)
			}
			if sc.SendBuffer == 0 && strings.Contains(text, "--sndbuf ") {
				t.Errorf("text report recommends --sndbuf where autotuning fits:\n%s", text)
			}
		})
	}
}

// TestNofileCapacityIsTheRelaysDefaultMaxConns: on the live host, the
// doctor's capacity under RLIMIT_NOFILE is the MaxConns a relay started
// here with defaults admits (its descriptor budget: a reserve, and
// descriptors for each event loop), not the limit minus the bare reserve.
func TestNofileCapacityIsTheRelaysDefaultMaxConns(t *testing.T) {
	h, err := Read("/")
	if err != nil {
		t.Skip(err)
	}
	l := Analyze(h, Options{Target: 1}).limit(LimitNofile)
	if l.ID == "" {
		t.Skip("RLIMIT_NOFILE not readable here")
	}
	srv, err := relay.New(relay.Config{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(srv.Config().MaxConns); l.Capacity != want {
		t.Errorf("doctor's RLIMIT_NOFILE capacity: got %d, want the relay's default MaxConns %d", l.Capacity, want)
	}
}

func TestParseCPUList(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want int64
	}{
		{"0", 1}, {"0-1", 2}, {"0-3,8,10-11", 7}, {"5-5", 1},
		{"", Unknown}, {"1-0", Unknown}, {"0-", Unknown}, {"-1", Unknown}, {"a", Unknown}, {"0,,1", Unknown}, {"0-1 ", Unknown},
	} {
		if got := parseCPUList(tt.in); got != tt.want {
			t.Errorf("parseCPUList(%q): got %d, want %d", tt.in, got, tt.want)
		}
	}
}

// FuzzCPUList: any string gives Unknown or a count of at least one, never
// more CPUs than the list could name.
func FuzzCPUList(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		n := parseCPUList(s)
		if n != Unknown && (n < 1 || n > int64(len(s)+1)*(1<<31)) {
			t.Fatalf("parseCPUList(%q) = %d", s, n)
		}
	})
}
