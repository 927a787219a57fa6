package main

import (
	"io"
	"os"
	"strings"
	"time"
)

// logTail reads what a log file gained since mark.
type logTail struct {
	Path string
	off  int64
}

func (l *logTail) mark() {
	if st, err := os.Stat(l.Path); err == nil {
		l.off = st.Size()
	}
}

func (l *logTail) since() []string {
	f, err := os.Open(l.Path)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(l.off, io.SeekStart); err != nil {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(f, 64<<20))
	if err != nil {
		return nil
	}
	return strings.Split(string(b), "\n")
}

// kubeletTimes fills in, from kubelet's log lines, when the pod reached
// kubelet and when kubelet's PLEG noticed the worker's exit. klog stamps
// lines with local time, microseconds, and no year.
func kubeletTimes(lines []string, t *nodeTimeline, podName string) {
	for _, line := range lines {
		switch {
		case t.KubeletAdd.IsZero() && strings.Contains(line, `"SyncLoop ADD"`) && strings.Contains(line, "/"+podName+`"`):
			t.KubeletAdd = klogTime(line)
		case t.PLEGDied.IsZero() && t.Runtime.WorkerID != "" &&
			strings.Contains(line, `"Type":"ContainerDied","Data":"`+t.Runtime.WorkerID+`"`):
			t.PLEGDied = klogTime(line)
		}
	}
}

// containerdTimes fills in the sandbox's CRI calls from containerd's log
// (logrus: time="RFC3339Nano"); 1.6 and 2.x word them alike.
func containerdTimes(lines []string, t *nodeTimeline, podUID string) {
	for _, line := range lines {
		switch {
		case strings.Contains(line, "RunPodSandbox for ") && strings.Contains(line, podUID):
			if strings.Contains(line, "returns sandbox id") {
				if t.SandboxReturned.IsZero() {
					t.SandboxReturned = logrusTime(line)
				}
			} else if t.SandboxRequested.IsZero() {
				t.SandboxRequested = logrusTime(line)
			}
		case t.Runtime.SandboxID != "" && strings.Contains(line, `StopPodSandbox for \"`+t.Runtime.SandboxID+`\"`):
			if strings.Contains(line, "returns successfully") {
				if t.StopDone.IsZero() {
					t.StopDone = logrusTime(line)
				}
			} else if t.StopStart.IsZero() {
				t.StopStart = logrusTime(line)
			}
		}
	}
}

func klogTime(line string) time.Time {
	// I1127 06:36:28.374999   17470 kubelet.go:…
	if len(line) < 21 {
		return time.Time{}
	}
	ts, err := time.ParseInLocation("0102 15:04:05.000000", line[1:21], time.Local)
	if err != nil {
		return time.Time{}
	}
	now := time.Now()
	ts = ts.AddDate(now.Year(), 0, 0)
	if ts.After(now.Add(24 * time.Hour)) { // a log line from last December
		ts = ts.AddDate(-1, 0, 0)
	}
	return ts
}

func logrusTime(line string) time.Time {
	_, rest, ok := strings.Cut(line, `time="`)
	if !ok {
		return time.Time{}
	}
	ts, _, _ := strings.Cut(rest, `"`)
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return time.Time{}
	}
	return t
}
