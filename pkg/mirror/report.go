package mirror

import (
	"strings"
	"time"
)

// The report's identity, versioned like a Kubernetes object.
const (
	APIVersion = "coral.dev/v1alpha1"
	ReportKind = "MirrorReport"
)

// Status is what happened to one image.
type Status string

// The statuses of a Result.
const (
	// StatusCopied means the image was written to the destination.
	StatusCopied Status = "Copied"
	// StatusPresent means the destination already held the digest: one HEAD, no writes.
	StatusPresent Status = "Present"
	// StatusFailed means the image could not be copied; Message says why.
	StatusFailed Status = "Failed"
	// StatusPlanned is used by dry runs only: the image would be copied.
	StatusPlanned Status = "Planned"
)

// Report is the outcome of a mirror run (or, with DryRun, its plan).
type Report struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	DryRun     bool     `json:"dryRun,omitempty"`
	Results    []Result `json:"results"`
	Summary    Summary  `json:"summary"`
}

// Result is the outcome for one image.
type Result struct {
	// Source is the image as given (or as expanded from a repository).
	Source string `json:"source"`
	// Destination is where it was (or would be) written.
	Destination string `json:"destination"`
	// Digest is the digest the destination holds (or would hold).
	Digest string `json:"digest,omitempty"`
	// SourceDigest is set when it differs from Digest (a --platform subset).
	SourceDigest string `json:"sourceDigest,omitempty"`
	// Platforms lists the platforms copied when a subset was asked for.
	Platforms []string `json:"platforms,omitempty"`
	Status    Status   `json:"status"`
	// Bytes were sent to the destination (dry run: would be sent).
	Bytes int64 `json:"bytes"`
	// Seconds is how long the copy took.
	Seconds float64 `json:"seconds,omitempty"`
	Message string  `json:"message,omitempty"`
}

// Summary counts results by status.
type Summary struct {
	Total   int   `json:"total"`
	Copied  int   `json:"copied"`
	Present int   `json:"present"`
	Failed  int   `json:"failed"`
	Planned int   `json:"planned,omitempty"`
	Bytes   int64 `json:"bytes"`
	// Seconds is the wall time of the copy.
	Seconds float64 `json:"seconds,omitempty"`
}

func newReport(results []Result, dryRun bool, took time.Duration) *Report {
	r := &Report{APIVersion: APIVersion, Kind: ReportKind, DryRun: dryRun, Results: results}
	r.Summary.Total = len(results)
	for _, res := range results {
		switch res.Status {
		case StatusCopied:
			r.Summary.Copied++
		case StatusPresent:
			r.Summary.Present++
		case StatusFailed:
			r.Summary.Failed++
		case StatusPlanned:
			r.Summary.Planned++
		}
		r.Summary.Bytes += res.Bytes
	}
	if took > 0 {
		r.Summary.Seconds = roundSeconds(took)
	}
	return r
}

func roundSeconds(d time.Duration) float64 {
	return float64(d.Round(time.Millisecond)) / float64(time.Second)
}

// Progress is what a Copy has done so far.
type Progress struct {
	// Images is how many images need copying (not already present).
	Images int
	// Done counts finished images, Failed those of them that failed.
	Done, Failed int
	// Bytes sent to the destination so far.
	Bytes int64
	// Elapsed since Copy started.
	Elapsed time.Duration
	// Finished holds the results that finished since the previous call.
	Finished []Result
}

// Names lists, for -o name, the destination of every image that is there
// (copied or already present; planned in a dry run), pinned to the digest
// it holds: one reference a line, ready for `kubectl coral prefetch images -f -`.
func (r *Report) Names() []string {
	var out []string
	for _, res := range r.Results {
		if res.Status == StatusFailed || res.Destination == "" {
			continue
		}
		ref := res.Destination
		if res.Digest != "" && !strings.Contains(ref, "@") {
			ref += "@" + res.Digest
		}
		out = append(out, ref)
	}
	return out
}
