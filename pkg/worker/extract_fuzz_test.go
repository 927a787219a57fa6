package worker

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzTar builds a tar archive without the test helper's *testing.T.
func fuzzTar(entries []tar.Header, bodies map[string]string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		h := h
		body := bodies[h.Name]
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		tw.WriteHeader(&h)
		tw.Write([]byte(body))
	}
	tw.Close()
	return buf.Bytes()
}

// FuzzUntar feeds any bytes to the extractor as an archive. Whatever it
// accepts or refuses, nothing outside the target directory changes: no file
// is created, written or linked outside it, and no symlink it leaves
// resolves outside it. No device, fifo or socket is created.
func FuzzUntar(f *testing.F) {
	sym := func(name, to string) tar.Header {
		return tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: to}
	}
	reg := func(name string) tar.Header { return tar.Header{Name: name, Typeflag: tar.TypeReg} }
	dir := func(name string) tar.Header { return tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755} }
	link := func(name, to string) tar.Header { return tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: to} }
	for _, entries := range [][]tar.Header{
		{dir("model/"), reg("model/weights.bin"), sym("model/latest", "weights.bin")},
		{reg("../escape")},
		{reg("/etc/evil")},
		{sym("link", "../../outside")},
		{sym("link", "/etc")},
		{sym("d", "."), reg("d/x")},
		{{Name: "dev", Typeflag: tar.TypeChar}},
		{{Name: "fifo", Typeflag: tar.TypeFifo}},
		{link("h", "../../outside")},
		{reg("a/../../b")},
		// symlinks that are inside when read as text, outside when followed
		{dir("x/"), dir("x/y/"), sym("x/y/s", ".."), sym("x/y/t", "s/../../.."), reg("x/y/t")},
		{dir("x/"), sym("x/s", ".."), sym("x/t", "s/../outside"), reg("x/t")},
		// a hard link to a symlink, placed where the symlink means something else
		{dir("a/"), dir("a/b/"), sym("a/b/l", "../x"), link("l", "a/b/l")},
		{reg("f"), link("g", "f"), reg("g")},
		{{Name: "pax_global_header", Typeflag: tar.TypeXGlobalHeader}, reg("ok")},
	} {
		f.Add(fuzzTar(entries, map[string]string{"model/weights.bin": "w", "x/y/t": "pwned", "x/t": "pwned", "g": "pwned"}))
	}
	// a PAX sparse file: 1 TiB of holes in a few bytes of archive
	f.Add(fuzzTar([]tar.Header{{Name: "holes", Typeflag: tar.TypeReg, Format: tar.FormatPAX, PAXRecords: map[string]string{
		"GNU.sparse.major": "0", "GNU.sparse.minor": "1", "GNU.sparse.realsize": "1099511627776", "GNU.sparse.map": "0,0"}}}, nil))
	f.Add([]byte{0x1f, 0x8b, 0, 0})
	f.Add([]byte{})

	f.Fuzz(checkUntar)
}

// FuzzUntarEntries is FuzzUntar over archives the mutator builds from
// lines "TYPE NAME [LINK]" (TYPE: d dir, f file, l symlink, h hard link, c
// device), so that it explores names and links rather than tar's framing.
func FuzzUntarEntries(f *testing.F) {
	for _, s := range []string{
		"d model/\nf model/weights.bin\nl model/latest weights.bin",
		"d x/\nd x/y/\nl x/y/s ..\nl x/y/t s/../../..\nf x/y/t",
		"d x/\nl x/s ..\nl x/t s/../outside\nf x/t",
		"d a/\nd a/b/\nl a/b/l ../x\nh l a/b/l",
		"l d .\nf d/x",
		"f f\nh g f\nf g",
		"l a b\nl b a\nf a",
		"c dev",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, program string) {
		var entries []tar.Header
		for _, line := range strings.Split(program, "\n") {
			fields := strings.Fields(line)
			if len(fields) < 2 || len(entries) > 32 {
				continue
			}
			h := tar.Header{Name: fields[1], Mode: 0o644}
			if len(fields) > 2 {
				h.Linkname = fields[2]
			}
			switch fields[0] {
			case "d":
				h.Typeflag, h.Mode = tar.TypeDir, 0o755
			case "f":
				h.Typeflag = tar.TypeReg
			case "l":
				h.Typeflag = tar.TypeSymlink
			case "h":
				h.Typeflag = tar.TypeLink
			case "c":
				h.Typeflag = tar.TypeChar
			default:
				continue
			}
			entries = append(entries, h)
		}
		bodies := map[string]string{}
		for _, h := range entries {
			bodies[h.Name] = "pwned"
		}
		checkUntar(t, fuzzTar(entries, bodies))
	})
}

// checkUntar extracts data into a directory inside a sandbox and checks
// that nothing outside that directory changed.
func checkUntar(t *testing.T, data []byte) {
	sandbox := t.TempDir()
	outside := filepath.Join(sandbox, "outside")
	if err := os.WriteFile(outside, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(sandbox, "a", "b", "dest")
	if err := os.MkdirAll(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(sandbox, "archive.tar")
	if err := os.WriteFile(archive, data, 0o644); err != nil {
		t.Fatal(err)
	}
	err := untar(archive, dest)

	// Outside dest: exactly what was there.
	want := map[string]bool{"a": true, "a/b": true, "outside": true, "archive.tar": true}
	filepath.Walk(sandbox, func(p string, fi os.FileInfo, werr error) error {
		rel, _ := filepath.Rel(sandbox, p)
		if p == sandbox || rel == "a/b/dest" || strings.HasPrefix(rel, "a/b/dest/") {
			return nil
		}
		if !want[rel] {
			t.Errorf("extraction (err %v) created %s outside the target", err, rel)
		}
		return nil
	})
	if b, _ := os.ReadFile(outside); string(b) != "keep" {
		t.Errorf("a file outside the target was written (err %v)", err)
	}
	if b, _ := os.ReadFile(archive); !bytes.Equal(b, data) {
		t.Errorf("the archive itself was written (err %v)", err)
	}
	outFI, _ := os.Stat(outside)
	realDest, _ := filepath.EvalSymlinks(dest)
	filepath.Walk(dest, func(p string, fi os.FileInfo, werr error) error {
		if werr != nil || p == dest {
			return nil
		}
		switch m := fi.Mode(); {
		case m&os.ModeSymlink != 0:
			if r, err := filepath.EvalSymlinks(p); err == nil && r != realDest && !strings.HasPrefix(r, realDest+string(filepath.Separator)) {
				t.Errorf("symlink %s resolves outside the target, to %s", p, r)
			}
		case m&(os.ModeDevice|os.ModeNamedPipe|os.ModeSocket|os.ModeCharDevice) != 0:
			t.Errorf("%s is a special file (%v)", p, m)
		case m.IsRegular() && os.SameFile(fi, outFI):
			t.Errorf("%s is a hard link to a file outside the target", p)
		}
		return nil
	})
}
