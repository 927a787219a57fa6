package report

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func digestN(i int) string { return fmt.Sprintf("sha256:%064x", i+1) }

func TestTerminationRoundTrip(t *testing.T) {
	images := []string{"a:1", "b:2", "c:3"}
	expected := []string{digestN(0), "", digestN(2)}
	in := &WorkerReport{Items: []ItemResult{
		{Item: "a:1", Status: StatusPulled, Digest: digestN(0), SizeBytes: 1234, DurationMs: 56, Attempts: 1},
		{Item: "b:2", Status: StatusPresent, Digest: digestN(1), SizeBytes: 99},
		{Item: "c:3", Status: StatusFailed, Attempts: 3, Message: "rpc error: code = NotFound desc = not found"},
	}}
	msg := EncodeTermination(in, expected, TerminationMessageLimit)
	if !strings.Contains(msg, `"="`) {
		t.Errorf("expected digest should be abbreviated to \"=\": %s", msg)
	}
	out, err := DecodeTermination(msg, images, expected)
	if err != nil {
		t.Fatal(err)
	}
	if out.Overflow {
		t.Fatal("small report marked overflow")
	}
	in.Version = WireVersion
	if !reflect.DeepEqual(out.Items, in.Items) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out.Items, in.Items)
	}
}

func TestTerminationSixtyImagesFit(t *testing.T) {
	var images, expected []string
	r := &WorkerReport{}
	for i := 0; i < 60; i++ {
		img := fmt.Sprintf("registry.example.com:5000/team/service-%02d:v1.2.3", i)
		images = append(images, img)
		// half resolved up front, half not: those digests must travel in full
		exp := ""
		if i%2 == 0 {
			exp = digestN(i)
		}
		expected = append(expected, exp)
		it := ItemResult{Item: img, Status: StatusPulled, Digest: digestN(i), SizeBytes: 50 << 20, DurationMs: 12345, Attempts: 1}
		if i%10 == 9 {
			it = ItemResult{Item: img, Status: StatusFailed, Attempts: 4, Message: strings.Repeat("failed to pull and unpack image: unexpected status from GET request: 503 Service Unavailable ", 3)}
		}
		r.Items = append(r.Items, it)
	}
	msg := EncodeTermination(r, expected, TerminationMessageLimit)
	if len(msg) > TerminationMessageLimit {
		t.Fatalf("message is %d bytes, over the %d cap", len(msg), TerminationMessageLimit)
	}
	out, err := DecodeTermination(msg, images, expected)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Items) != 60 {
		t.Fatalf("decoded %d items, want 60", len(out.Items))
	}
	if out.Overflow {
		t.Fatal("60 images must fit in the termination message with their digests, without reading the log")
	}
	for i, it := range out.Items {
		if it.Status != r.Items[i].Status || it.Item != images[i] {
			t.Fatalf("item %d: got %s %s, want %s %s", i, it.Item, it.Status, images[i], r.Items[i].Status)
		}
		if it.Status == StatusPulled && it.Digest != r.Items[i].Digest {
			t.Fatalf("item %d: digest %q, want %q", i, it.Digest, r.Items[i].Digest)
		}
	}
}

func TestTerminationOverflowKeepsStatuses(t *testing.T) {
	var images []string
	r := &WorkerReport{}
	for i := 0; i < 500; i++ {
		img := fmt.Sprintf("r.example/i%d:v1", i)
		images = append(images, img)
		st := StatusPulled
		if i%7 == 0 {
			st = StatusFailed
		}
		r.Items = append(r.Items, ItemResult{Item: img, Status: st, Digest: digestN(i), SizeBytes: 1, DurationMs: 1, Message: "boom"})
	}
	msg := EncodeTermination(r, nil, TerminationMessageLimit)
	if len(msg) > TerminationMessageLimit {
		t.Fatalf("message is %d bytes", len(msg))
	}
	out, err := DecodeTermination(msg, images, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Overflow {
		t.Fatal("500 digests cannot fit in 4 KiB: want Overflow so the plugin reads the log")
	}
	for i, it := range out.Items {
		if it.Status != r.Items[i].Status {
			t.Fatalf("item %d status %s, want %s", i, it.Status, r.Items[i].Status)
		}
	}
	// the full report is in the log
	var log bytes.Buffer
	log.WriteString("some line\n")
	if err := EncodeFull(&log, r); err != nil {
		t.Fatal(err)
	}
	full, err := DecodeFull(&log)
	if err != nil {
		t.Fatal(err)
	}
	if len(full.Items) != 500 || full.Items[499].Digest != digestN(499) {
		t.Fatalf("full report lost items: %d", len(full.Items))
	}
}

func TestWireVersionMismatch(t *testing.T) {
	_, err := DecodeTermination(`{"v":99,"i":[]}`, nil, nil)
	if !errors.Is(err, ErrWireVersion) || !strings.Contains(err.Error(), "--worker-image") {
		t.Fatalf("got %v, want ErrWireVersion naming --worker-image", err)
	}
	_, err = DecodeFull(strings.NewReader(FullReportPrefix + `{"v":2,"items":[]}` + "\n"))
	if !errors.Is(err, ErrWireVersion) {
		t.Fatalf("full: got %v", err)
	}
	if _, err := DecodeTermination("not json", nil, nil); err == nil {
		t.Fatal("want error for garbage")
	}
	if _, err := DecodeTermination(`{"v":1,"i":[["P","",1,1,0,""]]}`, []string{"a", "b"}, nil); err == nil {
		t.Fatal("want error for item count mismatch")
	}
}

func TestPrintTable(t *testing.T) {
	rep := NewPrefetchReport("r1", fixedTime, fixedTime, []Result{
		{Node: "n2", Image: "a:1", Status: StatusFailed, Message: "not found"},
		{Node: "n1", Image: "a:1", Status: StatusPulled, Digest: digestN(0), SizeBytes: 3 << 20, DurationSeconds: 1.25},
		{Node: "n3", Image: "a:1", Status: StatusSkipped, Message: "node is cordoned"},
	})
	var b bytes.Buffer
	if err := rep.PrintTable(&b, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"NODE", "n1", "sha256:000000000000 ", "3.0MiB", "1.3s", "not found", "node is cordoned", "3 nodes, 3 results: 1 pulled, 0 present, 1 failed, 1 skipped"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "n1") > strings.Index(out, "n2") {
		t.Error("rows not sorted by node")
	}
	if rep.AllSucceeded() {
		t.Error("a report with a failure must not be AllSucceeded")
	}
}
