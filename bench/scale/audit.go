package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// kcmUser is kube-controller-manager's user; the audit policy logs its
// writes (not its reads) so a run shows what the Job controller and the
// garbage collector wrote for it: pods created, Job status updates, pod
// finalizers removed, deletions.
const kcmUser = "system:kube-controller-manager"

// requests counts one user's requests in a window of the audit log.
type requests struct {
	Reads, Writes int
	DryRun        int // writes with dryRun=All (Coral's preflight), included in Writes
	Throttled     int // answered 429 (API Priority and Fairness)
	ByKind        map[string]int
	// Slowest is the longest time, in seconds, one request of a kind took
	// (received to response complete; watches excluded).
	Slowest map[string]float64
}

// slow lists the kinds of request that took a second or more.
func (r requests) slow() string {
	var parts []string
	for k, d := range r.Slowest {
		if d >= 1 {
			parts = append(parts, fmt.Sprintf("%s %.1fs", k, d))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func (r requests) breakdown() string {
	keys := make([]string, 0, len(r.ByKind))
	for k := range r.ByKind {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%d", k, r.ByKind[k])
	}
	return b.String()
}

// auditLog reads the API server's audit log (JSON lines, Metadata level,
// stages past RequestReceived) from a remembered offset.
type auditLog struct {
	path   string
	offset int64
}

// mark remembers the end of the log: the next count starts there.
func (a *auditLog) mark() error {
	st, err := os.Stat(a.path)
	if err != nil {
		if os.IsNotExist(err) {
			a.offset = 0
			return nil
		}
		return err
	}
	a.offset = st.Size()
	return nil
}

type auditEvent struct {
	AuditID    string `json:"auditID"`
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	Stage    string    `json:"stage"`
	Received time.Time `json:"requestReceivedTimestamp"`
	StageAt  time.Time `json:"stageTimestamp"`
}

// count reads everything since the mark and counts each request (audit ID)
// of each user once: reads are get, list and watch; everything else writes.
func (a *auditLog) count() (map[string]requests, error) {
	f, err := os.Open(a.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() < a.offset { // rotated: scale-up.sh sets a size that should never be reached
		return nil, fmt.Errorf("the audit log %s shrank (rotated?): counts are lost", a.path)
	}
	if _, err := f.Seek(a.offset, io.SeekStart); err != nil {
		return nil, err
	}
	out := map[string]requests{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev auditEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			continue // a line being written
		}
		kind := ev.Verb
		if ev.ObjectRef != nil {
			kind += " " + ev.ObjectRef.Resource
			if ev.ObjectRef.Subresource != "" {
				kind += "/" + ev.ObjectRef.Subresource
			}
		}
		if ev.Stage == "ResponseComplete" && ev.Verb != "watch" && !ev.Received.IsZero() {
			r := out[ev.User.Username]
			if r.Slowest == nil {
				r.Slowest = map[string]float64{}
			}
			if d := ev.StageAt.Sub(ev.Received).Seconds(); d > r.Slowest[kind] {
				r.Slowest[kind] = d
			}
			out[ev.User.Username] = r
		}
		key := ev.AuditID
		if seen[key] {
			if ev.ResponseStatus != nil && ev.ResponseStatus.Code == 429 {
				r := out[ev.User.Username]
				r.Throttled++
				out[ev.User.Username] = r
			}
			continue
		}
		seen[key] = true
		r := out[ev.User.Username]
		if r.ByKind == nil {
			r.ByKind = map[string]int{}
		}
		switch ev.Verb {
		case "get", "list", "watch":
			r.Reads++
		default:
			r.Writes++
			if strings.Contains(ev.RequestURI, "dryRun=All") {
				r.DryRun++
				kind += " (dry-run)"
			}
		}
		r.ByKind[kind]++
		if ev.ResponseStatus != nil && ev.ResponseStatus.Code == 429 {
			r.Throttled++
		}
		out[ev.User.Username] = r
	}
	return out, sc.Err()
}
