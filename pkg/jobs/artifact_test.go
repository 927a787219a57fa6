package jobs

import (
	"strings"
	"testing"

	"github.com/coral-dev/coral/pkg/plan"
)

func TestArtifactQuerySecret(t *testing.T) {
	task := plan.Task{Node: "gpu-1", Items: []plan.Item{{Ref: "https://b.example/m.bin"}}}
	a := ArtifactSpec{Name: "bert", QuerySecret: QuerySecretName("abc123")}
	ps := ForArtifactTask(task, spec(), a).Spec.Template.Spec
	var found bool
	for _, v := range ps.Volumes {
		if v.Projected != nil && v.Projected.Sources[0].Secret != nil && v.Projected.Sources[0].Secret.Name == "coral-abc123-queries" {
			found = true
			if *v.Projected.DefaultMode != 0o400 {
				t.Errorf("mode %o", *v.Projected.DefaultMode)
			}
		}
	}
	if !found {
		t.Fatalf("no query secret volume in %+v", ps.Volumes)
	}
	if args := strings.Join(ps.Containers[0].Args, " "); !strings.Contains(args, "--query-dir="+QueriesMountPath) {
		t.Errorf("args %s", args)
	}
	sec := ArtifactQuerySecret("abc123", "ns", map[string]string{QueryKey(0): "sig=x", ChecksumQueryKey: "sig=y"})
	if sec.Name != "coral-abc123-queries" || sec.Namespace != "ns" || sec.Labels[LabelRunID] != "abc123" || sec.StringData["source-0"] != "sig=x" {
		t.Errorf("secret %+v", sec)
	}
}
