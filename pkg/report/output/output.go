// Package output prints Coral's reports and the objects a dry run would
// create, as -o asks: Coral's own tables, json (in the report's field
// order) and yaml (keys sorted, as kubectl's), and kubectl's printers
// (cli-runtime PrintFlags) for name, jsonpath and go-template. It is kept
// apart from pkg/report, whose wire format the worker imports: the worker
// image must not carry cli-runtime.
package output

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/coral-dev/coral/pkg/report"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/yaml"
)

// Formats lists the -o values, for help text and validation.
var Formats = []string{report.FormatWide, report.FormatJSON, report.FormatYAML, report.FormatName, "jsonpath=…", "go-template=…"}

// ValidateFormat returns an error naming the accepted values; a template
// that does not parse is an error here, before anything runs.
func ValidateFormat(f string) error {
	switch f {
	case report.FormatTable, report.FormatWide, report.FormatJSON, report.FormatYAML, report.FormatName:
		return nil
	}
	if isTemplate(f) {
		_, err := templatePrinter(f)
		return err
	}
	return fmt.Errorf("unknown output format %q for -o/--output: use one of %s (or leave it unset for a table)", f, strings.Join(Formats, ", "))
}

// Print writes v (a report) in the given format; tables are drawn by table.
// json keeps the report's field order (its versioned schema), yaml sorts
// the keys (sigs.k8s.io/yaml, as kubectl);
// templates go through cli-runtime's printers; name needs a Namer.
func Print(w io.Writer, format string, v any, table func(io.Writer, bool) error) error {
	switch format {
	case report.FormatJSON:
		return encodeJSON(w, v)
	case report.FormatYAML:
		return encodeYAML(w, v, yamlChunk)
	case report.FormatTable, report.FormatWide:
		return table(w, format == report.FormatWide)
	case report.FormatName:
		n, ok := v.(report.Namer)
		if !ok {
			return fmt.Errorf("-o name is not available here")
		}
		for _, s := range n.Names() {
			if _, err := fmt.Fprintln(w, s); err != nil {
				return err
			}
		}
		return nil
	}
	if isTemplate(format) {
		return printTemplate(w, format, v)
	}
	return ValidateFormat(format)
}

// encodeJSON writes v byte for byte as a json.Encoder indenting by two
// spaces does. A prefetch report's results are written one at a time: the
// encoder holds the whole document twice (marshalled, then indented), and
// a 5000-node run of three images grew the heap 23.7 MB encoding it that
// way against 5.0 MB row by row (BenchmarkEncodeJSONReport).
func encodeJSON(w io.Writer, v any) error {
	rep, ok := v.(*report.PrefetchReport)
	if !ok || len(rep.Results) == 0 {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	// A string's newlines are escaped: only the field itself can be a
	// newline, its indent and its name.
	before, after, err := aroundResults(rep, func(v any) ([]byte, error) { return json.MarshalIndent(v, "", "  ") }, "\n  \"results\": ", "null")
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	bw.Write(before)
	bw.WriteByte('[')
	for i := range rep.Results {
		row, err := json.MarshalIndent(&rep.Results[i], "    ", "  ")
		if err != nil {
			return err
		}
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.WriteString("\n    ")
		bw.Write(row)
	}
	bw.WriteString("\n  ]")
	bw.Write(after)
	bw.WriteByte('\n')
	return bw.Flush()
}

// aroundResults marshals rep without its results and cuts the document
// around the results field's null value: before ends with field, after
// starts past null.
func aroundResults(rep *report.PrefetchReport, marshal func(any) ([]byte, error), field, null string) (before, after []byte, err error) {
	head := *rep
	head.Results = nil
	doc, err := marshal(&head)
	if err != nil {
		return nil, nil, err
	}
	at := bytes.Index(doc, []byte(field+null))
	if at < 0 {
		return nil, nil, fmt.Errorf("encoding the report: no results field in %.80q", doc)
	}
	return doc[:at+len(field)], doc[at+len(field)+len(null):], nil
}

// yamlChunk is how many results encodeYAML converts at once.
const yamlChunk = 256

// encodeYAML writes v byte for byte as sigs.k8s.io/yaml's Marshal does. It
// goes through JSON and a generic tree of maps: a 5000-node report of three
// images grew the heap 125 MB that way (BenchmarkEncodeYAMLReport), so a
// prefetch report's results are converted chunk rows at a time. Each chunk
// is marshalled under the same top-level key, "results", as in the whole
// document: its rows then sit in the same columns, and the emitter folds
// long strings at the same places.
func encodeYAML(w io.Writer, v any, chunk int) error {
	rep, ok := v.(*report.PrefetchReport)
	if !ok || len(rep.Results) == 0 {
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	// A key at column 0 is a key of the top-level mapping: a string's own
	// lines are indented, or escaped inside quotes.
	before, after, err := aroundResults(rep, yaml.Marshal, "\nresults:", " null\n")
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	bw.Write(before)
	bw.WriteByte('\n')
	for i := 0; i < len(rep.Results); i += chunk {
		part := struct {
			Results []report.Result `json:"results"`
		}{rep.Results[i:min(i+chunk, len(rep.Results))]}
		b, err := yaml.Marshal(&part)
		if err != nil {
			return err
		}
		rows, ok := bytes.CutPrefix(b, []byte("results:\n"))
		if !ok {
			return fmt.Errorf("encoding the report: results %d-%d: unexpected %.40q", i, i+len(part.Results), b)
		}
		bw.Write(rows)
	}
	bw.Write(after)
	return bw.Flush()
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
	if format == report.FormatName && meta.IsListType(obj) {
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
