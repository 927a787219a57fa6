package worker

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// extractInto unpacks the tar or tar.gz archive at archive into dir/<stem>,
// where stem is the archive name without .tar.gz/.tgz/.tar. It unpacks into
// a staging directory first and exchanges it with the old tree in one step
// (renameat2 RENAME_EXCHANGE), so readers see the old tree or the new one,
// never none. Entries that would escape the directory (absolute
// paths, "..", links pointing outside) are refused, and so are devices.
func extractInto(dir, archive, name string) (string, error) {
	stem := name
	for _, ext := range []string{".tar.gz", ".tgz", ".tar"} {
		if strings.HasSuffix(stem, ext) {
			stem = strings.TrimSuffix(stem, ext)
			break
		}
	}
	if stem == "" || stem == name {
		stem = name + ".d"
	}
	staging, err := os.MkdirTemp(dir, tmpPrefix+"extract-")
	if err != nil {
		return "", explainFS(err, dir)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(staging)
		}
	}()
	if err := untar(archive, staging); err != nil {
		return "", fmt.Errorf("extracting %s: %w", name, err)
	}
	if err := syncDir(staging); err != nil {
		return "", explainFS(err, dir)
	}
	target := filepath.Join(dir, stem)
	if _, err := os.Lstat(target); err == nil {
		// Exchange the trees in one step: a reader sees the old tree or the
		// new one, never none. staging then holds the old tree.
		err := unix.Renameat2(unix.AT_FDCWD, staging, unix.AT_FDCWD, target, unix.RENAME_EXCHANGE)
		if err == nil {
			os.RemoveAll(staging)
			return stem, explainFS(syncDir(dir), dir)
		}
		if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EOPNOTSUPP) {
			return "", explainFS(err, dir)
		}
		// The file system cannot exchange (e.g. NFS): two renames, with a
		// short moment without the tree.
		return stem, swapByRenames(dir, staging, target)
	}
	if err := os.Rename(staging, target); err != nil {
		return "", explainFS(err, dir)
	}
	ok = true
	return stem, explainFS(syncDir(dir), dir)
}

// swapByRenames moves target aside, staging into its place, and removes the
// old tree; on failure the old tree is put back.
func swapByRenames(dir, staging, target string) error {
	old := filepath.Join(dir, tmpPrefix+"old-"+filepath.Base(staging))
	if err := os.Rename(target, old); err != nil {
		return explainFS(err, dir)
	}
	if err := os.Rename(staging, target); err != nil {
		os.Rename(old, target) // put the previous tree back
		return explainFS(err, dir)
	}
	os.RemoveAll(old)
	return explainFS(syncDir(dir), dir)
}

func untar(archive, dest string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var r io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return err
		}
		defer gz.Close()
		r = gz
	}
	// Whatever stops the extraction, no symlink that leads out stays.
	return errors.Join(extractEntries(tar.NewReader(r), dest), removeEscapingLinks(dest))
}

// extractEntries writes the archive's entries under dest, refusing what
// could escape it or expand without bound.
func extractEntries(tr *tar.Reader, dest string) error {
	found := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("not a valid tar archive: %w", err)
		}
		found = true
		if h.Typeflag == tar.TypeGNUSparse || hasSparseRecords(h) {
			// A sparse entry's holes expand on extraction: a few bytes of
			// archive could ask for terabytes of zeros.
			return fmt.Errorf("entry %q: sparse files are not allowed in an artifact", h.Name)
		}
		target, err := safeJoin(dest, h.Name)
		if err != nil {
			return err
		}
		mode := os.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, mode|0o700); err != nil {
				return explainFS(err, dest)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return explainFS(err, dest)
			}
			// An entry of the same name (a symlink, say) is replaced, never
			// written through.
			if fi, err := os.Lstat(target); err == nil && !fi.IsDir() {
				if err := os.Remove(target); err != nil {
					return explainFS(err, dest)
				}
			}
			out, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY|unix.O_NOFOLLOW, mode)
			if err != nil {
				return fmt.Errorf("entry %q: %w", h.Name, explainFS(err, dest))
			}
			if _, err := io.Copy(fsWriter{out}, tr); err != nil {
				out.Close()
				return explainFS(err, dest)
			}
			if err := out.Close(); err != nil {
				return explainFS(err, dest)
			}
		case tar.TypeSymlink:
			// The link must resolve inside dest, wherever it is placed.
			linkTarget := h.Linkname
			if !filepath.IsAbs(linkTarget) {
				linkTarget = filepath.Join(filepath.Dir(target), linkTarget)
			} else {
				return fmt.Errorf("entry %q: symlink to an absolute path %q is not allowed", h.Name, h.Linkname)
			}
			if !within(dest, linkTarget) {
				return fmt.Errorf("entry %q: symlink %q points outside the artifact directory", h.Name, h.Linkname)
			}
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return explainFS(err, dest)
			}
			if err := os.Symlink(h.Linkname, target); err != nil {
				return explainFS(err, dest)
			}
		case tar.TypeLink:
			src, err := safeJoin(dest, h.Linkname)
			if err != nil {
				return fmt.Errorf("entry %q: hard link: %w", h.Name, err)
			}
			// Only to a regular file: a hard link to a symlink would move
			// the symlink where it means something else.
			if fi, err := os.Lstat(src); err != nil || !fi.Mode().IsRegular() {
				return fmt.Errorf("entry %q: hard link to %q, which is not a regular file extracted before it", h.Name, h.Linkname)
			}
			if err := os.Link(src, target); err != nil {
				return explainFS(err, dest)
			}
		case tar.TypeXGlobalHeader:
			// pax global header (git archive writes one): no file
		default:
			return fmt.Errorf("entry %q: type %q (devices, fifos …) is not allowed in an artifact", h.Name, string(h.Typeflag))
		}
	}
	if !found {
		return errors.New("the archive is empty")
	}
	return nil
}

// removeEscapingLinks checks every symlink under dest in the finished (or
// abandoned) tree. Each symlink was checked as text when it was written;
// followed through the symlinks around it, it must stay inside too (a later
// link can change where an earlier one leads: "x/0 -> s/../.." is inside
// as text until "x/s -> .." arrives). Every link that leads out is removed,
// so not even a failed extraction leaves one behind; the first is reported.
func removeEscapingLinks(dest string) error {
	var escape error
	err := filepath.WalkDir(dest, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.Type()&os.ModeSymlink == 0 {
			return err
		}
		if !resolvesWithin(dest, p) {
			rel, _ := filepath.Rel(dest, p)
			if escape == nil {
				escape = fmt.Errorf("entry %q: the symlink leads outside the artifact directory through other symlinks", rel)
			}
			if err := os.Remove(p); err != nil {
				return explainFS(err, dest)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return escape
}

func hasSparseRecords(h *tar.Header) bool {
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// resolvesWithin follows path p (inside root) component by component, through
// every symlink on the way, and says whether it stays inside root. Parts
// that do not exist are taken as they read.
func resolvesWithin(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return false
	}
	todo := strings.Split(filepath.ToSlash(rel), "/")
	var at []string // the resolved components below root
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(at) == 0 {
				return false
			}
			at = at[:len(at)-1]
			continue
		}
		next := filepath.Join(append([]string{root}, append(at, c)...)...)
		fi, err := os.Lstat(next)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			at = append(at, c)
			continue
		}
		if hops++; hops > 64 {
			return false // a loop
		}
		to, err := os.Readlink(next)
		if err != nil || filepath.IsAbs(to) {
			return false
		}
		todo = append(strings.Split(filepath.ToSlash(to), "/"), todo...)
	}
	return true
}

// safeJoin joins a relative archive path to dest, refusing absolute paths,
// ".." components and paths that pass through a symlink already extracted.
func safeJoin(dest, name string) (string, error) {
	if name == "" || filepath.IsAbs(name) || strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("entry %q: absolute paths are not allowed", name)
	}
	for _, part := range strings.Split(filepath.ToSlash(name), "/") {
		if part == ".." {
			return "", fmt.Errorf("entry %q: \"..\" is not allowed", name)
		}
	}
	target := filepath.Join(dest, name)
	if !within(dest, target) {
		return "", fmt.Errorf("entry %q escapes the artifact directory", name)
	}
	// A directory component that is a symlink could lead outside.
	rel, _ := filepath.Rel(dest, filepath.Dir(target))
	cur := dest
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		if part == "." || part == "" {
			continue
		}
		cur = filepath.Join(cur, part)
		if fi, err := os.Lstat(cur); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return "", fmt.Errorf("entry %q: goes through the symlink %q", name, part)
		}
	}
	return target, nil
}

func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, filepath.Clean(p))
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
