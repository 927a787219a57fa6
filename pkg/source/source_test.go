package source

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestFromReader(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string
	}{
		{
			name: "plain list with comments and duplicates",
			in:   "# images for the web pool\nnginx:1.27\n\n  redis:7   # cache\nnginx:1.27\nregistry.example.com:5000/team/api@sha256:" + strings.Repeat("a", 64) + "\n",
			want: []string{"nginx:1.27", "redis:7", "registry.example.com:5000/team/api@sha256:" + strings.Repeat("a", 64)},
		},
		{
			name:    "invalid reference names the line",
			in:      "nginx:1.27\nNot A Ref!\n",
			wantErr: "line 2",
		},
		{
			name:    "empty list",
			in:      "# nothing\n\n",
			wantErr: "no images found",
		},
		{
			name: "multi-document YAML with every pod-template kind",
			in: `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      initContainers: [{name: init, image: busybox:1.36}]
      containers: [{name: app, image: nginx:1.27}, {name: side, image: envoy:v1}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: c}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: c, image: cron:1}]
---
apiVersion: apps/v1
kind: StatefulSet
spec: {template: {spec: {containers: [{name: s, image: sts:1}]}}}
---
apiVersion: apps/v1
kind: DaemonSet
spec: {template: {spec: {containers: [{name: d, image: ds:1}]}}}
---
apiVersion: apps/v1
kind: ReplicaSet
spec: {template: {spec: {containers: [{name: r, image: rs:1}]}}}
---
apiVersion: v1
kind: ReplicationController
spec: {template: {spec: {containers: [{name: r, image: rc:1}]}}}
---
apiVersion: batch/v1
kind: Job
spec: {template: {spec: {containers: [{name: j, image: job:1}]}}}
---
apiVersion: v1
kind: PodTemplate
template: {spec: {containers: [{name: p, image: pt:1}]}}
---
apiVersion: v1
kind: Pod
spec:
  containers: [{name: p, image: nginx:1.27}]
  ephemeralContainers: [{name: dbg, image: debug:1}]
---
`,
			want: []string{"busybox:1.36", "nginx:1.27", "envoy:v1", "cron:1", "sts:1", "ds:1", "rs:1", "rc:1", "job:1", "pt:1", "debug:1"},
		},
		{
			name: "JSON List",
			in:   `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a","image":"a:1"}]}},{"apiVersion":"apps/v1","kind":"Deployment","spec":{"template":{"spec":{"containers":[{"name":"b","image":"b:2"}]}}}}]}`,
			want: []string{"a:1", "b:2"},
		},
		{
			name:    "broken YAML",
			in:      "apiVersion: v1\nkind: Pod\nspec: [unclosed\n",
			wantErr: "not valid YAML or JSON",
		},
		{
			name:    "manifests without images",
			in:      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
			wantErr: "no images found",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromReader(strings.NewReader(tt.in), "test")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestFromFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "images.txt")
	if err := os.WriteFile(p, []byte("a:1\nb:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := FromFile(p, nil)
	if err != nil || !reflect.DeepEqual(got, []string{"a:1", "b:2"}) {
		t.Fatalf("FromFile = %q, %v", got, err)
	}
	got, err = FromFile("-", strings.NewReader("c:3\n"))
	if err != nil || !reflect.DeepEqual(got, []string{"c:3"}) {
		t.Fatalf("FromFile(-) = %q, %v", got, err)
	}
	_, err = FromFile(filepath.Join(dir, "missing.txt"), nil)
	if err == nil || !strings.Contains(err.Error(), "no such file") || !strings.Contains(err.Error(), "-f") {
		t.Fatalf("missing file error = %v", err)
	}
}

func TestFromArgs(t *testing.T) {
	got, err := FromArgs([]string{"nginx:1.27", "nginx:1.27", "redis"})
	if err != nil || !reflect.DeepEqual(got, []string{"nginx:1.27", "redis"}) {
		t.Fatalf("FromArgs = %q, %v", got, err)
	}
	for _, bad := range []string{"", "UPPER/case:1", "a b", "nginx:"} {
		if _, err := FromArgs([]string{bad}); err == nil {
			t.Errorf("FromArgs(%q): want error", bad)
		}
	}
	if !errors.Is(ErrNoImages, ErrNoImages) {
		t.Fatal("sentinel")
	}
}

func TestFromPodSpecs(t *testing.T) {
	objs := []runtime.Object{
		&corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Image: "a:1"}}}},
		&corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Image: "b:1"}}, Containers: []corev1.Container{{Image: "a:1"}}}},
		&corev1.ConfigMap{},
	}
	if got := FromPodSpecs(objs); !reflect.DeepEqual(got, []string{"a:1", "b:1"}) {
		t.Fatalf("FromPodSpecs = %q", got)
	}
}

// References go-containerregistry's weak validation lets through but a
// node's runtime refuses are refused before anything is created.
func TestValidateRefRefusesWhatRuntimesRefuse(t *testing.T) {
	for _, ref := range []string{"A://", "a//b:1", "a/:1", "r.io/x/", "-a", "a...b", "a:-1", "a:.x", "/a", "r.io//a", strings.Repeat("a", 256)} {
		if err := ValidateRef(ref); err == nil {
			t.Errorf("ValidateRef(%q) accepted a reference containerd refuses", ref)
		}
	}
	for _, ref := range []string{"nginx", "nginx:1.27", "Registry.Example.COM:5000/team/api:v3", "[::1]:5000/x:1", "localhost/app", "a.b/c.d/e_f/g-h:1.0-rc_1", "a__b/c---d",
		"x:1@sha256:" + strings.Repeat("0", 64), "kind:v1", strings.Repeat("a", 255) + ":" + strings.Repeat("t", 128)} {
		if err := ValidateRef(ref); err != nil {
			t.Errorf("ValidateRef(%q): %v", ref, err)
		}
	}
}
