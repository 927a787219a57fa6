// Package report holds Coral's result model — one Result per node and item —
// the wire format in which a worker hands its results to the plugin, and the
// printers for tables, JSON and YAML. It does no I/O of its own beyond the
// writers it is given.
package report

import (
	"sort"
	"time"
)

// APIVersion is the version of every document Coral prints.
const APIVersion = "coral.dev/v1alpha1"

// Status is the outcome of one item on one node.
type Status string

const (
	// StatusPulled: the runtime pulled the image during this run.
	StatusPulled Status = "Pulled"
	// StatusPresent: the image was already there (with the expected digest); nothing was pulled.
	StatusPresent Status = "Present"
	// StatusFailed: the item did not reach the node; Message says why.
	StatusFailed Status = "Failed"
	// StatusDownloaded: the artifact was downloaded, verified and put in place during this run.
	StatusDownloaded Status = "Downloaded"
	// StatusSkipped: the node was not asked (not Ready, cordoned, cannot run the worker); Message says why.
	StatusSkipped Status = "Skipped"
)

// Succeeded says whether the status counts as the item being on the node.
func (s Status) Succeeded() bool {
	return s == StatusPulled || s == StatusPresent || s == StatusDownloaded
}

// Result is the outcome of one image on one node.
type Result struct {
	Node  string `json:"node"`
	Image string `json:"image,omitempty"`
	// Artifact and Source name an artifact item; Path is where it is on the node.
	Artifact string `json:"artifact,omitempty"`
	Source   string `json:"source,omitempty"`
	Path     string `json:"path,omitempty"`
	Status   Status `json:"status"`
	// Digest is the digest the node holds the image under, as its runtime reports it.
	Digest string `json:"digest,omitempty"`
	// ExpectedDigest is the digest the plugin resolved before the run.
	ExpectedDigest string `json:"expectedDigest,omitempty"`
	// DigestMismatch is true when the node got different bytes than were resolved
	// (the tag moved during the run, or the node reached another registry).
	DigestMismatch  bool    `json:"digestMismatch,omitempty"`
	SizeBytes       int64   `json:"sizeBytes"`
	DurationSeconds float64 `json:"durationSeconds"`
	Attempts        int     `json:"attempts,omitempty"`
	// Pinned: the runtime keeps the image from kubelet's image GC (--pin).
	Pinned  bool   `json:"pinned,omitempty"`
	Message string `json:"message,omitempty"`
}

// Summary counts results per status.
type Summary struct {
	Nodes      int `json:"nodes"`
	Total      int `json:"total"`
	Pulled     int `json:"pulled"`
	Downloaded int `json:"downloaded,omitempty"`
	Present    int `json:"present"`
	Failed     int `json:"failed"`
	Skipped    int `json:"skipped"`
}

// Report kinds.
const (
	KindPrefetchReport = "PrefetchReport"
	KindArtifactReport = "ArtifactReport"
)

// PrefetchReport is what `kubectl coral prefetch images` (kind
// PrefetchReport) and `prefetch artifacts` (kind ArtifactReport) print.
type PrefetchReport struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	RunID      string `json:"runID,omitempty"`
	// Interrupted is true when the run was stopped (SIGINT/SIGTERM) before every
	// node reported; nodes that had not reported are Failed with a message.
	Interrupted    bool      `json:"interrupted,omitempty"`
	StartTime      time.Time `json:"startTime"`
	CompletionTime time.Time `json:"completionTime"`
	Results        []Result  `json:"results"`
	Summary        Summary   `json:"summary"`
	// LeftBehind is set when the run's workers still existed when the
	// command returned: a large run deletes its Lease and leaves its Jobs
	// or pods to the garbage collector.
	LeftBehind *LeftBehind `json:"leftBehind,omitempty"`
}

// LeftBehind describes the workers a run left to the garbage collector.
type LeftBehind struct {
	// Workers is how many Jobs or pods the run created.
	Workers int `json:"workers"`
	// Kind is "jobs" or "pods".
	Kind string `json:"kind"`
	// Selector selects them (kubectl get KIND -l SELECTOR).
	Selector string `json:"selector"`
	// Removal says who removes them and how fast.
	Removal string `json:"removal"`
}

// NewPrefetchReport sorts results by node then image order of appearance and
// computes the summary.
func NewPrefetchReport(runID string, start, end time.Time, results []Result) *PrefetchReport {
	return NewReport(KindPrefetchReport, runID, start, end, results)
}

// NewReport is NewPrefetchReport for any kind.
func NewReport(kind, runID string, start, end time.Time, results []Result) *PrefetchReport {
	r := &PrefetchReport{
		APIVersion:     APIVersion,
		Kind:           kind,
		RunID:          runID,
		StartTime:      start.UTC().Truncate(time.Second),
		CompletionTime: end.UTC().Truncate(time.Second),
		Results:        append([]Result(nil), results...),
	}
	sort.SliceStable(r.Results, func(i, j int) bool { return r.Results[i].Node < r.Results[j].Node })
	r.Summary = Summarize(r.Results)
	return r
}

// Summarize counts results per status and distinct nodes.
func Summarize(results []Result) Summary {
	s := Summary{Total: len(results)}
	nodes := map[string]bool{}
	for _, r := range results {
		nodes[r.Node] = true
		switch r.Status {
		case StatusPulled:
			s.Pulled++
		case StatusDownloaded:
			s.Downloaded++
		case StatusPresent:
			s.Present++
		case StatusFailed:
			s.Failed++
		case StatusSkipped:
			s.Skipped++
		}
	}
	s.Nodes = len(nodes)
	return s
}

// AllSucceeded says whether every selected node holds every item. Skipped
// nodes do not count as failures: they were reported, with their reason.
func (r *PrefetchReport) AllSucceeded() bool { return r.Summary.Failed == 0 }
