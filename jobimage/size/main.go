// Command size prints what the worker image weighs: per platform, the bytes a
// registry stores for it (compressed layers, config, manifest), read from the
// OCI layout that jobimage/assemble writes; and, given a binary built without
// -s -w, where the binary's bytes go, by package and by module. `make
// worker-size` runs it.
//
//	go run ./jobimage/size --oci-layout bin/worker/oci-layout --symbols bin/worker/coral-worker-linux-amd64.sym --top 10
//
// Attribution: a symbol's bytes go to its package (code and data in the file;
// never bss, which takes no room in it). The function tables (.gopclntab)
// are spread over packages in proportion to their code, so the totals are
// estimates; type descriptors and strings, which the symbol table does not
// name, are left out and the figure says how much that is.
package main

import (
	"debug/buildinfo"
	"debug/elf"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

func main() {
	ociLayout := flag.String("oci-layout", "", "an OCI layout written by jobimage/assemble: print the stored size per platform")
	symbols := flag.String("symbols", "", "a binary built without -s -w: print where its bytes go")
	top := flag.Int("top", 10, "how many packages and modules to list")
	flag.Parse()
	if *ociLayout == "" && *symbols == "" {
		fmt.Fprintln(os.Stderr, "size: give --oci-layout DIR and/or --symbols BINARY")
		os.Exit(2)
	}
	if err := run(os.Stdout, *ociLayout, *symbols, *top); err != nil {
		fmt.Fprintln(os.Stderr, "size:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, ociLayout, symbols string, top int) error {
	if ociLayout != "" {
		if err := printImage(w, ociLayout); err != nil {
			return err
		}
	}
	if symbols != "" {
		return printBinary(w, symbols, top)
	}
	return nil
}

// printImage prints, per platform of every index in the layout, the bytes a
// registry stores for it.
func printImage(w io.Writer, dir string) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		return err
	}
	root, err := p.ImageIndex()
	if err != nil {
		return err
	}
	rm, err := root.IndexManifest()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "platform\tlayers (compressed)\tconfig\tmanifest\tstored\tuncompressed\tlayer media type\t")
	for _, d := range rm.Manifests {
		idx, err := root.ImageIndex(d.Digest)
		if err != nil {
			return fmt.Errorf("%s: %w", d.Digest, err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		for _, m := range im.Manifests {
			img, err := idx.Image(m.Digest)
			if err != nil {
				return fmt.Errorf("%s: %w", m.Digest, err)
			}
			s, err := imageSizes(img)
			if err != nil {
				return fmt.Errorf("%s: %w", platform(m.Platform), err)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d B\t%d B\t%s\t%s\t%s\t\n", platform(m.Platform), mb(s.layers), s.config, m.Size, mb(s.layers+s.config+m.Size), mb(s.uncompressed), s.mediaTypes)
		}
	}
	return tw.Flush()
}

type sizes struct {
	layers, config, uncompressed int64
	mediaTypes                   string
}

func imageSizes(img v1.Image) (sizes, error) {
	var s sizes
	m, err := img.Manifest()
	if err != nil {
		return s, err
	}
	s.config = m.Config.Size
	var mts []string
	for _, d := range m.Layers {
		s.layers += d.Size
		mts = append(mts, string(d.MediaType))
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return s, err
		}
		rc, err := l.Uncompressed()
		if err != nil {
			return s, err
		}
		n, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return s, err
		}
		s.uncompressed += n
	}
	s.mediaTypes = strings.Join(mts, ",")
	return s, nil
}

func platform(p *v1.Platform) string {
	if p == nil {
		return "?"
	}
	return p.OS + "/" + p.Architecture
}

func mb(n int64) string { return fmt.Sprintf("%.2f MB", float64(n)/1e6) }

// printBinary prints the binary's loaded sections and its top packages and
// modules.
func printBinary(w io.Writer, path string, top int) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	syms, err := f.Symbols()
	if err != nil {
		return fmt.Errorf("%s: %w (build it without -s -w)", path, err)
	}
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return err
	}

	var loaded, pclntab int64
	fmt.Fprintf(w, "\n%s, its loaded sections (what the stripped binary holds):\n", path)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, s := range f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Type == elf.SHT_NOBITS {
			continue
		}
		loaded += int64(s.Size)
		if s.Name == ".gopclntab" {
			pclntab = int64(s.Size)
		}
		if s.Size >= 64<<10 {
			fmt.Fprintf(tw, "%s\t%s\t\n", s.Name, mb(int64(s.Size)))
		}
	}
	fmt.Fprintf(tw, "all\t%s\t\n", mb(loaded))
	tw.Flush()

	var byPkg []symbolBytes
	for _, s := range syms {
		if s.Section == elf.SHN_UNDEF || int(s.Section) >= len(f.Sections) || s.Size == 0 {
			continue
		}
		sec := f.Sections[s.Section]
		if sec.Type == elf.SHT_NOBITS || sec.Name == ".gopclntab" {
			continue
		}
		byPkg = append(byPkg, symbolBytes{pkg: packageOf(s.Name), size: int64(s.Size), code: sec.Flags&elf.SHF_EXECINSTR != 0})
	}
	pkgs := attribute(byPkg, pclntab, func(p string) string { return p })
	var attributed int64
	for _, r := range pkgs {
		attributed += r.total
	}
	fmt.Fprintf(w, "\n%s of the %s are attributed (the rest: type descriptors and strings, which the symbol table does not name)\n", mb(attributed), mb(loaded))
	printRows(w, "package", pkgs, top)
	printRows(w, "module", attribute(byPkg, pclntab, moduleOf(bi)), top)
	return nil
}

type symbolBytes struct {
	pkg  string
	size int64
	code bool
}

type row struct {
	name              string
	code, data, total int64
}

// attribute sums symbols by group(package) and spreads the function tables
// over the groups by their share of the code.
func attribute(syms []symbolBytes, pclntab int64, group func(string) string) []row {
	idx := map[string]int{}
	var rows []row
	var code int64
	for _, s := range syms {
		g := group(s.pkg)
		i, ok := idx[g]
		if !ok {
			i = len(rows)
			idx[g] = i
			rows = append(rows, row{name: g})
		}
		if s.code {
			rows[i].code += s.size
			code += s.size
		} else {
			rows[i].data += s.size
		}
	}
	for i := range rows {
		rows[i].total = rows[i].code + rows[i].data
		if code > 0 {
			rows[i].total += pclntab * rows[i].code / code
		}
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].total != rows[j].total {
			return rows[i].total > rows[j].total
		}
		return rows[i].name < rows[j].name
	})
	return rows
}

func printRows(w io.Writer, unit string, rows []row, top int) {
	fmt.Fprintf(w, "\ntop %d of %d by %s (total = code + data + its share of the function tables, an estimate):\n", min(top, len(rows)), len(rows), unit)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "total\tcode\tdata\t%s\t\n", unit)
	for i, r := range rows {
		if i == top {
			break
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", mb(r.total), mb(r.code), mb(r.data), r.name)
	}
	tw.Flush()
}

// packageOf names the package a Go symbol belongs to: "net/http" for
// "net/http.(*Client).Do", "type:.eq.net/http.Client" and
// "go:itab.*net/http.x,io.Reader". Shared blobs ("go:string.*") are named
// "go:string (shared)"; symbols of no package keep their name.
func packageOf(sym string) string {
	s := sym
	for _, p := range []string{"type:.eq.", "type:.hash.", "type:.namedata.", "type:", "go:itab.", "go:info."} {
		if strings.HasPrefix(s, p) {
			s = s[len(p):]
			break
		}
	}
	s = strings.TrimLeft(s, "*[]0123456789")
	if strings.HasPrefix(s, "go:") {
		if i := strings.IndexAny(s, ".*"); i > 0 {
			return s[:i] + " (shared)"
		}
		return s
	}
	end := len(s)
	if i := strings.IndexAny(s, "[(, "); i >= 0 {
		end = i
	}
	slash := strings.LastIndex(s[:end], "/")
	dot := strings.Index(s[slash+1:end], ".")
	if dot < 0 {
		return sym
	}
	return s[:slash+1+dot]
}

// moduleOf maps a package to the module that holds it (the longest module
// path that is a prefix of it) and the rest to "std".
func moduleOf(bi *buildinfo.BuildInfo) func(string) string {
	mods := []string{bi.Main.Path}
	for _, d := range bi.Deps {
		mods = append(mods, d.Path)
	}
	sort.Slice(mods, func(i, j int) bool { return len(mods[i]) > len(mods[j]) })
	return func(pkg string) string {
		for _, m := range mods {
			if pkg == m || strings.HasPrefix(pkg, m+"/") {
				return m
			}
		}
		if strings.HasSuffix(pkg, " (shared)") {
			return pkg
		}
		return "std"
	}
}
