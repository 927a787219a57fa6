package inject

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

const manifests = `apiVersion: apps/v1
kind: Deployment
metadata: {name: inference}
spec:
  selector: {matchLabels: {app: inf}}
  template:
    metadata: {labels: {app: inf}}
    spec:
      containers: [{name: server, image: nginx}, {name: proxy, image: envoy}]
---
apiVersion: v1
kind: Service
metadata: {name: inference}
spec: {ports: [{port: 80}]}
`

// runLocal runs `inject artifact NAME -f FILE --local` without a cluster.
func runLocal(t *testing.T, input string, extra ...string) (string, string, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "in.yaml")
	os.WriteFile(file, []byte(input), 0o644)
	var out, errb bytes.Buffer
	o := &ArtifactOptions{IOStreams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errb}, DryRun: "none", DestRoot: "/var/lib/coral/artifacts", Local: true, Filenames: []string{file}, Force: true}
	o.Name = "bert"
	o.MountPath = "/models/bert"
	for i := 0; i < len(extra); i += 2 {
		switch extra[i] {
		case "-c":
			o.Containers = append(o.Containers, extra[i+1])
		case "--mount-path":
			o.MountPath = extra[i+1]
		}
	}
	if err := o.Validate(); err != nil {
		return "", errb.String(), err
	}
	err := o.Run(context.Background())
	return out.String(), errb.String(), err
}

func TestInjectLocal(t *testing.T) {
	out, stderr, err := runLocal(t, manifests)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: Deployment", "kind: Service", "name: coral-artifact-bert", "path: /var/lib/coral/artifacts/bert", "mountPath: /models/bert", "readOnly: true", "key: artifacts.coral.dev/bert", "operator: Exists"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Count(out, "mountPath: /models/bert") != 2 {
		t.Error("every container must get the mount by default")
	}
	if !strings.Contains(stderr, "no cluster") {
		t.Errorf("without a cluster the user must be told the holder check was skipped: %q", stderr)
	}
	again, _, err := runLocal(t, out)
	if err != nil || again != out {
		t.Fatalf("injecting twice changed the manifests (err %v)", err)
	}
	one, _, err := runLocal(t, manifests, "-c", "proxy")
	if err != nil || strings.Count(one, "mountPath: /models/bert") != 1 {
		t.Fatalf("-c proxy: %v\n%s", err, one)
	}
}

func TestInjectLocalErrors(t *testing.T) {
	tests := []struct {
		name, input string
		args        []string
		want        string
	}{
		{"unknown container", manifests, []string{"-c", "nope"}, `no container "nope"`},
		{"relative mount path", manifests, []string{"--mount-path", "models"}, "absolute"},
		{"nothing to inject into", "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n", nil, "no workload"},
		{"a bare Pod", "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a, image: x}]}\n", nil, "owns it"},
		{"not YAML", "kind: [", nil, "not valid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runLocal(t, tt.input, tt.args...)
			if cmdutil.Code(err) != cmdutil.ExitBadInput || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want exit 2 with %q", err, tt.want)
			}
		})
	}
}
