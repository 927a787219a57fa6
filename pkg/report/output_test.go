package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPrintFormats(t *testing.T) {
	rep := NewReport(KindPrefetchReport, "r1", time.Time{}, time.Time{}, []Result{
		{Node: "b", Image: "x:1", Status: StatusPulled},
		{Node: "a", Image: "x:1", Status: StatusPresent},
		{Node: "a", Image: "y:1", Status: StatusPulled},
		{Node: "c", Image: "x:1", Status: StatusFailed},
		{Node: "d", Image: "x:1", Status: StatusSkipped},
	})
	for _, tc := range []struct{ format, want string }{
		{"name", "node/a\nnode/b\n"},
		{`jsonpath={.summary.failed}`, "1"},
		{`jsonpath={range .results[?(@.status=="Failed")]}{.node}{"\n"}{end}`, "c\n"},
		{`go-template={{.kind}} {{len .results}}`, "PrefetchReport 5"},
	} {
		var b bytes.Buffer
		if err := ValidateFormat(tc.format); err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		if err := Print(&b, tc.format, rep, rep.PrintTable); err != nil {
			t.Fatalf("%s: %v", tc.format, err)
		}
		if b.String() != tc.want {
			t.Errorf("-o %s: got %q, want %q", tc.format, b.String(), tc.want)
		}
	}
	for _, bad := range []string{"xml", "jsonpath={.a", "go-template={{.x"} {
		if err := ValidateFormat(bad); err == nil {
			t.Errorf("ValidateFormat(%q) accepted it", bad)
		}
	}
}

func TestPrintObjectThroughPrintFlags(t *testing.T) {
	list := &batchv1.JobList{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "JobList"}, Items: []batchv1.Job{
		{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"}, ObjectMeta: metav1.ObjectMeta{Name: "coral-a"}},
		{TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"}, ObjectMeta: metav1.ObjectMeta{Name: "coral-b"}},
	}}
	var b bytes.Buffer
	if err := PrintObject(&b, "name", list); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != "job.batch/coral-a\njob.batch/coral-b\n" {
		t.Errorf("-o name: %q", got)
	}
	b.Reset()
	if err := PrintObject(&b, "yaml", list); err != nil || !strings.Contains(b.String(), "name: coral-b") {
		t.Errorf("-o yaml: %v %q", err, b.String())
	}
}
