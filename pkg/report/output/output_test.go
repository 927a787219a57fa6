package output

import (
	"bytes"
	"github.com/coral-dev/coral/pkg/report"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestPrintFormats(t *testing.T) {
	rep := report.NewReport(report.KindPrefetchReport, "r1", time.Time{}, time.Time{}, []report.Result{
		{Node: "b", Image: "x:1", Status: report.StatusPulled},
		{Node: "a", Image: "x:1", Status: report.StatusPresent},
		{Node: "a", Image: "y:1", Status: report.StatusPulled},
		{Node: "c", Image: "x:1", Status: report.StatusFailed},
		{Node: "d", Image: "x:1", Status: report.StatusSkipped},
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

func TestPrintJSONAndYAMLKeepTheReportsFields(t *testing.T) {
	rep := report.NewReport(report.KindPrefetchReport, "r1", time.Time{}, time.Time{}, []report.Result{{Node: "n1", Image: "x:1", Status: report.StatusPulled, SizeBytes: 3}})
	for _, f := range []string{"json", "yaml"} {
		var b bytes.Buffer
		if err := Print(&b, f, rep, rep.PrintTable); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), "PrefetchReport") || !strings.Contains(b.String(), "sizeBytes") {
			t.Errorf("%s output lacks kind/fields:\n%s", f, b.String())
		}
	}
	if err := ValidateFormat("xml"); err == nil || !strings.Contains(err.Error(), "json") {
		t.Errorf("ValidateFormat(xml) = %v", err)
	}
}
