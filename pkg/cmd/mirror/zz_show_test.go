package mirror

import (
	"fmt"
	"testing"

	"github.com/coral-dev/coral/pkg/mirror/mirrortest"
)

func TestZZShow(t *testing.T) {
	src := mirrortest.Start(t)
	dst := mirrortest.Start(t, mirrortest.WithTLS(), mirrortest.WithHtpasswd("a", "b"))
	plain := mirrortest.Start(t)
	mirrortest.Push(t, src.Host+"/app:v1", mirrortest.Index(t, platforms, 1<<20, 2))
	mirrortest.Push(t, src.Host+"/tool:v1", mirrortest.Image(t, "linux/amd64", 1<<20, 2))
	for _, args := range [][]string{
		{src.Host + "/app:v1", src.Host + "/app:v2", "127.0.0.1:1/x:1", "--to", plain.Host},
		{src.Host + "/app:v1", "--to", dst.Host},
		{src.Host + "/app:v1", "--to", dst.Host, "--registry-ca-file", dst.CAFile},
		{src.Host + "/app:v1", src.Host + "/tool:v1", "--to", plain.Host + "/m", "--dry-run"},
		{src.Host + "/app:v1", src.Host + "/tool:v1", "--to", plain.Host + "/m", "--platform", "linux/arm64"},
		{src.Host + "/app:v1", src.Host + "/tool:v1", "--to", plain.Host + "/m", "-o", "wide"},
		{src.Host + "/app:v1", "--to", "registry.example.com:5000"},
		{src.Host + "/app:v1", "--to", "10.255.255.1:5000"},
	} {
		r := runMirror(t, "", args)
		fmt.Printf("\n$ kubectl coral mirror %v\n--- exit %d\n--- stdout\n%s--- stderr\n%s", args, r.code, r.stdout, r.stderr)
	}
}
