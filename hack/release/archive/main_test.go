package main

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

type entry struct {
	name    string
	mode    os.FileMode
	modTime time.Time
	body    string
}

func readTarGz(t *testing.T, path string) []entry {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out []entry
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s: owner %d/%d %q/%q, want 0/0 and no names", hdr.Name, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname)
		}
		b, _ := io.ReadAll(tr)
		out = append(out, entry{hdr.Name, hdr.FileInfo().Mode().Perm(), hdr.ModTime.UTC(), string(b)})
	}
}

func readZip(t *testing.T, path string) []entry {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	var out []entry
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		out = append(out, entry{f.Name, f.Mode().Perm(), f.Modified.UTC(), string(b)})
	}
	return out
}

func TestArchivesAreReproducible(t *testing.T) {
	mtime := time.Unix(1764225600, 0).UTC()
	for _, tt := range []struct {
		ext  string
		read func(*testing.T, string) []entry
	}{
		{".tar.gz", readTarGz},
		{".zip", readZip},
	} {
		t.Run(tt.ext, func(t *testing.T) {
			var outputs [][]byte
			for i, stamp := range []time.Time{time.Now(), time.Now().Add(-48 * time.Hour)} {
				src := t.TempDir()
				write := func(name, body string, mode os.FileMode) string {
					p := filepath.Join(src, "sub", name)
					if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(p, []byte(body), mode); err != nil {
						t.Fatal(err)
					}
					if err := os.Chmod(p, mode); err != nil { // past the umask
						t.Fatal(err)
					}
					if err := os.Chtimes(p, stamp, stamp); err != nil {
						t.Fatal(err)
					}
					return p
				}
				// Given out of order, with modes the archive normalizes.
				paths := []string{
					write("README.md", "readme", 0o600),
					write("kubectl-coral", "binary", 0o700),
					write("LICENSE", "license", 0o664),
				}
				out := filepath.Join(t.TempDir(), "coral_v1.0.0_linux_amd64"+tt.ext)
				if err := run(out, mtime, paths); err != nil {
					t.Fatalf("build %d: %v", i, err)
				}
				b, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				outputs = append(outputs, b)

				got := tt.read(t, out)
				want := []entry{
					{"LICENSE", 0o644, mtime, "license"},
					{"README.md", 0o644, mtime, "readme"},
					{"kubectl-coral", 0o755, mtime, "binary"},
				}
				if !slices.Equal(got, want) {
					t.Errorf("entries = %+v, want %+v", got, want)
				}
			}
			if !bytes.Equal(outputs[0], outputs[1]) {
				t.Error("two builds of the same files differ")
			}
		})
	}
}

func TestArchiveRefuses(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a", "LICENSE")
	b := filepath.Join(dir, "b", "LICENSE")
	for _, p := range []string{a, b} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		out   string
		paths []string
	}{
		{"two files with one name", filepath.Join(dir, "x.tar.gz"), []string{a, b}},
		{"unknown format", filepath.Join(dir, "x.tar.xz"), []string{a}},
		{"a directory", filepath.Join(dir, "x.zip"), []string{dir}},
		{"a missing file", filepath.Join(dir, "x.zip"), []string{filepath.Join(dir, "nope")}},
		{"no files", filepath.Join(dir, "x.zip"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := run(tt.out, time.Unix(0, 0), tt.paths); err == nil {
				t.Fatal("no error")
			}
			if _, err := os.Stat(tt.out); !os.IsNotExist(err) {
				t.Errorf("%s was written", tt.out)
			}
		})
	}
}
