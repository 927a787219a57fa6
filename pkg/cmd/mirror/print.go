package mirror

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	mirrorlib "github.com/coral-dev/coral/pkg/mirror"
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

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressPrinter draws progress on stderr: a status line redrawn in place
// on a terminal, plain lines otherwise (one per finished image, and a
// heartbeat while bytes flow).
type progressPrinter struct {
	w        io.Writer
	tty      bool
	mu       sync.Mutex
	drawn    bool
	lastBeat time.Time
}

func newProgressPrinter(w io.Writer, tty bool) *progressPrinter {
	return &progressPrinter{w: w, tty: tty, lastBeat: time.Now()}
}

func (p *progressPrinter) interval() time.Duration {
	if p.tty {
		return 200 * time.Millisecond
	}
	return time.Second
}

// status draws a transient line (terminals only).
func (p *progressPrinter) status(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw(s)
}

func (p *progressPrinter) draw(s string) {
	if !p.tty {
		return
	}
	fmt.Fprintf(p.w, "\r\x1b[2K%s", s)
	p.drawn = true
}

func (p *progressPrinter) clearLocked() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[2K")
		p.drawn = false
	}
}

func (p *progressPrinter) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
}

func (p *progressPrinter) done() { p.clear() }

func (p *progressPrinter) update(pr mirrorlib.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(pr.Finished) > 0 {
		p.clearLocked()
		for _, r := range pr.Finished {
			if r.Status == mirrorlib.StatusFailed {
				fmt.Fprintf(p.w, "  failed  %s → %s: %s\n", r.Source, r.Destination, strings.Join(strings.Fields(r.Message), " "))
				continue
			}
			fmt.Fprintf(p.w, "  copied  %s → %s  %s in %s\n", r.Source, r.Destination, humanOrZero(r.Bytes), seconds(r.Seconds))
		}
		p.lastBeat = time.Now()
	}
	rate := ""
	if secs := pr.Elapsed.Seconds(); secs > 0 && pr.Bytes > 0 {
		rate = fmt.Sprintf(" · %s/s", report.HumanBytes(int64(float64(pr.Bytes)/secs)))
	}
	line := fmt.Sprintf("[%d/%d images] %s sent%s · %s", pr.Done, pr.Images, humanOrZero(pr.Bytes), rate, pr.Elapsed.Round(time.Second))
	if pr.Failed > 0 {
		line += fmt.Sprintf(" · %d failed", pr.Failed)
	}
	if p.tty {
		if pr.Done < pr.Images {
			p.draw(line)
		}
		return
	}
	if pr.Done < pr.Images && time.Since(p.lastBeat) >= 10*time.Second {
		fmt.Fprintln(p.w, line)
		p.lastBeat = time.Now()
	}
}
