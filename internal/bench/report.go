package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Check is one figure set beside its target. Targets are printed, not
// enforced: a run that misses one still succeeds.
type Check struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Shown  string  `json:"shown"`  // Value as printed
	Target string  `json:"target"` // the goal, as printed
	Met    bool    `json:"met"`
}

func (c Check) verdict() string {
	if c.Met {
		return "met"
	}
	return "**missed**"
}

// DefaultOutDir is where a command's results go unless --out says
// otherwise: bench-results/COMMAND-UTCSTAMP.
func DefaultOutDir(command string, t time.Time) string {
	return filepath.Join("bench-results", command+"-"+t.UTC().Format("20060102T150405Z"))
}

// WriteResults writes v as results.json and markdown as results.md into
// dir, creating it.
func WriteResults(dir string, v any, markdown string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: create %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: write results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(markdown), 0o644); err != nil {
		return fmt.Errorf("bench: write results: %w", err)
	}
	return nil
}

// finite turns NaN and ±Inf (a division by a zero count) into 0 so that
// results always encode as JSON.
func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// perEach divides a delta of counters by n.
func perEach[T ~int64 | ~uint64 | ~int](after, before T, n int) float64 {
	if n <= 0 {
		return 0
	}
	return finite((float64(after) - float64(before)) / float64(n))
}

// fmtBytes prints a per-connection size: bytes below 10 KiB, then KiB.
func fmtBytes(b float64) string {
	switch a := math.Abs(b); {
	case a < 10<<10:
		return fmt.Sprintf("%.0f B", b)
	case a < 10<<20:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	default:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	}
}

// fmtRate prints connections per second with thousands separators.
func fmtRate(r float64) string { return fmtInt(int64(math.Round(r))) + "/s" }

func fmtInt(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// doc is a report being rendered as Markdown, for results.md and the
// terminal alike: a scenario writes its headings and paragraphs, and its
// figures as tables of rows of cells.
type doc struct{ strings.Builder }

// mdTable writes a table: header, then one line a row.
func (w *doc) mdTable(header []string, rows [][]string) {
	w.WriteString("| " + strings.Join(header, " | ") + " |\n|")
	for range header {
		w.WriteString(" --- |")
	}
	w.WriteString("\n")
	for _, r := range rows {
		w.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
}

// table writes a table and the blank line after it.
func (w *doc) table(header []string, rows [][]string) {
	w.mdTable(header, rows)
	w.WriteString("\n")
}

// mdChecks writes the checks' table, even when empty.
func (w *doc) mdChecks(checks []Check) {
	rows := make([][]string, 0, len(checks))
	for _, c := range checks {
		rows = append(rows, []string{c.Name, c.Shown, c.Target, c.verdict()})
	}
	w.mdTable([]string{"figure", "measured", "target", "verdict"}, rows)
}

// checks writes the checks' table and a blank line, nothing if none.
func (w *doc) checks(checks []Check) {
	if len(checks) > 0 {
		w.mdChecks(checks)
		w.WriteString("\n")
	}
}

// notes writes a list item a note.
func (w *doc) notes(notes []string) {
	for _, n := range notes {
		w.WriteString("- " + n + "\n")
	}
}

// ratioCheck is the check of a ÷ b against bound, at least bound if atLeast
// and otherwise at most bound (and above 0); show prints a and b. The
// target's wording comes from the bound, so each is written once.
func ratioCheck(name string, a, b float64, show func(float64) string, atLeast bool, bound float64) Check {
	v := finite(a / b)
	c := Check{Name: name, Value: v, Shown: fmt.Sprintf("%.2f (%s ÷ %s)", v, show(a), show(b))}
	if atLeast {
		c.Target, c.Met = fmt.Sprintf("≥ %g", bound), v >= bound
	} else {
		c.Target, c.Met = fmt.Sprintf("≤ %g", bound), v > 0 && v <= bound
	}
	return c
}
