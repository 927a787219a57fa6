package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
)

// FormatName prints one line per thing a report is about (see Namer).
const FormatName = "name"

// Namer is a report that knows what -o name prints: for a prefetch, the
// nodes that hold every item (node/NAME); for a mirror, the destination
// references, digest-pinned — one a line, for the next command of a pipe.
type Namer interface {
	Names() []string
}

// templateFormats are cli-runtime's template printers (PrintFlags), as in kubectl.
var templateFormats = []string{"jsonpath", "jsonpath-as-json", "jsonpath-file", "go-template", "go-template-file", "template", "templatefile"}

// isTemplate says whether f is FORMAT=ARG for one of templateFormats.
func isTemplate(f string) bool {
	name, _, ok := strings.Cut(f, "=")
	if !ok {
		return false
	}
	for _, t := range templateFormats {
		if name == t {
			return true
		}
	}
	return false
}

// templatePrinter builds the printer of a template format through
// cli-runtime's PrintFlags: the same parsing and errors as kubectl.
func templatePrinter(f string) (printers.ResourcePrinter, error) {
	pf := genericclioptions.NewPrintFlags("")
	pf.OutputFormat = &f
	p, err := pf.ToPrinter()
	if err != nil {
		return nil, fmt.Errorf("-o %s: %w", f, err)
	}
	return p, nil
}

// printTemplate renders v (a report) with a template format. The report is
// handed to the printer as its JSON document, so fields are named as in -o json.
func printTemplate(w io.Writer, f string, v any) error {
	p, err := templatePrinter(f)
	if err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	return p.PrintObj(&unstructured.Unstructured{Object: m}, w)
}

// PrintObject prints Kubernetes objects (what a dry run would create)
// through cli-runtime's PrintFlags: json, yaml, name, jsonpath, go-template.
func PrintObject(w io.Writer, format string, obj runtime.Object) error {
	pf := genericclioptions.NewPrintFlags("created (dry run)")
	pf.OutputFormat = &format
	p, err := pf.ToPrinter()
	if err != nil {
		return fmt.Errorf("-o %s: %w", format, err)
	}
	if format == FormatName && meta.IsListType(obj) {
		items, err := meta.ExtractList(obj)
		if err != nil {
			return err
		}
		for _, it := range items {
			if err := p.PrintObj(it, w); err != nil {
				return err
			}
		}
		return nil
	}
	return p.PrintObj(obj, w)
}
