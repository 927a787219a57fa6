package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// The plugin reads what a worker pod wrote: its termination message and its
// log. Whatever bytes arrive there (an old or foreign worker, a truncated
// message, a log line someone else printed), decoding must return a report or
// an error, never panic, and a report it returns must describe exactly the
// images that were asked for.

func FuzzDecodeTermination(f *testing.F) {
	f.Add(`{"v":1,"i":[["P","=",1234,56,1,"",0],["R","sha256:00",99,0,0,"",1],["F","",0,0,3,"not found",0]]}`, uint8(3), "a:1\nb:2\nc:3")
	f.Add(`{"v":1,"s":"PRF"}`, uint8(3), "")
	f.Add(`{"v":1,"s":"PÿF"}`, uint8(4), "")
	f.Add(`{"v":99,"i":[]}`, uint8(0), "")
	f.Add(`{"v":1,"i":[["P","=",1e308,-1,1.5,7,"x"]]}`, uint8(1), "a")
	f.Add(`{"v":1,"i":[null,[],{}]}`, uint8(3), "")
	f.Add(`{"v":1}`, uint8(0), "")
	f.Add("not json", uint8(1), "")
	f.Add(`{"v":1,"i":[["P","=",1,1,1,"",0]],"s":"P"}`, uint8(1), "")
	f.Fuzz(func(t *testing.T, msg string, n uint8, expected string) {
		images := make([]string, int(n)%70)
		for i := range images {
			images[i] = fmt.Sprintf("registry.example/img-%d:v1", i)
		}
		exp := strings.Split(expected, "\n")
		r, err := DecodeTermination(msg, images, exp)
		if err != nil {
			return
		}
		if len(r.Items) != len(images) {
			t.Fatalf("decoded %d items for %d images", len(r.Items), len(images))
		}
		for i, it := range r.Items {
			if it.Item != images[i] {
				t.Fatalf("item %d is %q, want %q", i, it.Item, images[i])
			}
			if _, ok := statusCodes[it.Status]; !ok {
				t.Fatalf("item %d has status %q, which no worker can send", i, it.Status)
			}
			if r.Overflow && (it.Digest != "" || it.Message != "" || it.SizeBytes != 0) {
				t.Fatalf("an overflowed report must carry statuses only, item %d: %+v", i, it)
			}
		}
	})
}

func FuzzDecodeFull(f *testing.F) {
	f.Add([]byte(FullReportPrefix + `{"v":1,"items":[{"image":"a:1","status":"Pulled","digest":"sha256:00","sizeBytes":3}]}` + "\n"))
	f.Add([]byte("some line\n" + FullReportPrefix + `{"v":1,"items":[]}` + "\n" + FullReportPrefix + `{"v":2}`))
	f.Add([]byte(FullReportPrefix + `{"v":1,"items":null}`))
	f.Add([]byte(FullReportPrefix))
	f.Add([]byte("\x00\xff" + FullReportPrefix + "{"))
	f.Fuzz(func(t *testing.T, log []byte) {
		r, err := DecodeFull(bytes.NewReader(log))
		if err != nil {
			return
		}
		if r.Version != WireVersion {
			t.Fatalf("accepted a report of version %d", r.Version)
		}
		if !bytes.Contains(log, []byte(FullReportPrefix)) {
			t.Fatal("found a report in a log without a report line")
		}
	})
}

// statusList is every status a worker reports, in a fixed order.
var statusList = []Status{StatusPulled, StatusPresent, StatusFailed, StatusSkipped, StatusDownloaded}

// fuzzReport builds a worker report and its expected digests from fuzz input:
// one item per byte of spec, the byte choosing the status, whether a digest
// is known, whether it was expected (or another was), and whether it is pinned.
func fuzzReport(spec []byte, msg string, size, ms int64) (*WorkerReport, []string) {
	if len(spec) > 200 {
		spec = spec[:200]
	}
	// JSON numbers are float64 in the compact form: sizes and durations
	// beyond 2^53 (8 PiB, 285 millennia) cannot occur and are not kept exactly.
	const maxExact = 1 << 53
	clamp := func(v int64) int64 {
		if v < 0 {
			v = -v
		}
		if v < 0 || v >= maxExact {
			v %= maxExact
			if v < 0 {
				v = -v
			}
		}
		return v
	}
	r := &WorkerReport{Version: WireVersion}
	expected := make([]string, len(spec))
	for i, b := range spec {
		it := ItemResult{
			Item:       fmt.Sprintf("registry.example:5000/team/image-%03d:v1", i),
			Status:     statusList[int(b)%len(statusList)],
			SizeBytes:  clamp(size) >> (i % 16),
			DurationMs: clamp(ms) >> (i % 8),
			Attempts:   int(b >> 6),
			Pinned:     b&0x20 != 0,
		}
		if b&0x08 != 0 {
			it.Digest = fmt.Sprintf("sha256:%064x", int(b)*1000+i)
		}
		switch {
		case b&0x10 != 0:
			expected[i] = it.Digest // may be "": nothing was expected
		case b&0x40 != 0:
			expected[i] = fmt.Sprintf("sha256:%064x", i) // another digest: a mismatch
		}
		if msg != "" {
			k := i % len(msg)
			it.Message = msg[k:] + msg[:k]
		}
		r.Items = append(r.Items, it)
	}
	return r, expected
}

// jsonString is s as it comes out of a JSON round trip (invalid UTF-8
// becomes U+FFFD): what any JSON wire keeps of a message.
func jsonString(s string) string {
	b, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(b, &out)
	return out
}

func FuzzTerminationRoundTrip(f *testing.F) {
	f.Add([]byte{0x08, 0x19, 0x3a, 0x02}, "rpc error: code = NotFound desc = not found", int64(50<<20), int64(12345))
	f.Add(bytes.Repeat([]byte{0x18}, 60), "", int64(1<<30), int64(999))
	f.Add(bytes.Repeat([]byte{0x0a, 0x4b}, 100), strings.Repeat("503 Service Unavailable ", 20), int64(-1), int64(1<<62))
	f.Add([]byte{0x02}, "é…\xff\xfe日本", int64(0), int64(0))
	f.Add([]byte{}, "", int64(0), int64(0))
	f.Fuzz(func(t *testing.T, spec []byte, msg string, size, ms int64) {
		in, expected := fuzzReport(spec, msg, size, ms)
		images := make([]string, len(in.Items))
		for i, it := range in.Items {
			images[i] = it.Item
		}
		enc := EncodeTermination(in, expected, TerminationMessageLimit)
		if len(enc) > TerminationMessageLimit {
			t.Fatalf("termination message of %d items is %d bytes, over kubelet's %d", len(in.Items), len(enc), TerminationMessageLimit)
		}
		out, err := DecodeTermination(enc, images, expected)
		if err != nil {
			t.Fatalf("the plugin cannot read what the worker wrote: %v\n%s", err, enc)
		}
		if len(out.Items) != len(in.Items) {
			t.Fatalf("%d items in, %d out", len(in.Items), len(out.Items))
		}
		for i, got := range out.Items {
			want := in.Items[i]
			if got.Item != want.Item || got.Status != want.Status {
				t.Fatalf("item %d: got %s %s, want %s %s", i, got.Item, got.Status, want.Item, want.Status)
			}
			if out.Overflow {
				continue // statuses only; the full report is in the log
			}
			if got.Digest != want.Digest || got.SizeBytes != want.SizeBytes || got.DurationMs != want.DurationMs ||
				got.Attempts != want.Attempts || got.Pinned != want.Pinned {
				t.Fatalf("item %d (expected %q):\n got %+v\nwant %+v", i, expected[i], got, want)
			}
			// Messages may be shortened (ending in "…") or dropped to fit
			// the cap; never altered.
			wm := jsonString(want.Message)
			switch {
			case got.Message == wm, got.Message == "":
			case strings.HasSuffix(got.Message, "…") && strings.HasPrefix(wm, strings.TrimSuffix(got.Message, "…")):
			default:
				t.Fatalf("item %d: message %q, want %q or a shortening of it", i, got.Message, wm)
			}
		}

		// The full report in the log keeps everything.
		var log bytes.Buffer
		log.WriteString("15:04:05.000 pulling\n")
		if err := EncodeFull(&log, in); err != nil {
			t.Fatal(err)
		}
		log.WriteString("15:04:06.000 done\n")
		full, err := DecodeFull(&log)
		if err != nil {
			t.Fatalf("the plugin cannot read the log the worker wrote: %v", err)
		}
		if len(full.Items) != len(in.Items) {
			t.Fatalf("full report: %d items in, %d out", len(in.Items), len(full.Items))
		}
		for i, got := range full.Items {
			want := in.Items[i]
			want.Message = jsonString(want.Message)
			if got != want {
				t.Fatalf("full report, item %d:\n got %+v\nwant %+v", i, got, want)
			}
		}
	})
}
