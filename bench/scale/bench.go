package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coral-dev/coral/pkg/report"
	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

type bench struct {
	c        config
	e        *env
	admin    kubernetes.Interface
	comp     *completer
	audit    *auditLog
	images   []string
	podsMode bool
	// diskCheck: the binary has the disk preflight, which reads two kubelet
	// endpoints per node; kwok nodes have no kubelet, so it is skipped.
	diskCheck bool
	work      string // scratch directory
	results   []*runResult
	ctl       client.WithWatch // the admin's client for prefetch objects (mode controller)
}

// runResult is one measured run: the bound or Coral, for one N, mode and round.
type runResult struct {
	N     int
	Mode  string
	Round int
	Who   string // bound or coral
	Wall  float64
	First float64
	// Gap is the longest time Coral's progress output (--progress plain:
	// lines; bar: redraws) stayed silent between its first output and its
	// exit.
	Gap     float64
	Last    float64
	Req     requests
	Sim     requests // the completer's requests in the same window
	KCM     requests // kube-controller-manager's writes in the same window (Job controller, GC)
	RSSMB   float64  // Coral/bound peak RSS
	CPU     float64  // Coral/bound CPU seconds
	APICPU  float64
	KCMCPU  float64
	KwokCPU float64
	OK      int // nodes with every item on them
	Failed  int
	WantOK  int
	WantBad int
	Exit    int
	Left    string // what was left behind when the run's process exited
	Drain   float64
	Err     string
	Detail  string
}

func newBench(ctx context.Context, c config, e *env) (*bench, error) {
	b := &bench{c: c, e: e, audit: &auditLog{path: e.auditLog}}
	var err error
	if b.admin, err = clientFor(e.adminKubeconfig, "coral-scale-harness", 500); err != nil {
		return nil, err
	}
	sim, err := clientFor(e.simKubeconfig, "coral-scale-completer", 1000)
	if err != nil {
		return nil, err
	}
	if b.comp, err = startCompleter(ctx, sim, e.namespace, c.work); err != nil {
		return nil, err
	}
	for i := range c.images {
		ref := fmt.Sprintf("registry.invalid/scale/image-%d", i+1)
		b.images = append(b.images, fmt.Sprintf("%s@sha256:%x", ref, sha256.Sum256([]byte(ref))))
	}
	help, _ := exec.Command(c.plugin, "prefetch", "images", "--help").CombinedOutput()
	b.podsMode = strings.Contains(string(help), "--mode")
	b.diskCheck = strings.Contains(string(help), "--skip-disk-check")
	if b.work, err = os.MkdirTemp("", "coral-scale-"); err != nil {
		return nil, err
	}
	return b, nil
}

func clientFor(kubeconfig, agent string, qps float32) (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst, cfg.UserAgent = qps, int(2*qps), agent
	return kubernetes.NewForConfig(cfg)
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s [scale] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
}

func (b *bench) run(ctx context.Context) int {
	defer os.RemoveAll(b.work)
	b.header()
	rc := 0
	var skipped []string
	for _, n := range b.c.ns {
		if need, avail := b.c.memBase+b.c.memPerNode*float64(n), memAvailableMB(); avail > 0 && avail < need {
			msg := fmt.Sprintf("scale N=%d: skipped: needs about %.0f MB, MemAvailable is %.0f MB", n, need, avail)
			logf("%s", msg)
			skipped = append(skipped, msg)
			continue
		}
		if err := b.runN(ctx, n); err != nil {
			logf("N=%d: %v", n, err)
			skipped = append(skipped, fmt.Sprintf("scale N=%d: error: %v", n, oneLine(err.Error())))
			rc = 1
		}
		if ctx.Err() != nil {
			break
		}
	}
	b.printTable()
	fmt.Println()
	for _, s := range skipped {
		fmt.Println(s)
	}
	if !b.podsMode && wants(b.c.modes, "pods") {
		fmt.Printf("pods mode: not supported by this binary (%s prefetch images --help has no --mode)\n", filepath.Base(b.c.plugin))
	}
	for _, r := range b.results {
		if r.Who != "coral" {
			continue
		}
		if r.Err != "" {
			fmt.Printf("scale N=%d mode=%s error=%q\n", r.N, r.Mode, r.Err)
			rc = 1
			continue
		}
		bound := b.boundFor(r)
		ratio := 0.0
		if bound > 0 {
			ratio = r.Wall / bound
		}
		fmt.Printf("scale N=%d mode=%s wall=%.1f bound=%.1f ratio=%.2f writes=%d reads=%d rss_mb=%.0f first=%.1f last=%.1f\n",
			r.N, r.Mode, r.Wall, bound, ratio, r.Req.Writes, r.Req.Reads, r.RSSMB, r.First, r.Last)
	}
	if ctx.Err() != nil {
		return 130
	}
	return rc
}

func wants(modes []string, m string) bool {
	for _, x := range modes {
		if x == m {
			return true
		}
	}
	return false
}

func (b *bench) boundFor(r *runResult) float64 {
	for _, x := range b.results {
		// A bound whose cleanup failed still timed every node.
		if x.Who == "bound" && x.N == r.N && x.Mode == r.Mode && x.Round == r.Round && (x.Err == "" || strings.HasPrefix(x.Err, "bound: cleanup")) {
			return x.Wall
		}
	}
	return 0
}

func (b *bench) header() {
	host, _ := os.Hostname()
	load, _ := os.ReadFile("/proc/loadavg")
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	logf("%s, %d CPUs, MemAvailable %.0f MB, load %s; coral %s (%s); kwok simulated nodes; work %s, fail %.1f%%, silent %.1f%%, %d images, --timeout %s, --progress %s",
		host, runtime.NumCPU(), memAvailableMB(), strings.Join(strings.Fields(string(load))[:3], " "),
		strings.TrimSpace(string(commit)), b.c.plugin, b.c.work, b.c.failPct, b.c.silentPct, len(b.images), b.c.nodeTimeout, b.c.progress)
}

// waitNodesQuiet waits until kube-controller-manager has stopped writing to
// the nodes: its TTL controller re-annotates every node each time the
// cluster's size crosses a step while nodes are created (the first runs
// after fast node creation had 913 and 9188 node patches in a bound's
// window). Quiet is 5 s without a kcm write to a node, read from the audit
// log.
func (b *bench) waitNodesQuiet(ctx context.Context, n int) error {
	limit := 5*time.Minute + time.Duration(n)*100*time.Millisecond
	toNodes := func(r requests) int {
		writes := 0
		for kind, c := range r.ByKind {
			if strings.HasSuffix(kind, " nodes") || strings.Contains(kind, " nodes/") {
				writes += c
			}
		}
		return writes
	}
	waited, writes, err := b.waitKCMQuiet(ctx, 5*time.Second, limit, toNodes)
	if err != nil {
		return err
	}
	if writes > 0 {
		return fmt.Errorf("kube-controller-manager still wrote %d times to nodes in 5s after %s", writes, waited.Round(time.Second))
	}
	logf("kube-controller-manager quiet on the nodes after %.1fs", waited.Seconds())
	return nil
}

// kcmIdle is how long kube-controller-manager must not have written before
// a run starts. Its client allows 20 requests a second with a burst of 30,
// shared by the Job controller, the garbage collector and its events: a
// run that starts while it still deletes the last run's pods or writes its
// events (they trail a run by seconds) starts with no burst. At N=100 that
// made the second run of a round 1.2 s slower whoever ran it (bound 11.6
// first / 12.8 second, Coral 13.8 first / 14.1 second). 2 s refills the
// burst from empty.
const kcmIdle = 2 * time.Second

// waitKCMIdle waits until kube-controller-manager has written nothing for
// kcmIdle and returns how long it waited. After two minutes it gives up
// waiting (and says so), without failing the run.
func (b *bench) waitKCMIdle(ctx context.Context) (time.Duration, error) {
	waited, writes, err := b.waitKCMQuiet(ctx, kcmIdle, 2*time.Minute, func(r requests) int { return r.Writes })
	if err == nil && writes > 0 {
		logf("kube-controller-manager still wrote %d times in %s after %s; starting the run anyway", writes, kcmIdle, waited.Round(time.Second))
	}
	return waited, err
}

// waitKCMQuiet waits until a window of the audit log holds no
// kube-controller-manager write that counts (writes of its requests), or
// until limit has passed. It returns how long it waited and the writes of
// the last window: 0 when quiet.
func (b *bench) waitKCMQuiet(ctx context.Context, window, limit time.Duration, counts func(requests) int) (time.Duration, int, error) {
	t0 := time.Now()
	for {
		if err := b.audit.mark(); err != nil {
			return 0, 0, err
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(window):
		}
		byUser, err := b.audit.count()
		if err != nil {
			return 0, 0, err
		}
		writes := counts(byUser[kcmUser])
		if writes == 0 || time.Since(t0) > limit {
			return time.Since(t0), writes, nil
		}
	}
}

func (b *bench) runN(ctx context.Context, n int) error {
	if err := ensureNodes(ctx, b.admin, b.e.nodeLabel, n, b.c.nodeImages, logf); err != nil {
		return err
	}
	if err := b.waitNodesQuiet(ctx, n); err != nil {
		return err
	}
	f := newFates(n, b.c.failPct, b.c.silentPct)
	b.comp.fates.Store(f)
	logf("N=%d: fates %s", n, f)
	jobsFile, failFile, err := b.dryRun(ctx, n, f)
	if err != nil {
		return err
	}
	for round := 1; round <= b.c.rounds; round++ {
		for _, mode := range b.c.modes {
			if mode == "pods" && !b.podsMode {
				continue
			}
			if mode == "pods" {
				if err := b.applyPodsRBAC(ctx); err != nil {
					return err
				}
			}
			order := []string{"bound", "coral"}
			if round%2 == 0 {
				order = []string{"coral", "bound"}
			}
			for _, who := range order {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				r := &runResult{N: n, Mode: mode, Round: round, Who: who, WantOK: f.count[fateOK], WantBad: f.count[fateFail] + f.count[fateSilent]}
				b.measure(ctx, r, f, jobsFile, failFile)
				b.results = append(b.results, r)
				b.logRun(r)
			}
		}
	}
	return nil
}

// dryRun asks Coral (as its own user) for the Jobs it would create: the
// bound creates exactly these.
func (b *bench) dryRun(ctx context.Context, n int, f *fates) (string, string, error) {
	args := append([]string{"prefetch", "images"}, b.images...)
	args = append(args, b.coralCommon()...)
	args = append(args, "--dry-run=client", "-o", "json")
	if b.podsMode { // the bound wants Jobs whatever the default mode picks
		args = append(args, "--mode=jobs")
	}
	cmd := exec.CommandContext(ctx, b.c.plugin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("coral --dry-run=client: %v: %s", err, stderr.String())
	}
	var list batchv1.JobList
	if err := json.Unmarshal(out, &list); err != nil {
		return "", "", fmt.Errorf("coral --dry-run=client -o json: %w", err)
	}
	if len(list.Items) != n {
		return "", "", fmt.Errorf("coral would create %d Jobs for %d simulated nodes: %s", len(list.Items), n, stderr.String())
	}
	jobsFile := filepath.Join(b.work, fmt.Sprintf("jobs-%d.json", n))
	if err := os.WriteFile(jobsFile, out, 0o600); err != nil {
		return "", "", err
	}
	failFile := filepath.Join(b.work, fmt.Sprintf("fail-%d.txt", n))
	return jobsFile, failFile, os.WriteFile(failFile, []byte(strings.Join(f.failing(), "\n")+"\n"), 0o600)
}

func (b *bench) coralCommon() []string {
	args := []string{"--kubeconfig", b.e.coralKubeconfig, "-n", b.e.namespace, "-l", b.e.nodeLabel + "=true",
		"--worker-image", "registry.invalid/coral/worker:scale", "--timeout", b.c.nodeTimeout.String()}
	if b.diskCheck {
		args = append(args, "--skip-disk-check")
	}
	return append(args, b.c.coralArgs...)
}

func (b *bench) applyPodsRBAC(ctx context.Context) error {
	kubectl := b.e.kubectl
	if kubectl == "" {
		kubectl = "kubectl"
	}
	out, err := exec.CommandContext(ctx, kubectl, "--kubeconfig", b.e.adminKubeconfig, "-n", b.e.namespace,
		"apply", "-f", "bench/scale/rbac-pods.yaml").CombinedOutput()
	if err != nil {
		return fmt.Errorf("applying bench/scale/rbac-pods.yaml: %v: %s", err, out)
	}
	return nil
}

func (b *bench) runTimeout(n int) time.Duration {
	if b.c.runTimeout > 0 {
		return b.c.runTimeout
	}
	return 180*time.Second + time.Duration(n)*600*time.Millisecond
}

// measure times one run from an empty namespace and collects its costs.
func (b *bench) measure(ctx context.Context, r *runResult, f *fates, jobsFile, failFile string) {
	if left := b.countObjects(ctx); left.undeleted() > 0 {
		logf("N=%d: %s in the namespace before the run; deleting them", r.N, left.String())
		b.sweep(ctx)
	}
	if d, err := b.drain(ctx, 10*time.Minute); err != nil {
		r.Err = "namespace not empty before the run: " + err.Error()
		return
	} else if d > 1 {
		logf("N=%d: waited %.1fs for the namespace to empty", r.N, d)
	}
	if d, err := b.waitKCMIdle(ctx); err != nil {
		r.Err = err.Error()
		return
	} else if d >= 2*kcmIdle {
		logf("N=%d: waited %.1fs for kube-controller-manager to stop writing", r.N, d.Seconds())
	}
	if err := b.audit.mark(); err != nil {
		r.Err = err.Error()
		return
	}
	cpu0 := b.daemonCPU()
	f.newRun()
	var err error
	switch {
	case r.Who == "bound":
		err = b.runBound(ctx, r, jobsFile, failFile, f.count[fateSilent])
	case r.Mode == "controller":
		err = b.runController(ctx, r, f)
	default:
		err = b.runCoral(ctx, r, f)
	}
	cpu1 := b.daemonCPU()
	r.APICPU = cpu1["kube-apiserver"] - cpu0["kube-apiserver"]
	r.KCMCPU = cpu1["kube-controller-manager"] - cpu0["kube-controller-manager"]
	r.KwokCPU = cpu1["kwok"] - cpu0["kwok"]
	if want := f.count[fateSilent]; err == nil && f.chosen() != want {
		err = fmt.Errorf("the pods of %d nodes appeared, fewer than the %d silent ones the run needs", f.chosen(), want)
	}
	if err != nil {
		r.Err = oneLine(err.Error())
	}
	// What the run left behind, and how long the cluster takes to remove it.
	// Objects the run did not delete (no deletion timestamp) would stay until
	// their TTL: the harness deletes them, and says so.
	left := b.countObjects(ctx)
	r.Left = left.String()
	if left.undeleted() > 0 {
		logf("N=%d %s %s: %s were not deleted by the run; deleting them", r.N, r.Mode, r.Who, left.String())
		b.sweep(ctx)
	}
	d, derr := b.drain(ctx, 10*time.Minute)
	r.Drain = d
	if derr != nil && r.Err == "" {
		r.Err = "after the run: " + derr.Error()
	}
	time.Sleep(time.Second) // the last audit events (watch ends) are written
	counts, aerr := b.audit.count()
	if aerr != nil && r.Err == "" {
		r.Err = aerr.Error()
	}
	user := map[string]string{"coral": "coral-bench", "bound": "coral-bound"}[r.Who]
	if r.Who == "coral" && r.Mode == "controller" {
		user = controllerUser
	}
	r.Req, r.Sim, r.KCM = counts[user], counts["coral-sim"], counts[kcmUser]
}

func (b *bench) runBound(ctx context.Context, r *runResult, jobsFile, failFile string, silent int) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, b.runTimeout(r.N)+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, self, "bound", "--kubeconfig", b.e.boundKubeconfig, "--namespace", b.e.namespace,
		"--jobs", jobsFile, "--mode", boundMode(r.Mode), "--fail", failFile, "--silent", strconv.Itoa(silent), "--timeout", b.runTimeout(r.N).String(),
		"--qps", strconv.FormatFloat(b.c.boundQPS, 'f', -1, 64), "--owner-lease="+strconv.FormatBool(b.c.boundOwnerLease))
	var stderr, stdout bytes.Buffer
	cmd.Stderr, cmd.Stdout = &stderr, &stdout
	runErr := cmd.Start()
	if runErr == nil {
		peak := sampleHWM(cmd.Process.Pid)
		runErr = cmd.Wait()
		rusage(cmd, r)
		r.RSSMB = peak()
	}
	out := stdout.Bytes()
	var res boundResult
	if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
		return fmt.Errorf("bound: %v: %s%s", runErr, out, stderr.String())
	}
	r.Wall, r.First, r.Last, r.Exit = res.Wall, res.First, res.Last, cmd.ProcessState.ExitCode()
	// Silent nodes are done for the bound once their pod runs; they count as failed.
	r.OK = res.Reported - res.Failed - silent
	r.Failed = res.Failed + silent + (res.Nodes - res.Reported)
	r.Detail = fmt.Sprintf("all creates answered at %.1fs", res.Created)
	switch {
	case res.TimedOut:
		return fmt.Errorf("bound timed out after %s with %d of %d nodes reported", b.runTimeout(r.N), res.Reported, res.Nodes)
	case res.Error != "":
		return errors.New("bound: " + res.Error)
	}
	return nil
}

// boundMode is the bound's mode for a run's: the controller makes Jobs.
func boundMode(mode string) string {
	if mode == "controller" {
		return "jobs"
	}
	return mode
}

// resultLine is a finished node in the plugin's plain progress output:
// "[12/1000] sim-00042: done (3.1s)" or "[13/1000] sim-00043: 1 failed: …".
var resultLine = regexp.MustCompile(`^\[\d+/\d+\] \S+: (done \(|\d+ failed: )`)

func (b *bench) runCoral(ctx context.Context, r *runResult, f *fates) error {
	args := append([]string{"prefetch", "images"}, b.images...)
	args = append(args, b.coralCommon()...)
	args = append(args, "--progress", b.c.progress, "-o", "json")
	if b.podsMode {
		args = append(args, "--mode="+r.Mode)
	}
	cctx, cancel := context.WithTimeout(ctx, b.runTimeout(r.N))
	defer cancel()
	cmd := exec.CommandContext(cctx, b.c.plugin, args...)
	// On the run's time limit Coral is interrupted like a user would (it
	// then deletes what it created), and killed 60s later.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGINT) }
	cmd.WaitDelay = 60 * time.Second
	// SCALE_GCTRACE=1 keeps Coral's garbage-collector trace (GODEBUG=gctrace=1:
	// live heap after each GC) in _output/scale-gctrace-<N>-<mode>.txt, to
	// tell the live heap from what the collector's pacing adds to RSS.
	var gctrace *os.File
	if os.Getenv("SCALE_GCTRACE") != "" {
		cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
		f, err := os.Create(fmt.Sprintf("_output/scale-gctrace-%d-%s.txt", r.N, r.Mode))
		if err != nil {
			return err
		}
		gctrace = f
		defer gctrace.Close()
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	peak := sampleHWM(cmd.Process.Pid)
	w := &progressWatch{bar: b.c.progress == "bar"}
	if gctrace != nil {
		w.gc = func(t float64, line string) { fmt.Fprintf(gctrace, "%.1f %s\n", t, line) }
	}
	w.read(stderr, start)
	waitErr := cmd.Wait()
	r.Wall = time.Since(start).Seconds()
	r.First, r.Last = w.first, w.last
	if w.prev > 0 && r.Wall-w.prev > w.gap {
		w.gap = r.Wall - w.prev
	}
	r.Gap = w.gap
	tail := w.tail
	r.Exit = cmd.ProcessState.ExitCode()
	rusage(cmd, r)
	r.RSSMB = peak()
	// Coral's own last words besides progress (e.g. a failed cleanup).
	var said []string
	for _, l := range tail {
		if !strings.HasPrefix(l, "run ") && !strings.HasPrefix(l, "finished in") && !strings.HasPrefix(l, "prefetching: ") {
			said = append(said, l)
		}
	}
	if len(said) > 0 {
		r.Detail = fmt.Sprintf("exit %d: %s", r.Exit, oneLine(strings.Join(said, " | ")))
	}
	if cctx.Err() != nil && ctx.Err() == nil {
		return fmt.Errorf("coral did not finish within %s (interrupted): %s", b.runTimeout(r.N), strings.Join(tail, " | "))
	}
	var rep report.PrefetchReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return fmt.Errorf("coral exited %d without a JSON report (%v): %s", r.Exit, waitErr, strings.Join(tail, " | "))
	}
	return checkReport(&rep, f, len(b.images), r)
}

// checkReport counts nodes with every item and nodes with a failure, and
// checks each node's outcome against its fate: ok nodes hold every image
// with the expected digest, fail nodes report the simulated failure of the
// first image, silent nodes fail on --timeout.
func checkReport(rep *report.PrefetchReport, f *fates, images int, r *runResult) error {
	type nodeOut struct {
		items, ok, failed int
		msgs              []string
		mismatch          bool
	}
	nodes := map[string]*nodeOut{}
	for _, res := range rep.Results {
		n := nodes[res.Node]
		if n == nil {
			n = &nodeOut{}
			nodes[res.Node] = n
		}
		n.items++
		if res.Status.Succeeded() {
			n.ok++
		} else {
			n.failed++
			n.msgs = append(n.msgs, res.Message)
		}
		if res.DigestMismatch || (res.Status.Succeeded() && res.Digest != res.ExpectedDigest) {
			n.mismatch = true
		}
	}
	var v verdicts
	for node := range f.byNode {
		ft, n := f.of(node), nodes[node]
		var why string
		switch {
		case n == nil:
			why = "missing from the report"
		case n.items != images:
			why = fmt.Sprintf("%d items, want %d", n.items, images)
		case n.mismatch:
			why = "digest differs from the expected one"
		case ft == fateOK && n.failed > 0:
			why = "failed: " + n.msgs[0]
		case ft == fateFail && (n.failed != 1 || !strings.Contains(n.msgs[0], "simulated failure")):
			why = fmt.Sprintf("want the simulated failure of one image, got %d failed %v", n.failed, n.msgs)
		case ft == fateSilent && (n.failed != images || !strings.Contains(n.msgs[0], "no report within")):
			why = fmt.Sprintf("want a --timeout failure, got %d failed %v", n.failed, n.msgs)
		}
		v.judge(r, node, ft, n != nil, n != nil && n.failed == 0, why)
	}
	return v.err()
}

// verdicts tallies each node's result against its fate.
type verdicts struct{ wrong []string }

// judge counts a node that has a result as ok or failed, and notes why
// it is not as simulated, if it is not.
func (v *verdicts) judge(r *runResult, node string, ft fate, seen, ok bool, why string) {
	switch {
	case seen && ok:
		r.OK++
	case seen:
		r.Failed++
	}
	if why != "" {
		v.wrong = append(v.wrong, fmt.Sprintf("%s (%s): %s", node, ft, why))
	}
}

func (v *verdicts) err() error {
	if len(v.wrong) > 0 {
		return fmt.Errorf("%d nodes not as simulated, e.g. %s", len(v.wrong), oneLine(v.wrong[0]))
	}
	return nil
}

// rusage takes a finished process's CPU seconds. Not its peak RSS: the
// kernel carries the parent's RSS high-water mark into a child that Go
// starts with vfork semantics and execs (exec_mmap keeps the old mm's
// hiwater in signal->maxrss), so ru_maxrss of a child of this large
// process reports this process's RSS (measured: /bin/true "used" 202 MB
// when started by a process holding 200 MB). sampleHWM reads the child's own.
func rusage(cmd *exec.Cmd, r *runResult) {
	if cmd.ProcessState == nil {
		return
	}
	r.CPU = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
}

// sampleHWM polls the process's own RSS high-water mark (VmHWM in
// /proc/PID/status, which starts afresh at exec) every 50 ms; the returned
// func stops polling and gives the highest value seen, in MB. The last
// ≤50 ms before the process exits are not seen.
func sampleHWM(pid int) func() float64 {
	var mu sync.Mutex
	var peakKB int64
	stop := make(chan struct{})
	done := make(chan struct{})
	path := fmt.Sprintf("/proc/%d/status", pid)
	go func() {
		defer close(done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if b, err := os.ReadFile(path); err == nil {
				for _, line := range strings.Split(string(b), "\n") {
					if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
						if kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64); err == nil {
							mu.Lock()
							peakKB = max(peakKB, kb)
							mu.Unlock()
						}
					}
				}
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() float64 {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return float64(peakKB) / 1024
	}
}

// objects counts the Jobs and pods in the namespace, and those of them no
// one has deleted.
type objects struct{ jobs, pods, liveJobs, livePods int }

func (o objects) undeleted() int { return o.liveJobs + o.livePods }

func (o objects) String() string {
	s := fmt.Sprintf("%d jobs, %d pods", o.jobs, o.pods)
	if o.undeleted() > 0 {
		s += fmt.Sprintf(" (undeleted: %d jobs, %d pods)", o.liveJobs, o.livePods)
	}
	return s
}

func (b *bench) countObjects(ctx context.Context) objects {
	var o objects
	jl, err1 := b.admin.BatchV1().Jobs(b.e.namespace).List(ctx, metav1.ListOptions{})
	pl, err2 := b.admin.CoreV1().Pods(b.e.namespace).List(ctx, metav1.ListOptions{})
	if err1 != nil || err2 != nil {
		return objects{jobs: -1, pods: -1}
	}
	o.jobs, o.pods = len(jl.Items), len(pl.Items)
	for _, j := range jl.Items {
		if j.DeletionTimestamp == nil {
			o.liveJobs++
		}
	}
	for _, p := range pl.Items {
		if p.DeletionTimestamp == nil && len(p.OwnerReferences) == 0 {
			o.livePods++ // a Job's pod goes with its Job
		}
	}
	return o
}

// sweep deletes every Job and bare pod left in the namespace, as the admin.
// One DeleteCollection is bounded by the API server's 60 s request timeout
// (it deletes one object at a time, --delete-collection-workers=1), so it is
// repeated until nothing undeleted is left.
func (b *bench) sweep(ctx context.Context) {
	bg := metav1.DeletePropagationBackground
	for range 20 {
		if b.countObjects(ctx).undeleted() == 0 || ctx.Err() != nil {
			return
		}
		_ = b.admin.BatchV1().Jobs(b.e.namespace).DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &bg}, metav1.ListOptions{})
		_ = b.admin.CoreV1().Pods(b.e.namespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	}
}

// drain waits until the namespace holds no Job and no pod (garbage
// collection of what a run deleted) and returns how long that took.
func (b *bench) drain(ctx context.Context, limit time.Duration) (float64, error) {
	t0 := time.Now()
	for {
		jl, err := b.admin.BatchV1().Jobs(b.e.namespace).List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			return 0, err
		}
		pl, err := b.admin.CoreV1().Pods(b.e.namespace).List(ctx, metav1.ListOptions{Limit: 1})
		if err != nil {
			return 0, err
		}
		if len(jl.Items) == 0 && len(pl.Items) == 0 {
			return time.Since(t0).Seconds(), nil
		}
		if time.Since(t0) > limit {
			return time.Since(t0).Seconds(), fmt.Errorf("jobs and pods still there after %s", limit)
		}
		select {
		case <-ctx.Done():
			return time.Since(t0).Seconds(), ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// daemonCPU reads the CPU seconds (user+system) of the control plane's
// daemons from /proc, by their recorded PIDs.
func (b *bench) daemonCPU() map[string]float64 {
	out := map[string]float64{}
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kwok"} {
		pid, err := os.ReadFile(filepath.Join(b.e.pidsDir, name+".pid"))
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(pid)), "stat"))
		if err != nil {
			continue
		}
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 13 {
			continue
		}
		ut, _ := strconv.ParseFloat(fields[11], 64)
		st, _ := strconv.ParseFloat(fields[12], 64)
		out[name] = (ut + st) / 100 // USER_HZ
	}
	return out
}

func memAvailableMB() float64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemAvailable:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func (b *bench) logRun(r *runResult) {
	status := "ok"
	if r.Err != "" {
		status = "ERROR: " + r.Err
	}
	logf("N=%d %s round %d %s: wall %.1fs first %.1fs last %.1fs longest silence %.1fs; %d ok / %d failed (want %d / %d); writes %d reads %d; rss %.0f MB cpu %.1fs; apiserver %.1fs kcm %.1fs kwok %.1fs; left %s, gone after %.1fs; %s",
		r.N, r.Mode, r.Round, r.Who, r.Wall, r.First, r.Last, r.Gap, r.OK, r.Failed, r.WantOK, r.WantBad, r.Req.Writes, r.Req.Reads,
		r.RSSMB, r.CPU, r.APICPU, r.KCMCPU, r.KwokCPU, r.Left, r.Drain, status)
	if len(r.Req.ByKind) > 0 {
		logf("  %s requests: %s; throttled (429) %d; completer: %d writes", r.Who, r.Req.breakdown(), r.Req.Throttled, r.Sim.Writes)
		if len(r.KCM.ByKind) > 0 {
			logf("  kube-controller-manager writes in the same window: %d (%s)", r.KCM.Writes, r.KCM.breakdown())
		}
		if s := r.Req.slow(); s != "" {
			logf("  %s requests that took 1s or more: %s", r.Who, s)
		}
	}
	if r.Detail != "" {
		logf("  %s: %s", r.Who, r.Detail)
	}
}

func (b *bench) printTable() {
	fmt.Println()
	fmt.Printf("%-6s %-10s %-2s %-6s %8s %7s %7s %6s %6s %7s %6s %5s %7s %7s %8s %7s %7s %-17s %-20s %7s\n",
		"N", "mode", "rd", "who", "wall_s", "first", "last", "gap_s", "ratio", "writes", "reads", "429s", "rss_mb", "cpu_s", "apisv_s", "kcm_s", "kwok_s", "nodes ok/failed", "left at exit", "gone_s")
	for _, r := range b.results {
		ratio, gap := "-", "-"
		if r.Who == "coral" {
			if r.Mode != "controller" { // the controller prints no progress
				gap = fmt.Sprintf("%.1f", r.Gap)
			}
			if bd := b.boundFor(r); bd > 0 {
				ratio = fmt.Sprintf("%.2f", r.Wall/bd)
			}
		}
		fmt.Printf("%-6d %-10s %-2d %-6s %8.1f %7.1f %7.1f %6s %6s %7d %6d %5d %7.0f %7.1f %8.1f %7.1f %7.1f %-17s %-20s %7.1f\n",
			r.N, r.Mode, r.Round, r.Who, r.Wall, r.First, r.Last, gap, ratio, r.Req.Writes, r.Req.Reads, r.Req.Throttled, r.RSSMB, r.CPU,
			r.APICPU, r.KCMCPU, r.KwokCPU, fmt.Sprintf("%d/%d (%d/%d)", r.OK, r.Failed, r.WantOK, r.WantBad), r.Left, r.Drain)
		if r.Err != "" {
			fmt.Printf("       error: %s\n", r.Err)
		}
	}
}
