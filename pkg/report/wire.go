package report

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The wire format between the worker and the plugin.
//
// A worker writes two things:
//
//   - its full report, one JSON line prefixed with FullReportPrefix, on stdout
//     (the pod log), and
//   - a compact report to the termination message, which kubelet caps at
//     4096 bytes. Items are listed in the order the worker was given them, so
//     no image name is repeated; a digest equal to the expected one is written
//     as "=". When even that does not fit, messages are shortened, then
//     dropped, and at last only one status letter per item is kept and the
//     report is marked Overflow: the plugin then reads the full report from the
//     pod log. The common case needs no log access.
//
// Both carry WireVersion; a plugin that does not know a worker's version says
// so instead of mis-reading it.

// WireVersion is the version of the worker↔plugin wire format.
const WireVersion = 1

// FullReportPrefix starts the line of the worker's log that holds its full report.
const FullReportPrefix = "CORAL_REPORT "

// TerminationMessageLimit is kubelet's cap on a container's termination message.
const TerminationMessageLimit = 4096

// ErrWireVersion is returned for a report written by a worker of another wire version.
var ErrWireVersion = errors.New("worker report version not understood")

// ItemResult is one item's outcome as the worker saw it.
type ItemResult struct {
	// Item is what the worker was given: an image reference or an artifact
	// source URL. Its JSON key stays "image", the key of wire version 1, so
	// a plugin and a worker of neighbouring releases understand each other.
	Item       string `json:"image"`
	Status     Status `json:"status"`
	Digest     string `json:"digest,omitempty"`
	SizeBytes  int64  `json:"sizeBytes,omitempty"`
	DurationMs int64  `json:"durationMs,omitempty"`
	Attempts   int    `json:"attempts,omitempty"`
	// Pinned says the runtime reports the image pinned (kept from kubelet's image GC).
	Pinned  bool   `json:"pinned,omitempty"`
	Message string `json:"message,omitempty"`
}

// WorkerReport is the worker's full report.
type WorkerReport struct {
	Version int          `json:"v"`
	Items   []ItemResult `json:"items"`
	// Overflow is set on a decoded compact report that kept only statuses: the
	// full report must be read from the pod log.
	Overflow bool `json:"-"`
}

var statusCodes = map[Status]string{StatusPulled: "P", StatusPresent: "R", StatusFailed: "F", StatusSkipped: "S", StatusDownloaded: "D"}

func statusFromCode(c string) (Status, bool) {
	for s, code := range statusCodes {
		if code == c {
			return s, true
		}
	}
	return "", false
}

// compact is the termination-message form.
type compact struct {
	V int `json:"v"`
	// I holds, per item: [status code, digest ("" unknown, "=" as expected), size, ms, attempts, message, pinned (1/0)].
	I [][]any `json:"i,omitempty"`
	// S holds one status letter per item when I did not fit (overflow).
	S string `json:"s,omitempty"`
}

// EncodeTermination encodes r for the termination message, fitting it within
// limit bytes. expected[i] is the digest the worker was told to expect for
// item i ("" when none).
func EncodeTermination(r *WorkerReport, expected []string, limit int) string {
	for _, maxMsg := range []int{-1, 200, 80, 24, 0} {
		c := compact{V: WireVersion}
		for i, it := range r.Items {
			d := it.Digest
			if i < len(expected) && expected[i] != "" && d == expected[i] {
				d = "="
			}
			msg := it.Message
			if maxMsg == 0 && it.Status != StatusFailed {
				msg = ""
			} else if maxMsg >= 0 && len(msg) > maxMsg {
				msg = truncate(msg, maxMsg)
			}
			pinned := 0
			if it.Pinned {
				pinned = 1
			}
			c.I = append(c.I, []any{statusCodes[it.Status], d, it.SizeBytes, it.DurationMs, it.Attempts, msg, pinned})
		}
		b, _ := json.Marshal(c)
		if len(b) <= limit {
			return string(b)
		}
	}
	var sb strings.Builder
	for _, it := range r.Items {
		sb.WriteString(statusCodes[it.Status])
	}
	b, _ := json.Marshal(compact{V: WireVersion, S: sb.String()})
	return string(b)
}

func truncate(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if len(s) <= n {
		return s
	}
	if n <= 1 {
		return s[:n]
	}
	// cut on a rune boundary
	cut := n - 1
	for cut > 0 && !utf8Start(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// DecodeTermination decodes a compact report for the given images (the
// worker's item order) and expected digests.
func DecodeTermination(msg string, images, expected []string) (*WorkerReport, error) {
	msg = strings.TrimSpace(msg)
	var probe struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal([]byte(msg), &probe); err != nil {
		return nil, fmt.Errorf("reading the worker's termination message: %w", err)
	}
	if probe.V != WireVersion {
		return nil, fmt.Errorf("%w: the worker wrote version %d, this plugin reads version %d; use the worker image that matches the plugin (--worker-image)", ErrWireVersion, probe.V, WireVersion)
	}
	var c compact
	if err := json.Unmarshal([]byte(msg), &c); err != nil {
		return nil, fmt.Errorf("reading the worker's termination message: %w", err)
	}
	r := &WorkerReport{Version: c.V}
	if c.S != "" {
		if len(c.S) != len(images) {
			return nil, fmt.Errorf("the worker reported %d items, %d were asked for", len(c.S), len(images))
		}
		r.Overflow = true
		for i, code := range c.S {
			st, ok := statusFromCode(string(code))
			if !ok {
				return nil, fmt.Errorf("unknown status code %q in the worker's report", code)
			}
			r.Items = append(r.Items, ItemResult{Item: images[i], Status: st})
		}
		return r, nil
	}
	if len(c.I) != len(images) {
		return nil, fmt.Errorf("the worker reported %d items, %d were asked for", len(c.I), len(images))
	}
	for i, row := range c.I {
		if len(row) != 7 {
			return nil, fmt.Errorf("item %d of the worker's report has %d fields, want 7", i, len(row))
		}
		code, _ := row[0].(string)
		st, ok := statusFromCode(code)
		if !ok {
			return nil, fmt.Errorf("unknown status code %q in the worker's report", code)
		}
		d, _ := row[1].(string)
		if d == "=" && i < len(expected) {
			d = expected[i]
		}
		size, _ := row[2].(float64)
		ms, _ := row[3].(float64)
		attempts, _ := row[4].(float64)
		m, _ := row[5].(string)
		pinned, _ := row[6].(float64)
		r.Items = append(r.Items, ItemResult{Item: images[i], Status: st, Digest: d, SizeBytes: int64(size), DurationMs: int64(ms), Attempts: int(attempts), Message: m, Pinned: pinned == 1})
	}
	return r, nil
}

// EncodeFull writes the full report line for the pod log.
func EncodeFull(w io.Writer, r *WorkerReport) error {
	r.Version = WireVersion
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s%s\n", FullReportPrefix, b)
	return err
}

// DecodeFull finds the last full report line in a pod log.
func DecodeFull(log io.Reader) (*WorkerReport, error) {
	sc := bufio.NewScanner(log)
	sc.Buffer(make([]byte, 64*1024), 64*1024*1024)
	var last string
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, FullReportPrefix) {
			last = strings.TrimPrefix(line, FullReportPrefix)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the worker's log: %w", err)
	}
	if last == "" {
		return nil, errors.New("the worker's log holds no report")
	}
	var r WorkerReport
	if err := json.Unmarshal([]byte(last), &r); err != nil {
		return nil, fmt.Errorf("reading the worker's report from its log: %w", err)
	}
	if r.Version != WireVersion {
		return nil, fmt.Errorf("%w: the worker wrote version %d, this plugin reads version %d; use the worker image that matches the plugin (--worker-image)", ErrWireVersion, r.Version, WireVersion)
	}
	return &r, nil
}
