package mirror

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	mirrorlib "github.com/coral-dev/coral/pkg/mirror"
	"github.com/coral-dev/coral/pkg/progress"
	"github.com/coral-dev/coral/pkg/report"
)

// printTable writes SOURCE DESTINATION STATUS DIGEST SIZE TIME MESSAGE; wide
// shows full digests, the source digest when it differs, and the platforms.
func printTable(w io.Writer, rep *mirrorlib.Report, wide bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if wide {
		fmt.Fprintln(tw, "SOURCE\tDESTINATION\tSTATUS\tDIGEST\tSOURCE DIGEST\tPLATFORMS\tSIZE\tTIME\tMESSAGE")
	} else {
		fmt.Fprintln(tw, "SOURCE\tDESTINATION\tSTATUS\tDIGEST\tSIZE\tTIME\tMESSAGE")
	}
	for _, r := range rep.Results {
		msg := strings.Join(strings.Fields(r.Message), " ")
		if wide {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Source, r.Destination, r.Status,
				dash(r.Digest), dash(r.SourceDigest), dash(strings.Join(r.Platforms, ",")), report.HumanBytes(r.Bytes), seconds(r.Seconds), msg)
			continue
		}
		if len(msg) > 100 {
			msg = msg[:99] + "…"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Source, r.Destination, r.Status,
			dash(report.ShortDigest(r.Digest)), report.HumanBytes(r.Bytes), seconds(r.Seconds), msg)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	s := rep.Summary
	var err error
	if rep.DryRun {
		_, err = fmt.Fprintf(w, "\n%d %s: %d to copy (%s to send), %d present. Dry run: nothing was written.\n",
			s.Total, plural(s.Total, "image", "images"), s.Planned, humanOrZero(s.Bytes), s.Present)
	} else {
		_, err = fmt.Fprintf(w, "\n%d %s: %d copied, %d present, %d failed; %s sent in %s.\n",
			s.Total, plural(s.Total, "image", "images"), s.Copied, s.Present, s.Failed, humanOrZero(s.Bytes), seconds(s.Seconds))
	}
	return err
}

// printPlan says where each image goes, on stderr, before anything is sent.
func printPlan(w io.Writer, plan *mirrorlib.Plan, dryRun bool) {
	todo, present := 0, 0
	for _, it := range plan.Items {
		if it.Present {
			present++
		} else {
			todo++
		}
	}
	verb := "Mirroring"
	if dryRun {
		verb = "Dry run: would mirror"
	}
	fmt.Fprintf(w, "%s %d %s to %s: %d to copy, %d already present\n",
		verb, len(plan.Items), plural(len(plan.Items), "image", "images"), plan.Destination, todo, present)
	for _, it := range plan.Items {
		if it.Present {
			continue
		}
		fmt.Fprintf(w, "  %s → %s\n", it.Original, it.Destination)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func seconds(s float64) string {
	if s <= 0 {
		return "-"
	}
	return (time.Duration(s * float64(time.Second))).Round(10 * time.Millisecond).String()
}

func humanOrZero(n int64) string {
	if n <= 0 {
		return "0 B"
	}
	return report.HumanBytes(n)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// copyProgress shows a copy's progress: a line per finished image, and a
// status line with a bar of images copied (a heartbeat line when not on a
// terminal) while bytes flow.
type copyProgress struct {
	out *progress.Printer
}

// update is the library's progress callback.
func (c copyProgress) update(pr mirrorlib.Progress) {
	var lines []string
	for _, r := range pr.Finished {
		if r.Status == mirrorlib.StatusFailed {
			lines = append(lines, fmt.Sprintf("  failed  %s → %s: %s", r.Source, r.Destination, strings.Join(strings.Fields(r.Message), " ")))
			continue
		}
		lines = append(lines, fmt.Sprintf("  copied  %s → %s  %s in %s", r.Source, r.Destination, humanOrZero(r.Bytes), seconds(r.Seconds)))
	}
	if pr.Done >= pr.Images {
		c.out.Update("", lines...) // all done: no status line after the last lines
		return
	}
	rate := ""
	if secs := pr.Elapsed.Seconds(); secs > 0 && pr.Bytes > 0 {
		rate = fmt.Sprintf(" · %s/s", report.HumanBytes(int64(float64(pr.Bytes)/secs)))
	}
	line := fmt.Sprintf("[%d/%d images] %s sent%s", pr.Done, pr.Images, humanOrZero(pr.Bytes), rate)
	if c.out.Mode() != progress.Bar { // a bar shows the time itself
		line += " · " + pr.Elapsed.Round(time.Second).String()
	}
	if pr.Failed > 0 {
		line += fmt.Sprintf(" · %d failed", pr.Failed)
	}
	c.out.Count(pr.Done, pr.Images)
	c.out.Update(line, lines...)
}
