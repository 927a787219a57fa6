package worker

import (
	"archive/tar"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// A reader of an extracted tree sees the old tree or the new one, never no
// tree: the swap is one atomic step.
func TestExtractSwapLeavesNoMomentWithoutATree(t *testing.T) {
	dir := t.TempDir()
	var archives []string
	for i, body := range []string{"v1", "v2"} {
		b := tarball(t, []tar.Header{{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, {Name: "bin/tool", Typeflag: tar.TypeReg}}, map[string]string{"bin/tool": body}, i == 1)
		p := filepath.Join(t.TempDir(), "tools.tar.gz")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		archives = append(archives, p)
	}
	if _, err := extractInto(dir, archives[0], "tools.tar.gz"); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "tools", "bin", "tool")
	var stop atomic.Bool
	var misses, reads atomic.Int64
	var wg sync.WaitGroup
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				reads.Add(1)
				b, err := os.ReadFile(target)
				if err != nil || (string(b) != "v1" && string(b) != "v2") {
					misses.Add(1)
				}
			}
		}()
	}
	const swaps = 100
	for i := 1; i <= swaps; i++ {
		if _, err := extractInto(dir, archives[i%2], "tools.tar.gz"); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	if misses.Load() > 0 {
		t.Fatalf("%d of %d reads during %d swaps found no tree", misses.Load(), reads.Load(), swaps)
	}
	if b, _ := os.ReadFile(target); string(b) != "v1" {
		t.Fatalf("after an even number of swaps the tree holds %q", b)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 || ents[0].Name() != "tools" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("left in the artifact directory: %v", names)
	}
}
