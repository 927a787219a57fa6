package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Formats accepted by -o.
const (
	FormatTable = ""
	FormatWide  = "wide"
	FormatJSON  = "json"
	FormatYAML  = "yaml"
)

// Names lists the nodes that hold every item of the run (node/NAME), in
// order: what a script hands to the next command.
func (r *PrefetchReport) Names() []string {
	ok := map[string]bool{}
	var order []string
	for _, res := range r.Results {
		if _, seen := ok[res.Node]; !seen {
			ok[res.Node] = true
			order = append(order, res.Node)
		}
		if !res.Status.Succeeded() {
			ok[res.Node] = false
		}
	}
	var out []string
	for _, n := range order {
		if ok[n] {
			out = append(out, "node/"+n)
		}
	}
	return out
}

// PrintTable writes the report as a table: NODE IMAGE STATUS DIGEST SIZE TIME MESSAGE.
// Wide adds the expected digest and attempts, and shows full digests.
func (r *PrefetchReport) PrintTable(w io.Writer, wide bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	col, item := "IMAGE", func(r Result) string { return r.Image }
	if r.Kind == KindArtifactReport {
		col, item = "SOURCE", func(r Result) string { return r.Source }
	}
	if wide {
		fmt.Fprintf(tw, "NODE\t%s\tSTATUS\tDIGEST\tEXPECTED\tSIZE\tTIME\tATTEMPTS\tMESSAGE\n", col)
	} else {
		fmt.Fprintf(tw, "NODE\t%s\tSTATUS\tDIGEST\tSIZE\tTIME\tMESSAGE\n", col)
	}
	for _, res := range r.Results {
		msg := oneLine(res.Message)
		if res.DigestMismatch {
			msg = strings.TrimSpace("DIGEST MISMATCH " + msg)
		}
		if wide {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", res.Node, item(res), res.Status,
				dash(res.Digest), dash(res.ExpectedDigest), HumanBytes(res.SizeBytes), humanSeconds(res), dash(fmt.Sprint(res.Attempts)), msg)
			continue
		}
		if len(msg) > 100 {
			msg = truncate(msg, 100)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", res.Node, item(res), res.Status,
			dash(ShortDigest(res.Digest)), HumanBytes(res.SizeBytes), humanSeconds(res), msg)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	s := r.Summary
	done := fmt.Sprintf("%d pulled", s.Pulled)
	if r.Kind == KindArtifactReport {
		done = fmt.Sprintf("%d downloaded", s.Downloaded)
	}
	_, err := fmt.Fprintf(w, "\n%d nodes, %d results: %s, %d present, %d failed, %d skipped\n", s.Nodes, s.Total, done, s.Present, s.Failed, s.Skipped)
	return err
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func dash(s string) string {
	if s == "" || s == "0" {
		return "-"
	}
	return s
}

func humanSeconds(r Result) string {
	if r.Status == StatusSkipped || r.DurationSeconds == 0 {
		return "-"
	}
	return (time.Duration(r.DurationSeconds * float64(time.Second))).Round(100 * time.Millisecond).String()
}

// ShortDigest shortens "sha256:abcdef…" to "sha256:" and 12 hex digits.
func ShortDigest(d string) string {
	algo, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return d
	}
	return algo + ":" + hex[:12]
}

// HumanBytes prints a size with a binary unit, "-" for zero.
func HumanBytes(n int64) string {
	if n <= 0 {
		return "-"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
