package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/plan"
	"github.com/coral-dev/coral/pkg/report"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// workerPod is the pod of the Job Coral builds for a task, as kwok leaves it:
// Running.
func workerPod(t *testing.T, items []plan.Item) *corev1.Pod {
	t.Helper()
	j := jobs.ForTask(plan.Task{Node: "sim-00007", RuntimeSocket: "/run/containerd/containerd.sock", Items: items},
		jobs.Spec{RunID: "abc123", Namespace: "coral-scale", WorkerImage: "registry.invalid/w:1", MaxPullsPerNode: 3, ImageTimeout: time.Minute, Deadline: time.Hour, TTL: time.Hour})
	started := metav1.NewTime(time.Unix(1000, 0))
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: j.Name + "-x", Namespace: j.Namespace, Labels: j.Spec.Template.Labels},
		Spec:       j.Spec.Template.Spec,
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: jobs.ContainerName, Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}},
		},
	}
}

// The completer's status patch carries a termination message that the
// plugin's own decoder reads back, for the images in the pod's args, in order.
func TestTerminalStatusPatchDecodes(t *testing.T) {
	items := []plan.Item{
		{Ref: "registry.invalid/a@sha256:" + strings.Repeat("a", 64), ExpectedDigest: "sha256:" + strings.Repeat("a", 64)},
		{Ref: "registry.invalid/b:1"},
		{Ref: "registry.invalid/c:2", ExpectedDigest: "sha256:" + strings.Repeat("c", 64)},
	}
	for _, fail := range []bool{false, true} {
		p := workerPod(t, items)
		patch, err := terminalStatusPatch(p, fail, 2*time.Second, time.Unix(2000, 0))
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Status corev1.PodStatus `json:"status"`
		}
		if err := json.Unmarshal(patch, &got); err != nil {
			t.Fatal(err)
		}
		wantPhase, wantExit := corev1.PodSucceeded, int32(0)
		if fail {
			wantPhase, wantExit = corev1.PodFailed, 1
		}
		if got.Status.Phase != wantPhase {
			t.Errorf("fail=%v: phase %s, want %s", fail, got.Status.Phase, wantPhase)
		}
		cs := containerStatus(&corev1.Pod{Status: got.Status}, jobs.ContainerName)
		if cs == nil || cs.State.Terminated == nil {
			t.Fatalf("fail=%v: worker not terminated: %+v", fail, got.Status.ContainerStatuses)
		}
		if cs.State.Terminated.ExitCode != wantExit || !cs.State.Terminated.StartedAt.Equal(&metav1.Time{Time: time.Unix(1000, 0)}) {
			t.Errorf("fail=%v: terminated %+v", fail, cs.State.Terminated)
		}
		images, expected := imageArgs(p.Spec.Containers[0].Args)
		wr, err := report.DecodeTermination(cs.State.Terminated.Message, images, expected)
		if err != nil {
			t.Fatalf("fail=%v: %v (message %s)", fail, err, cs.State.Terminated.Message)
		}
		if len(wr.Items) != len(items) {
			t.Fatalf("fail=%v: %d items, want %d", fail, len(wr.Items), len(items))
		}
		for i, it := range wr.Items {
			if it.Item != items[i].Ref {
				t.Errorf("item %d: image %s, want %s", i, it.Item, items[i].Ref)
			}
			wantStatus := report.StatusPulled
			if fail && i == 0 {
				wantStatus = report.StatusFailed
			}
			if it.Status != wantStatus {
				t.Errorf("fail=%v item %d: status %s, want %s", fail, i, it.Status, wantStatus)
			}
			if it.Status == report.StatusPulled && items[i].ExpectedDigest != "" && it.Digest != items[i].ExpectedDigest {
				t.Errorf("item %d: digest %s, want the expected %s", i, it.Digest, items[i].ExpectedDigest)
			}
		}
		if fail && !strings.Contains(wr.Items[0].Message, "simulated failure on sim-00007") {
			t.Errorf("failure message %q", wr.Items[0].Message)
		}
	}
}

func TestFates(t *testing.T) {
	for _, tc := range []struct {
		n                  int
		fail, silent       float64
		wantFail, wantSilt int
	}{
		{100, 2, 0.5, 2, 0},
		{1000, 2, 0.5, 20, 5},
		{5000, 2, 0.5, 100, 25},
		{10, 0, 0, 0, 0},
		{10, 100, 0, 10, 0},
	} {
		f := newFates(tc.n, tc.fail, tc.silent)
		if f.count[fateFail] != tc.wantFail || f.count[fateSilent] != tc.wantSilt || f.count[fateOK] != tc.n-tc.wantFail-tc.wantSilt {
			t.Errorf("N=%d: %s, want %d fail %d silent", tc.n, f, tc.wantFail, tc.wantSilt)
		}
		// The silent nodes are the first non-failing ones whose pods
		// appear, in whatever order: here from the last node down.
		var want []string
		for i := tc.n; i >= 1; i-- {
			f.appeared(nodeName(i))
			f.appeared(nodeName(i)) // a pod's updates do not count again
			if f.of(nodeName(i)) == fateFail {
				continue
			}
			if len(want) < tc.wantSilt {
				want = append(want, nodeName(i))
			}
		}
		for i := 1; i <= tc.n; i++ {
			if got, silent := f.of(nodeName(i)), slices.Contains(want, nodeName(i)); (got == fateSilent) != silent {
				t.Errorf("N=%d: %s is %s, silent ones %v", tc.n, nodeName(i), got, want)
			}
		}
		if f.chosen() != tc.wantSilt {
			t.Errorf("N=%d: %d silent chosen, want %d", tc.n, f.chosen(), tc.wantSilt)
		}
		f.newRun()
		if f.chosen() != 0 || f.of(nodeName(tc.n)) == fateSilent {
			t.Errorf("N=%d: a new run keeps the last run's silent nodes", tc.n)
		}
	}
}

// TestBoundChoosesAsTheCompleter: the bound (its own process) rebuilds the
// fates from the node names and the failing ones, and chooses the same
// silent nodes from the same order of appearance.
func TestBoundChoosesAsTheCompleter(t *testing.T) {
	f := newFates(200, 2, 5)
	var nodes []string
	for i := 1; i <= 200; i++ {
		nodes = append(nodes, nodeName(i))
	}
	g := knownFates(nodes, f.failing(), f.count[fateSilent])
	if g.count != f.count {
		t.Fatalf("bound %v, completer %v", g.count, f.count)
	}
	for _, i := range []int{17, 3, 101, 1, 51, 2, 200, 150, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20} {
		f.appeared(nodeName(i))
		g.appeared(nodeName(i))
	}
	for _, n := range nodes {
		if f.of(n) != g.of(n) {
			t.Errorf("%s: completer %s, bound %s", n, f.of(n), g.of(n))
		}
	}
	if f.chosen() != 10 || f.of(nodeName(1)) != fateFail || f.of(nodeName(17)) != fateSilent || f.of(nodeName(20)) == fateSilent {
		t.Errorf("chosen %d; sim-00001 %s, sim-00017 %s, sim-00020 %s", f.chosen(), f.of(nodeName(1)), f.of(nodeName(17)), f.of(nodeName(20)))
	}
}

func TestAuditCount(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	before := `{"auditID":"0","stage":"ResponseComplete","verb":"list","user":{"username":"coral-bench"},"objectRef":{"resource":"nodes"},"responseStatus":{"code":200}}` + "\n"
	if err := os.WriteFile(path, []byte(before), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &auditLog{path: path}
	if err := a.mark(); err != nil {
		t.Fatal(err)
	}
	lines := []string{
		`{"auditID":"1","stage":"ResponseStarted","verb":"watch","user":{"username":"coral-bench"},"objectRef":{"resource":"pods"}}`,
		`{"auditID":"2","stage":"ResponseComplete","verb":"create","requestURI":"/apis/batch/v1/namespaces/x/jobs?dryRun=All","user":{"username":"coral-bench"},"objectRef":{"resource":"jobs"},"responseStatus":{"code":201}}`,
		`{"auditID":"3","stage":"ResponseComplete","verb":"create","requestURI":"/apis/batch/v1/namespaces/x/jobs","user":{"username":"coral-bench"},"objectRef":{"resource":"jobs"},"responseStatus":{"code":429},"requestReceivedTimestamp":"2026-11-30T14:00:00.000000Z","stageTimestamp":"2026-11-30T14:00:01.500000Z"}`,
		`{"auditID":"4","stage":"ResponseComplete","verb":"patch","user":{"username":"coral-sim"},"objectRef":{"resource":"pods","subresource":"status"},"responseStatus":{"code":200}}`,
		`{"auditID":"1","stage":"ResponseComplete","verb":"watch","user":{"username":"coral-bench"},"objectRef":{"resource":"pods"},"responseStatus":{"code":200}}`,
		`{"auditID":"5","stage":"ResponseComp`, // being written
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = f.WriteString(strings.Join(lines, "\n"))
	f.Close()
	got, err := a.count()
	if err != nil {
		t.Fatal(err)
	}
	c := got["coral-bench"]
	if c.Reads != 1 || c.Writes != 2 || c.DryRun != 1 || c.Throttled != 1 {
		t.Errorf("coral-bench: %+v, want 1 read (the watch, once), 2 writes (1 dry-run), 1 throttled", c)
	}
	if c.ByKind["watch pods"] != 1 || c.ByKind["create jobs (dry-run)"] != 1 || c.ByKind["list nodes"] != 0 {
		t.Errorf("breakdown %s", c.breakdown())
	}
	if d := c.Slowest["create jobs"]; d != 1.5 || c.slow() != "create jobs 1.5s" {
		t.Errorf("slowest create jobs %.3fs (%q), want 1.5s", d, c.slow())
	}
	if s := got["coral-sim"]; s.Writes != 1 || s.ByKind["patch pods/status"] != 1 {
		t.Errorf("coral-sim: %+v", s)
	}
}

func TestCheckReport(t *testing.T) {
	f := newFates(4, 25, 25) // sim-00001 fail; sim-00002 appears first: silent; the rest ok
	f.appeared("sim-00002")
	d := "sha256:" + strings.Repeat("d", 64)
	rows := func(mutate func(node string, i int, r *report.Result)) *report.PrefetchReport {
		var res []report.Result
		for n := 1; n <= 4; n++ {
			for i := 0; i < 2; i++ {
				r := report.Result{Node: nodeName(n), Image: "img", Status: report.StatusPulled, Digest: d, ExpectedDigest: d}
				switch f.of(nodeName(n)) {
				case fateSilent:
					r = report.Result{Node: nodeName(n), Image: "img", Status: report.StatusFailed, ExpectedDigest: d, Message: "no report within --timeout=1m"}
				case fateFail:
					if i == 0 {
						r = report.Result{Node: nodeName(n), Image: "img", Status: report.StatusFailed, ExpectedDigest: d, Message: "simulated failure on x"}
					}
				}
				if mutate != nil {
					mutate(nodeName(n), i, &r)
				}
				res = append(res, r)
			}
		}
		return report.NewPrefetchReport("r", time.Now(), time.Now(), res)
	}
	r := &runResult{}
	if err := checkReport(rows(nil), f, 2, r); err != nil || r.OK != 2 || r.Failed != 2 {
		t.Errorf("as simulated: err %v, %d ok %d failed", err, r.OK, r.Failed)
	}
	bad := rows(func(node string, i int, r *report.Result) {
		if node == "sim-00004" && i == 1 {
			r.Status, r.Message = report.StatusFailed, "the worker exited with code 1"
		}
	})
	if err := checkReport(bad, f, 2, &runResult{}); err == nil || !strings.Contains(err.Error(), "sim-00004") {
		t.Errorf("an ok node that failed: err %v", err)
	}
	wrongDigest := rows(func(node string, i int, r *report.Result) {
		if node == "sim-00003" {
			r.Digest = "sha256:" + strings.Repeat("e", 64)
		}
	})
	if err := checkReport(wrongDigest, f, 2, &runResult{}); err == nil {
		t.Error("a digest mismatch went unnoticed")
	}
}

// The harness holds a lot of memory; the peak RSS it reports for a child
// must be the child's own, not what the kernel carries over from the
// harness into ru_maxrss.
func TestSampleHWMIsTheChildsOwn(t *testing.T) {
	ballast := make([]byte, 300<<20)
	for i := range ballast {
		ballast[i] = 1
	}
	cmd := exec.Command("sleep", "0.4")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	peak := sampleHWM(cmd.Process.Pid)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	got := peak()
	maxrss := float64(cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss) / 1024
	t.Logf("sleep: sampled peak %.1f MB, ru_maxrss %.1f MB", got, maxrss)
	if got <= 0 || got > 50 {
		t.Errorf("sampled peak RSS of sleep = %.1f MB, want a few MB", got)
	}
	runtime.KeepAlive(ballast)
}

// The TTL a node is created with is the TTL controller's for the cluster's
// final size (kubernetes pkg/controller/ttl: ttlBoundaries).
func TestTTLFor(t *testing.T) {
	for n, want := range map[int]string{1: "0", 100: "0", 101: "15", 500: "15", 1000: "30", 1001: "60", 2000: "60", 5000: "300"} {
		if got := ttlFor(n); got != want {
			t.Errorf("ttlFor(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestCheckRecords(t *testing.T) {
	f := newFates(4, 25, 25) // sim-00001 fail; sim-00002 appears first: silent; the rest ok
	f.appeared("sim-00002")
	records := func() map[string]*coralv1.PrefetchNode {
		m := map[string]*coralv1.PrefetchNode{}
		for n := 1; n <= 4; n++ {
			pn := &coralv1.PrefetchNode{Node: nodeName(n), State: "Ready", Results: []coralv1.NodeItem{{Ref: "a", Status: "Pulled"}, {Ref: "b", Status: "Pulled"}}}
			switch f.of(nodeName(n)) {
			case fateSilent:
				pn.State, pn.Message, pn.Results = "Failed", "no report within nodeTimeout", nil
			case fateFail:
				pn.State, pn.Message = "Failed", "a: simulated failure on x"
				pn.Results[0].Status = "Failed"
			}
			m[nodeName(n)] = pn
		}
		return m
	}
	r := &runResult{}
	if err := checkRecords(records(), f, 2, r); err != nil || r.OK != 2 || r.Failed != 2 {
		t.Errorf("as simulated: err %v, %d ok %d failed", err, r.OK, r.Failed)
	}
	missing := records()
	delete(missing, "sim-00004")
	r = &runResult{}
	if err := checkRecords(missing, f, 2, r); err == nil || !strings.Contains(err.Error(), "sim-00004") || r.OK != 1 {
		t.Errorf("a node without a record: err %v, %d ok", err, r.OK)
	}
	short := records()
	short["sim-00003"].Results = short["sim-00003"].Results[:1]
	if err := checkRecords(short, f, 2, &runResult{}); err == nil || !strings.Contains(err.Error(), "sim-00003") {
		t.Errorf("a Ready record with one result of two: err %v", err)
	}
	silentReady := records()
	silentReady["sim-00002"].State = "Ready"
	if err := checkRecords(silentReady, f, 2, &runResult{}); err == nil || !strings.Contains(err.Error(), "sim-00002") {
		t.Errorf("a silent node recorded Ready: err %v", err)
	}
}
