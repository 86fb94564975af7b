package bench

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCapacityRampNamesTheRelaysFileLimit ramps a real relay whose
// --max-conns is 150 in steps of 100 and 200: the first step is measured,
// the second runs into the relay's limit, and the report names it with its
// evidence and the doctor's fix.
func TestCapacityRampNamesTheRelaysFileLimit(t *testing.T) {
	cmd := testRelayCommand(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := RunCapacity(ctx, CapacityOptions{
		Steps: []int{100, 200}, Target: 200, Unicasts: 50, UnicastRate: 500,
		RelayCommand:   append(cmd, "--max-conns", "150"),
		LoadgenCommand: []string{cmd[0], "loadgen"},
		Stderr:         io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 2 {
		t.Fatalf("%d steps measured, want 2: %+v", len(res.Steps), res.Steps)
	}
	s1, s2 := res.Steps[0], res.Steps[1]
	if s1.Established != 100 || s1.Delivered != 100 || s1.Unicast.Count != 50 {
		t.Fatalf("step 1: %d held, broadcast reached %d, %d unicasts timed; want 100, 100, 50", s1.Established, s1.Delivered, s1.Unicast.Count)
	}
	if s1.Broadcast <= 0 || s1.AcceptRate <= 0 || s1.RelayHeap <= 0 {
		t.Fatalf("step 1 figures missing: %+v", s1)
	}
	if s2.Established != 150 {
		t.Fatalf("step 2 held %d, want the relay's 150", s2.Established)
	}
	if res.Wall.ID != WallNofile || res.Wall.At != 150 || !strings.Contains(strings.Join(res.Wall.Evidence, " "), "closed 50 connections over --max-conns 150") {
		t.Fatalf("wall %+v", res.Wall)
	}
	dir := t.TempDir()
	if err := WriteCapacity(dir, res, "pushrelay bench capacity"); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "results.md"))
	svg, _ := os.ReadFile(filepath.Join(dir, "chart.svg"))
	if !strings.Contains(string(md), "Wall: open files per process") || !strings.HasPrefix(string(svg), "<svg") || !strings.Contains(string(svg), "polyline") {
		t.Fatalf("report files:\n%s\n%s", md, svg)
	}
}
