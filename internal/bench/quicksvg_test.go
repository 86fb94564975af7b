package bench

import (
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pushrelay/pushrelay/loadgen"
)

// TestQuickRunWritesABarChart: `make bench` (bench quick) leaves a chart
// of its summary beside the JSON and Markdown: one bar per server and
// figure, labelled with the value, well-formed SVG.
func TestQuickRunWritesABarChart(t *testing.T) {
	step := func(name string, mem float64, ttl time.Duration) *ServerStep {
		return &ServerStep{Server: name, Want: 5000, Held: 5000, RSSPerConn: mem, HeapPerConn: mem / 2, AcceptRate: 20000,
			BroadcastTTL: ttl, Throughput: 100000, Unicast: loadgen.Summary{Count: 1000, P50: 40 * time.Microsecond, P99: 300 * time.Microsecond}}
	}
	res := &CapacityResult{Broadcasts: 20, UnicastRate: 2000, Steps: []CapacityStep{{Conns: 5000,
		Relay: *step(ServerRelay, 3000, 4*time.Millisecond), Baseline: step(ServerBaseline, 21000, 9*time.Millisecond)}}}
	dir := filepath.Join(t.TempDir(), "quick")
	if err := WriteQuick(dir, res, "pushrelay bench quick --conns 5000"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "chart.svg"))
	if err != nil {
		t.Fatalf("bench quick wrote no chart: %v", err)
	}
	rects, texts := 0, []string{}
	dec := xml.NewDecoder(strings.NewReader(string(b)))
	inText := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("chart.svg is not well-formed: %v", err)
		}
		switch x := tok.(type) {
		case xml.StartElement:
			inText = x.Name.Local == "text"
			if x.Name.Local == "rect" {
				rects++
			}
		case xml.CharData:
			if inText {
				texts = append(texts, string(x))
			}
		}
	}
	all := strings.Join(texts, "|")
	// The background, then 7 figures × 2 measured servers.
	if rects != 1+7*2 {
		t.Errorf("%d rects, want the background and 14 bars", rects)
	}
	for _, want := range []string{"5,000 clients each", fmtBytes(3000), fmtBytes(21000), fmtDur(4 * time.Millisecond), "not measured", "floor"} {
		if !strings.Contains(all, want) {
			t.Errorf("chart.svg lacks %q: %s", want, all)
		}
	}
}
