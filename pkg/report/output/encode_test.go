package output

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coral-dev/coral/pkg/report"
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
	for _, way := range []struct {
		name   string
		encode func(io.Writer) error
	}{
		{"encoder", func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(rep)
		}},
		{"rows", func(w io.Writer) error { return encodeJSON(w, rep) }},
	} {
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
