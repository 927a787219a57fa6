// Command archive writes a reproducible release archive: the same files give
// the same bytes, whoever builds it and whenever.
//
//	archive -o coral_v0.1.0_linux_amd64.tar.gz -mtime 1764225600 bin/kubectl-coral LICENSE README.md
//
// Every file goes to the archive's top level under its base name (krew's
// manifest and users' `tar -xzf` both expect a flat archive). Entries are
// sorted by name, carry the given modification time, uid and gid 0 and no
// user or group names, and mode 0755 when the source file is executable,
// 0644 otherwise. The format follows the name: .tar.gz or .zip.
package main

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// file is one archive entry.
type file struct {
	name string // base name in the archive
	path string // source on disk
	mode os.FileMode
	size int64
}

func main() {
	out := flag.String("o", "", "archive to write: NAME.tar.gz or NAME.zip")
	mtime := flag.Int64("mtime", 0, "modification time of every entry, in seconds since the epoch (e.g. $SOURCE_DATE_EPOCH)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s -o ARCHIVE [-mtime SECONDS] FILE...\n", filepath.Base(os.Args[0]))
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(*out, time.Unix(*mtime, 0).UTC(), flag.Args()); err != nil {
		fmt.Fprintf(os.Stderr, "archive: %v\n", err)
		os.Exit(1)
	}
}

func run(out string, mtime time.Time, paths []string) error {
	if out == "" || len(paths) == 0 {
		return errors.New("need -o ARCHIVE and at least one file")
	}
	files, err := collect(paths)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	switch {
	case strings.HasSuffix(out, ".tar.gz"):
		err = writeTarGz(tmp, files, mtime)
	case strings.HasSuffix(out, ".zip"):
		err = writeZip(tmp, files, mtime)
	default:
		err = fmt.Errorf("%s: the name must end in .tar.gz or .zip", out)
	}
	if err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}

// collect stats the files, sorted by their names in the archive.
func collect(paths []string) ([]file, error) {
	var files []file
	seen := map[string]string{}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s: not a regular file", p)
		}
		name := filepath.Base(p)
		if prev, dup := seen[name]; dup {
			return nil, fmt.Errorf("%s and %s would both be %q in the archive", prev, p, name)
		}
		seen[name] = p
		mode := os.FileMode(0o644)
		if fi.Mode()&0o111 != 0 {
			mode = 0o755
		}
		files = append(files, file{name: name, path: p, mode: mode, size: fi.Size()})
	}
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.name, b.name) })
	return files, nil
}

func writeTarGz(w io.Writer, files []file, mtime time.Time) error {
	// No name and a zero time in the gzip header: it is the same for every build.
	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	for _, f := range files {
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     f.name,
			Mode:     int64(f.mode),
			Size:     f.size,
			ModTime:  mtime,
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if err := copyFile(tw, f.path); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func writeZip(w io.Writer, files []file, mtime time.Time) error {
	zw := zip.NewWriter(w)
	for _, f := range files {
		hdr := &zip.FileHeader{Name: f.name, Method: zip.Deflate, Modified: mtime}
		hdr.SetMode(f.mode)
		fw, err := zw.CreateHeader(hdr)
		if err != nil {
			return err
		}
		if err := copyFile(fw, f.path); err != nil {
			return err
		}
	}
	return zw.Close()
}

func copyFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}
