package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	"github.com/coral-dev/coral/pkg/controller"
	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// Controller mode (--modes controller): the real coral-controller
// (cmd/coral-controller) as its own non-admin user, coral-ctl, with exactly
// the ClusterRole `kubectl coral install` gives it (config/rbac/role.yaml).
// One ImagePrefetch selects the N simulated nodes; the run is timed from its
// creation to the last node's PrefetchNode record (the controller's output:
// one per node, Ready or Failed), and its status must then count every node.
// Its bound is Job mode's: the controller makes the same worker Jobs.
//
// The controller runs with --leader-elect=false (one replica: the Lease's
// renewals, a write every 2 s, would only add a constant) and failed nodes
// are not retried within the run (--retry-base 1h): a retry is a new Job for
// a node already counted.

const (
	controllerUser = "coral-ctl"
	prefetchName   = "scale"
)

// setUpController installs the CRDs and the controller's RBAC, once.
func (b *bench) setUpController(ctx context.Context) error {
	if b.ctl != nil {
		return nil
	}
	if b.e.controllerKubeconfig == "" {
		return fmt.Errorf("the scale control plane has no controller user (SCALE_CONTROLLER_KUBECONFIG): restart it with this version of e2e/cluster/scale-up.sh")
	}
	kubectl := b.e.kubectl
	if kubectl == "" {
		kubectl = "kubectl"
	}
	for _, args := range [][]string{
		{"apply", "--server-side", "-f", "config/crd/"},
		{"wait", "--for", "condition=Established", "--timeout", "60s", "-f", "config/crd/"},
		{"-n", b.e.namespace, "apply", "-f", "config/rbac/role.yaml", "-f", "bench/scale/rbac-controller.yaml"},
	} {
		out, err := exec.CommandContext(ctx, kubectl, append([]string{"--kubeconfig", b.e.adminKubeconfig}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", b.e.adminKubeconfig)
	if err != nil {
		return err
	}
	cfg.UserAgent = "coral-scale-harness"
	ctrllog.SetLogger(logr.Discard()) // the harness's client logs nothing worth reading
	cfg.QPS, cfg.Burst = 100, 200
	b.ctl, err = client.NewWithWatch(cfg, client.Options{Scheme: controller.Scheme()})
	return err
}

func (b *bench) runController(ctx context.Context, r *runResult, f *fates) error {
	if err := b.setUpController(ctx); err != nil {
		return err
	}
	limit := b.runTimeout(r.N)
	cctx, cancel := context.WithTimeout(ctx, limit+2*time.Minute)
	defer cancel()

	logFile, err := os.Create(fmt.Sprintf("%s/controller-%d-%d.log", b.work, r.N, r.Round))
	if err != nil {
		return err
	}
	defer logFile.Close()
	args := []string{"--worker-image", "registry.invalid/coral/worker:scale", "--leader-elect=false",
		"--metrics-bind-address=0", "--health-probe-bind-address=0", "--retry-base=1h", "--retry-max=1h"}
	cmd := exec.CommandContext(cctx, b.c.controller, append(args, b.c.controllerArgs...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+b.e.controllerKubeconfig)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", b.c.controller, err)
	}
	peak := sampleHWM(cmd.Process.Pid)
	synced := make(chan struct{})
	var tail lastLines
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			tail.add(line)
			if strings.Contains(line, "Starting workers") && strings.Contains(line, `"imageprefetch"`) {
				once.Do(func() { close(synced) })
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		rusage(cmd, r)
		r.RSSMB = peak()
		r.Exit = cmd.ProcessState.ExitCode()
	}
	t0 := time.Now()
	select {
	case <-synced:
	case <-time.After(2 * time.Minute):
		stop()
		return fmt.Errorf("the controller did not start its workers within 2m: %s", tail.String())
	case <-cctx.Done():
		stop()
		return cctx.Err()
	}
	r.Detail = fmt.Sprintf("controller started (caches synced) in %.1fs", time.Since(t0).Seconds())

	err = b.timeController(cctx, r, f, limit)
	// Deleting the object ends the run: the controller deletes the Jobs it
	// still has, the garbage collector the PrefetchNodes.
	derr := b.ctl.Delete(ctx, &coralv1.ImagePrefetch{ObjectMeta: metav1.ObjectMeta{Name: prefetchName, Namespace: b.e.namespace}})
	if derr != nil && !apierrors.IsNotFound(derr) && err == nil {
		err = fmt.Errorf("deleting the ImagePrefetch: %w", derr)
	}
	if werr := b.waitPrefetchGone(ctx, time.Minute); werr != nil && err == nil {
		err = werr
	}
	stop()
	if err != nil {
		return fmt.Errorf("%w; the controller's last lines: %s", err, tail.String())
	}
	return nil
}

// timeController creates the ImagePrefetch and waits for a record of every
// node, then checks the records against the nodes' fates and the status's
// counts.
func (b *bench) timeController(ctx context.Context, r *runResult, f *fates, limit time.Duration) error {
	ip := &coralv1.ImagePrefetch{
		ObjectMeta: metav1.ObjectMeta{Name: prefetchName, Namespace: b.e.namespace},
		Spec: coralv1.ImagePrefetchSpec{
			Images: b.images,
			Nodes:  coralv1.Nodes{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{b.e.nodeLabel: "true"}}},
		},
	}
	ip.Spec.NodeTimeout = &metav1.Duration{Duration: b.c.nodeTimeout}
	if b.c.ctlMaxNodesInFlight > 0 {
		ip.Spec.MaxNodesInFlight = int32(b.c.ctlMaxNodesInFlight)
	}
	var list coralv1.PrefetchNodeList
	sel := client.MatchingLabels{controller.LabelImagePrefetch: prefetchName}
	w, err := b.ctl.Watch(ctx, &list, client.InNamespace(b.e.namespace), sel)
	if err != nil {
		return err
	}
	defer w.Stop()
	start := time.Now()
	if err := b.ctl.Create(ctx, ip); err != nil {
		return fmt.Errorf("creating the ImagePrefetch: %w", err)
	}
	records := map[string]*coralv1.PrefetchNode{}
	deadline := time.After(limit)
	for len(records) < r.N {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				return fmt.Errorf("the PrefetchNode watch ended after %d of %d nodes", len(records), r.N)
			}
			pn, isPN := ev.Object.(*coralv1.PrefetchNode)
			if !isPN || ev.Type == watch.Deleted || pn.State == "" {
				continue
			}
			if _, seen := records[pn.Node]; !seen && len(records) == 0 {
				r.First = time.Since(start).Seconds()
			}
			records[pn.Node] = pn
			r.Last = time.Since(start).Seconds()
		case <-deadline:
			return fmt.Errorf("%d of %d nodes recorded after %s", len(records), r.N, limit)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.Wall = r.Last

	// The status must count every node; it is written after the records.
	var st coralv1.PrefetchStatus
	for t := time.Now(); ; {
		var got coralv1.ImagePrefetch
		if err := b.ctl.Get(ctx, client.ObjectKeyFromObject(ip), &got); err != nil {
			return err
		}
		st = got.Status.PrefetchStatus
		if st.DesiredNodes == int32(r.N) && st.ReadyNodes+st.FailedNodes == int32(r.N) {
			r.Detail += fmt.Sprintf("; status counted every node %.1fs after the last record (ready %d, failed %d)", time.Since(start).Seconds()-r.Last, st.ReadyNodes, st.FailedNodes)
			break
		}
		if time.Since(t) > 30*time.Second {
			return fmt.Errorf("status 30s after the last record: desired %d ready %d failed %d in flight %d, want %d nodes", st.DesiredNodes, st.ReadyNodes, st.FailedNodes, st.InFlightNodes, r.N)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return checkRecords(records, f, len(b.images), r)
}

// checkRecords checks each node's PrefetchNode against its fate, as
// checkReport does Coral's report.
func checkRecords(records map[string]*coralv1.PrefetchNode, f *fates, images int, r *runResult) error {
	var v verdicts
	for node := range f.byNode {
		ft, pn := f.of(node), records[node]
		var why string
		failed := 0
		if pn != nil {
			for _, it := range pn.Results {
				if it.Status == "Failed" {
					failed++
				}
			}
		}
		switch {
		case pn == nil:
			why = "no record"
		case ft == fateOK && (pn.State != "Ready" || len(pn.Results) != images):
			why = fmt.Sprintf("want Ready with %d results, got %s with %d: %s", images, pn.State, len(pn.Results), pn.Message)
		case ft == fateFail && (pn.State != "Failed" || failed != 1 || !strings.Contains(pn.Message, "simulated failure")):
			why = fmt.Sprintf("want the simulated failure of one image, got %s (%d failed): %s", pn.State, failed, pn.Message)
		case ft == fateSilent && pn.State != "Failed":
			why = fmt.Sprintf("want Failed (no report within nodeTimeout), got %s: %s", pn.State, pn.Message)
		}
		v.judge(r, node, ft, pn != nil, pn != nil && pn.State == "Ready", why)
	}
	return v.err()
}

func (b *bench) waitPrefetchGone(ctx context.Context, limit time.Duration) error {
	t0 := time.Now()
	for {
		var got coralv1.ImagePrefetch
		err := b.ctl.Get(ctx, client.ObjectKey{Namespace: b.e.namespace, Name: prefetchName}, &got)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if time.Since(t0) > limit {
			return fmt.Errorf("the ImagePrefetch still exists %s after its deletion (finalizers %v)", limit, got.Finalizers)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// lastLines keeps the last few lines of a stream.
type lastLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *lastLines) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
	if len(l.lines) > 5 {
		l.lines = l.lines[1:]
	}
}

func (l *lastLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return oneLine(strings.Join(l.lines, " | "))
}
