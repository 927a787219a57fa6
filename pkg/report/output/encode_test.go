package output

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coral-dev/coral/pkg/report"
	"sigs.k8s.io/yaml"
)

func encoderJSON(t testing.TB, v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestEncodeJSONIsTheEncoders: -o json writes a report's results one at a
// time, and what it writes is the json.Encoder's document, byte for byte.
func TestEncodeJSONIsTheEncoders(t *testing.T) {
	start := time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC)
	tricky := []report.Result{
		{Node: "n1", Image: "reg.example/a:1", Status: report.StatusPulled, Digest: "sha256:aa", ExpectedDigest: "sha256:aa", SizeBytes: 3, DurationSeconds: 1.25, Attempts: 2, Pinned: true},
		{Node: "n2", Image: "reg.example/a:1", Status: report.StatusFailed, Message: "line one\nline two\t\"quoted\" <html> & \u2028 ünï \n  \"results\": null"},
		{Node: "n3", Artifact: "model", Source: "s3://b/k", Path: "/var/lib/coral/model.bin", Status: report.StatusDownloaded, DigestMismatch: true},
	}
	interrupted := report.NewReport(report.KindPrefetchReport, "r2", start, start.Add(time.Minute), tricky)
	interrupted.Interrupted = true
	interrupted.LeftBehind = &report.LeftBehind{Workers: 3, Kind: "pods"}
	for name, v := range map[string]any{
		"images":         report.NewReport(report.KindPrefetchReport, "r1", start, start.Add(3*time.Second), tricky[:1]),
		"tricky strings": report.NewReport(report.KindArtifactReport, "", start, start, tricky),
		"left behind":    interrupted,
		"no results":     report.NewReport(report.KindPrefetchReport, "r3", start, start, nil),
		"empty results":  &report.PrefetchReport{APIVersion: report.APIVersion, Kind: report.KindPrefetchReport, Results: []report.Result{}},
		"not a report":   map[string]any{"results": []int{1, 2}},
	} {
		t.Run(name, func(t *testing.T) {
			var got bytes.Buffer
			if err := Print(&got, report.FormatJSON, v, nil); err != nil {
				t.Fatal(err)
			}
			if want := encoderJSON(t, v); !bytes.Equal(got.Bytes(), want) {
				t.Errorf("-o json differs from json.Encoder's:\n got: %s\nwant: %s", got.Bytes(), want)
			}
		})
	}
}

func bigReport(nodes, images int) *report.PrefetchReport {
	start := time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC)
	rows := make([]report.Result, 0, nodes*images)
	for n := range nodes {
		for i := range images {
			rows = append(rows, report.Result{
				Node: fmt.Sprintf("sim-%05d", n), Image: fmt.Sprintf("registry.example/scale/image-%d@sha256:%064x", i, i),
				Status: report.StatusPulled, Digest: fmt.Sprintf("sha256:%064x", i), ExpectedDigest: fmt.Sprintf("sha256:%064x", i),
				SizeBytes: 123456789, DurationSeconds: 1.5,
			})
		}
	}
	return report.NewReport(report.KindPrefetchReport, "bench", start, start.Add(time.Minute), rows)
}

// BenchmarkEncodeJSONReport: the -o json report of 5000 nodes and 3 images,
// through json.Encoder whole (before) and row by row (now), side by side;
// peak-heap-MB is the most the heap grew (live and garbage, sampled) while
// one report was encoded.
func BenchmarkEncodeJSONReport(b *testing.B) {
	rep := bigReport(5000, 3)
	benchEncode(b, []encodeWay{
		{"encoder", func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		}},
		{"rows", func(w io.Writer) error { return encodeJSON(w, rep) }},
	})
}

type encodeWay struct {
	name   string
	encode func(io.Writer) error
}

// benchEncode runs each way as a sub-benchmark and reports the most the
// heap grew (live and garbage, sampled) while one report was encoded.
func benchEncode(b *testing.B, ways []encodeWay) {
	for _, way := range ways {
		b.Run(way.name, func(b *testing.B) {
			b.ReportAllocs()
			var worst uint64
			for b.Loop() {
				b.StopTimer()
				runtime.GC()
				base := heapObjects()
				var peak atomic.Uint64
				stop, done := make(chan struct{}), make(chan struct{})
				go func() { // sample the heap while the report is encoded
					defer close(done)
					for {
						peak.Store(max(peak.Load(), heapObjects()))
						select {
						case <-stop:
							return
						case <-time.After(200 * time.Microsecond):
						}
					}
				}()
				b.StartTimer()
				err := way.encode(io.Discard)
				close(stop)
				<-done
				if err != nil {
					b.Fatal(err)
				}
				worst = max(worst, peak.Load()-min(base, peak.Load()))
			}
			b.ReportMetric(float64(worst)/(1<<20), "peak-heap-MB")
		})
	}
}

func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// yamlReports are reports whose strings test the YAML emitter: long ones it
// folds (at a column, so a row must sit where it sits in the whole
// document), block scalars with blank lines and leading spaces, strings
// that read as other types, and the key's own text inside a message.
func yamlReports() map[string]any {
	start := time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC)
	long := "rpc error: code = NotFound desc = failed to pull and unpack image \"registry.example/team/app:v1\": failed to resolve reference: not found"
	msgs := []string{
		"", long, long + "\n" + long, "line one\n\n  indented after a blank line\n", " leading space", "trailing space ",
		"true", "123", "null", "~", "- dash", "# hash", "key: value", "a\tb", "\u2028 ünï <html> & \"q\" 'q'",
		"results: null", "\nresults: null\n", "results:\n- x", strings.Repeat("word ", 40),
	}
	var rows []report.Result
	for i, m := range msgs {
		rows = append(rows, report.Result{Node: fmt.Sprintf("n%d", i), Image: "reg.example/a:1", Status: report.StatusFailed, Message: m, SizeBytes: int64(i), DurationSeconds: float64(i) / 3})
	}
	rows = append(rows, report.Result{Node: "n-art", Artifact: "model", Source: "s3://b/k", Path: "/var/lib/coral/model.bin", Status: report.StatusDownloaded, DigestMismatch: true, Pinned: true, Attempts: 2})
	left := report.NewReport(report.KindPrefetchReport, "r2", start, start.Add(time.Minute), rows[:3])
	left.Interrupted = true
	left.LeftBehind = &report.LeftBehind{Workers: 3, Kind: "pods", Removal: long + "\nresults: null\n"}
	return map[string]any{
		"tricky strings": report.NewReport(report.KindPrefetchReport, "r1", start, start.Add(3*time.Second), rows),
		"artifacts":      report.NewReport(report.KindArtifactReport, "", start, start, rows[len(rows)-1:]),
		"left behind":    left,
		"no results":     report.NewReport(report.KindPrefetchReport, "r3", start, start, nil),
		"empty results":  &report.PrefetchReport{APIVersion: report.APIVersion, Kind: report.KindPrefetchReport, Results: []report.Result{}},
		"not a report":   map[string]any{"results": []int{1, 2}},
		"5000 nodes":     bigReport(5000, 3),
	}
}

// TestEncodeYAMLIsMarshals: -o yaml converts a report's results a chunk at
// a time, and what it writes is sigs.k8s.io/yaml's document, byte for byte,
// whatever the chunk.
func TestEncodeYAMLIsMarshals(t *testing.T) {
	for name, v := range yamlReports() {
		want, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		for _, chunk := range []int{1, 2, 7, yamlChunk} {
			t.Run(fmt.Sprintf("%s/chunk=%d", name, chunk), func(t *testing.T) {
				var got bytes.Buffer
				if err := encodeYAML(&got, v, chunk); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got.Bytes(), want) {
					t.Errorf("-o yaml differs from yaml.Marshal's:\n got: %.2000s\nwant: %.2000s", got.Bytes(), want)
				}
			})
		}
	}
	var got bytes.Buffer
	if err := Print(&got, report.FormatYAML, yamlReports()["left behind"], nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(got.Bytes(), []byte("\nresults:\n- ")) || !bytes.Contains(got.Bytes(), []byte("\nrunID: r2\n")) {
		t.Errorf("Print -o yaml:\n%s", got.Bytes())
	}
}

// FuzzEncodeYAML: any two messages, any chunk, the same bytes as
// yaml.Marshal of the whole report.
func FuzzEncodeYAML(f *testing.F) {
	f.Add("rpc error: code = NotFound desc = failed to pull and unpack image \"registry.example/team/app:v1\": not found", "line\n\n  x", uint8(1))
	f.Add("results: null", "\nresults: null\n", uint8(2))
	f.Fuzz(func(t *testing.T, m1, m2 string, chunk uint8) {
		start := time.Date(2026, 12, 1, 4, 0, 0, 0, time.UTC)
		rows := []report.Result{
			{Node: "a", Image: m2, Status: report.StatusFailed, Message: m1},
			{Node: m1, Image: "reg.example/a:1", Status: report.StatusPulled, Message: m2},
			{Node: "c", Artifact: m2, Status: report.StatusFailed, Message: m1 + m2},
		}
		rep := report.NewReport(report.KindPrefetchReport, m2, start, start, rows)
		want, err := yaml.Marshal(rep)
		if err != nil {
			t.Skip(err) // not a document yaml can write: nothing to compare
		}
		var got bytes.Buffer
		if err := encodeYAML(&got, rep, int(chunk%4)+1); err != nil {
			t.Fatalf("yaml.Marshal wrote the report, encodeYAML failed: %v", err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("differs from yaml.Marshal's:\n got: %q\nwant: %q", got.Bytes(), want)
		}
	})
}

// BenchmarkEncodeYAMLReport: the -o yaml report of 5000 nodes and 3 images,
// through yaml.Marshal whole (before) and a chunk of rows at a time (now),
// side by side; peak-heap-MB as in BenchmarkEncodeJSONReport.
func BenchmarkEncodeYAMLReport(b *testing.B) {
	rep := bigReport(5000, 3)
	benchEncode(b, []encodeWay{
		{"marshal", func(w io.Writer) error {
			out, err := yaml.Marshal(rep)
			if err == nil {
				_, err = w.Write(out)
			}
			return err
		}},
		{"chunks", func(w io.Writer) error { return encodeYAML(w, rep, yamlChunk) }},
	})
}
