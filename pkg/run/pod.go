package run

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/coral-dev/coral/pkg/jobs"
	"github.com/coral-dev/coral/pkg/report"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// startFailures are container waiting reasons that say kubelet cannot
// start the worker. Kubelet retries most of them (a registry hiccup while
// pulling the worker image, a runtime that is briefly busy), so they fail
// the node only when they last (Engine.WorkerStartGrace); the ones marked
// final cannot resolve by retrying.
var startFailures = map[string]bool{
	"ErrImagePull":               false,
	"ImagePullBackOff":           false,
	"CreateContainerConfigError": false,
	"CreateContainerError":       false,
	"RunContainerError":          false,
	"InvalidImageName":           true,
	"ErrImageNeverPull":          true,
}

// podOutcome is what one look at a worker pod says about its node.
type podOutcome struct {
	final   bool
	results []report.ItemResult
	failure string // the node failed as a whole (no report)
	// needLog: the termination message overflowed; the full report is in
	// the worker's log.
	needLog bool
	items   []string
	// waiting is kubelet's reason it cannot start the worker (not final
	// unless waitingFinal).
	waiting      string
	waitingFinal bool
}

func (o podOutcome) result(node string) NodeResult {
	if o.failure != "" {
		return failAll(&nodeState{node: node, items: o.items}, o.failure)
	}
	return NodeResult{Node: node, Items: o.results}
}

// readPod decides, without I/O, what a worker pod says about its node. The
// worker container's Terminated state (with its report) is final as soon as
// it appears: the pod never restarts it (restartPolicy Never, backoffLimit
// 0), and waiting for phase Succeeded would add kubelet's teardown (about a
// second per node) to every run.
func readPod(pod *corev1.Pod, items, expected []string) podOutcome {
	out := podOutcome{items: items}
	cs := workerStatus(pod)
	if cs != nil && cs.State.Terminated != nil {
		t := cs.State.Terminated
		out.final = true
		if strings.TrimSpace(t.Message) == "" {
			out.failure = fmt.Sprintf("the worker exited with code %d (%s) without a report%s", t.ExitCode, t.Reason, podReason(pod))
			return out
		}
		wr, err := report.DecodeTermination(t.Message, items, expected)
		if err != nil {
			out.failure = err.Error()
			return out
		}
		out.results = wr.Items
		out.needLog = wr.Overflow
		return out
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		out.final = true
		if why := disruption(pod); why != "" {
			// The pod was stopped from outside: its node went away (PodGC),
			// it was evicted or preempted — say that, not "never ran".
			out.failure = "the worker pod was stopped before it reported: " + why
			return out
		}
		out.failure = "the worker pod " + strings.ToLower(string(pod.Status.Phase)) + " before its container ran" + podReason(pod)
		return out
	}
	if cs != nil && cs.State.Waiting != nil {
		w := cs.State.Waiting
		final, known := startFailures[w.Reason]
		if !known {
			return out
		}
		out.waitingFinal = final
		if strings.Contains(w.Reason, "Image") {
			out.waiting = fmt.Sprintf("the node cannot pull the worker image %s (%s: %s); check --worker-image, or push the worker image where the node can reach it (make jobimage-push)", cs.Image, w.Reason, w.Message)
		} else {
			out.waiting = fmt.Sprintf("the node cannot start the worker (%s: %s)", w.Reason, w.Message)
		}
	}
	return out
}

// settled says whether readPod's look is final (final or waitingFinal),
// without decoding a report: the same three cases, in its order.
func settled(pod *corev1.Pod) bool {
	cs := workerStatus(pod)
	if cs != nil && cs.State.Terminated != nil {
		return true
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return true
	}
	return cs != nil && cs.State.Waiting != nil && startFailures[cs.State.Waiting.Reason]
}

func workerStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == jobs.ContainerName {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// disruption is the reason of a pod's DisruptionTarget condition, which
// the pod garbage collector (node deleted), eviction and preemption set.
func disruption(pod *corev1.Pod) string {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.DisruptionTarget && c.Status == corev1.ConditionTrue {
			msg := c.Message
			if msg == "" {
				msg = c.Reason
			}
			if strings.Contains(msg, "node no longer exists") || c.Reason == "DeletionByPodGC" {
				msg += " (the node was deleted)"
			}
			return msg
		}
	}
	return ""
}

func podReason(pod *corev1.Pod) string {
	if pod.Status.Reason == "" && pod.Status.Message == "" {
		return ""
	}
	return fmt.Sprintf(": %s %s", pod.Status.Reason, pod.Status.Message)
}

// withFullReport replaces an overflowed compact report with the full one
// from the worker's log; when the log cannot be read, the statuses of the
// compact report stay and failed items say where the details are.
func (r *runner) withFullReport(ctx context.Context, pod string, st *nodeState, out podOutcome) NodeResult {
	full, err := r.fullReport(ctx, pod)
	if err == nil && len(full.Items) == len(st.items) {
		return NodeResult{Node: st.node, Items: full.Items}
	}
	items := append([]report.ItemResult(nil), out.results...)
	for i := range items {
		if items[i].Status == report.StatusFailed {
			items[i].Message = "failed (details in the worker log, which could not be read: " + errString(err) + ")"
		}
	}
	return NodeResult{Node: st.node, Items: items}
}

func errString(err error) string {
	if err == nil {
		return "item count differs"
	}
	return err.Error()
}

func (r *runner) fullReport(ctx context.Context, pod string) (*report.WorkerReport, error) {
	rc, err := r.e.openLog(ctx, pod, false)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return report.DecodeFull(rc)
}

// Preflight asks the API server, without creating anything, whether the
// run's workers would be admitted: RBAC, quota, Pod Security and admission
// webhooks. Server-side dry-run runs every admission step. In jobs mode the
// Job is checked, and its pod when the caller may create pods (the Job
// controller, which may, is the judge otherwise); in pods mode the pod.
func Preflight(ctx context.Context, client kubernetes.Interface, job *batchv1.Job, mode Mode) error {
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	if mode != ModePods {
		if _, err := client.BatchV1().Jobs(job.Namespace).Create(ctx, job, dry); err != nil {
			return fmt.Errorf("the API server would not accept the worker Job: %s", explainAPIError(err, job.Namespace))
		}
	}
	pod := jobs.WorkerPod(job)
	pod.Name, pod.GenerateName = "", job.Name+"-preflight-"
	err := createDryPod(ctx, client, pod)
	switch {
	case err == nil:
		return nil
	case mode != ModePods && apierrors.IsForbidden(err) && strings.Contains(err.Error(), "cannot create resource"):
		return nil
	case noServiceAccountYet(err):
		// Not RBAC, whatever Forbidden says: explainAPIError's hint would mislead.
		return fmt.Errorf("the worker pod would be rejected: %v (kube-controller-manager gives a new namespace its \"default\" service account within seconds; none came in %s: is its serviceaccount controller running?)",
			err, ServiceAccountWait)
	default:
		return fmt.Errorf("the worker pod would be rejected: %s", explainAPIError(err, job.Namespace))
	}
}

// ServiceAccountWait is how long Preflight waits for a namespace's
// "default" service account: a namespace created a moment before the run
// (a deploy script's `kubectl create namespace`) has none until
// kube-controller-manager makes it, and until then ServiceAccount
// admission refuses every pod, the worker's too (it mounts no token).
var ServiceAccountWait = 10 * time.Second

// createDryPod dry-runs the pod's create, again every 200 ms while the
// namespace has no service account yet (at most ServiceAccountWait).
func createDryPod(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod) error {
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	var err error
	_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, ServiceAccountWait, true, func(context.Context) (bool, error) {
		// The caller's ctx, not the poll's: a create must not be cut short
		// by the wait's own deadline, whose error would hide the answer.
		_, err = client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, dry)
		return !noServiceAccountYet(err), nil
	})
	return err
}

// noServiceAccountYet says whether err is ServiceAccount admission refusing
// a pod because the namespace's service account does not exist (yet).
func noServiceAccountYet(err error) bool {
	return err != nil && apierrors.IsForbidden(err) && strings.Contains(err.Error(), "error looking up service account") && strings.Contains(err.Error(), "not found")
}
