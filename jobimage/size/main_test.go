package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/coral-dev/coral/pkg/imagebuild"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

func TestPackageOf(t *testing.T) {
	for _, tc := range []struct{ sym, want string }{
		{"net/http.(*Client).Do", "net/http"},
		{"runtime.mallocgc", "runtime"},
		{"github.com/aws/aws-sdk-go-v2/service/s3.resolveResult", "github.com/aws/aws-sdk-go-v2/service/s3"},
		{"github.com/aws/aws-sdk-go-v2/service/s3.(*Client).GetObject.func1", "github.com/aws/aws-sdk-go-v2/service/s3"},
		{"type:.eq.net/http.Request", "net/http"},
		{"type:*k8s.io/cri-api/pkg/apis/runtime/v1.PullImageRequest", "k8s.io/cri-api/pkg/apis/runtime/v1"},
		{"go:itab.*net/http.body,io.Reader", "net/http"},
		{"slices.SortFunc[go.shape.[]string,go.shape.string]", "slices"},
		{"google.golang.org/grpc/resolver..dict.AddressMapV2[bool]", "google.golang.org/grpc/resolver"},
		{"gopkg.in/inf.v0.(*Dec).Add", "gopkg.in/inf"}, // a dotted last element is cut short: none in the worker
		{"go:string.*", "go:string (shared)"},
		{"go:func.*", "go:func (shared)"},
		{"memeqbody", "memeqbody"},
	} {
		if got := packageOf(tc.sym); got != tc.want {
			t.Errorf("packageOf(%q) = %q, want %q", tc.sym, got, tc.want)
		}
	}
}

func TestAttributeSpreadsFunctionTablesByCode(t *testing.T) {
	rows := attribute([]symbolBytes{
		{pkg: "a", size: 300, code: true},
		{pkg: "b", size: 100, code: true},
		{pkg: "b", size: 50},
		{pkg: "a/x", size: 10},
	}, 1000, func(p string) string { return strings.SplitN(p, "/", 2)[0] })
	want := []row{{name: "a", code: 300, data: 10, total: 300 + 10 + 750}, {name: "b", code: 100, data: 50, total: 100 + 50 + 250}}
	if len(rows) != len(want) {
		t.Fatalf("rows %+v", rows)
	}
	for i := range want {
		if rows[i] != want[i] {
			t.Errorf("row %d = %+v, want %+v", i, rows[i], want[i])
		}
	}
}

// The figures come from a real layout and a real binary: a small Go program
// built with its symbols, packed by pkg/imagebuild.
func TestRunPrintsStoredSizesAndPackages(t *testing.T) {
	tmp := t.TempDir()
	src := filepath.Join(tmp, "hello.go")
	if err := os.WriteFile(src, []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(tmp, "hello")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, src)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	idx, err := imagebuild.Index([]imagebuild.Binary{{Platform: "linux/amd64", Path: bin}}, "coral-worker")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx); err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := run(&out, dir, bin, 5); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	row := fmt.Sprintf(`linux/amd64 +%s +%d B +%d B +%s +[0-9.]+ MB +application/vnd.oci.image.layer.v1.tar\+gzip`,
		regexp.QuoteMeta(mb(m.Layers[0].Size)), m.Config.Size, im.Manifests[0].Size, regexp.QuoteMeta(mb(m.Layers[0].Size+m.Config.Size+im.Manifests[0].Size)))
	if !regexp.MustCompile(row).MatchString(got) {
		t.Errorf("output lacks a row matching %s:\n%s", row, got)
	}
	for _, want := range []string{"application/vnd.oci.image.layer.v1.tar+gzip", "top 5 of", "by package", "by module", " runtime\n", " fmt\n", " std\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}
