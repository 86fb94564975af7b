package bench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pushrelay/pushrelay/kernel-tuning/doctor"
)

func TestNameWallFromRecordedEvidence(t *testing.T) {
	cases := []struct {
		file     string
		id       string
		evidence string // a phrase the evidence must carry
	}{
		{"file-limit.json", WallNofile, "closed 160 connections over --max-conns 19840"},
		{"worker-emfile.json", WallNofile, "EMFILE 64 times"},
		{"ephemeral-ports.json", WallPorts, "EADDRNOTAVAIL 11769 times"},
		{"listen-backlog.json", WallListenBacklog, "rose by 1098"},
		{"tcp-memory.json", WallTCPMem, "TCPMemoryPressures rose by 38"},
	}
	for _, tc := range cases {
		b, err := os.ReadFile(filepath.Join("testdata", "walls", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		var ev WallEvidence
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		w := NameWall(ev)
		if w.ID != tc.id || w.At != ev.Established {
			t.Errorf("%s: wall %q at %d, want %q at %d", tc.file, w.ID, w.At, tc.id, ev.Established)
		}
		if !strings.Contains(strings.Join(w.Evidence, " "), tc.evidence) {
			t.Errorf("%s: evidence %q lacks %q", tc.file, w.Evidence, tc.evidence)
		}
		if w.Name == "" {
			t.Errorf("%s: no name", tc.file)
		}
	}
	// Reaching the target is not a wall.
	if w := NameWall(WallEvidence{Target: 10, Established: 10}); w.ID != WallNone {
		t.Errorf("a clean step named %q", w.ID)
	}
	// Something unexplained is said to be so, with the failures.
	if w := NameWall(WallEvidence{Target: 10, Established: 7, Failures: map[string]int64{"ECONNRESET": 3}}); w.ID != WallUnknown || !strings.Contains(w.Evidence[0], "ECONNRESET 3") {
		t.Errorf("unexplained failures: %+v", w)
	}
}

func TestWallFixComesFromTheDoctor(t *testing.T) {
	h, err := doctor.Read(filepath.Join("..", "..", "kernel-tuning", "doctor", "testdata", "container"))
	if err != nil {
		t.Fatal(err)
	}
	rep := doctor.Analyze(h, doctor.Options{Target: 100000})
	w := Wall{ID: WallNofile}
	w.AddFix(rep)
	if w.Around == "" || !strings.Contains(w.Around, "relay processes") {
		t.Fatalf("file-limit fix on a container that cannot raise it: lines %q, around %q", w.Fix, w.Around)
	}
	b := Wall{ID: WallListenBacklog}
	b.AddFix(rep)
	if len(b.Fix) == 0 || !strings.Contains(strings.Join(b.Fix, " "), "somaxconn") {
		t.Fatalf("listen backlog fix %q", b.Fix)
	}
}

func TestReadHostCountersOnThisHost(t *testing.T) {
	c := ReadHostCounters()
	if c.FilesMax <= 0 || c.TCPMemPressure <= 0 || c.TCPInUse < 0 {
		t.Fatalf("live counters look wrong: %+v", c)
	}
}
