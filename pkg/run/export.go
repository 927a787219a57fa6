package run

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
)

// This file exports, for the controller (pkg/controller), the engine's
// reading of worker pods, so a level-based reconciler decodes results the
// same way a CLI run does. Thin wrappers only: the logic stays in pod.go and
// engine.go.

// ReadWorkerPod decides whether a worker pod holds its node's final outcome
// and decodes it (the termination-message report; the pod log, read within
// 20 s, when the worker had to cut the report). ok is false while the pod
// is still working — also while kubelet retries pulling or starting the
// worker image, which only a deadline turns into a failure; a reason that
// cannot resolve by retrying (an invalid image name) is final at once.
func ReadWorkerPod(client kubernetes.Interface, pod *corev1.Pod, nj NodeJob) (res NodeResult, ok bool) {
	out := readPod(pod, nj.Items, nj.Expected)
	st := &nodeState{node: nj.Node, items: nj.Items, expected: nj.Expected}
	switch {
	case out.needLog:
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		r := &runner{e: &Engine{Client: client, Namespace: pod.Namespace}}
		return r.withFullReport(ctx, pod.Name, st, out), true
	case out.final:
		return out.result(nj.Node), true
	case out.waitingFinal:
		return failAll(st, out.waiting), true
	}
	return NodeResult{}, false
}

// WorkerSettled says, parsing nothing, whether ReadWorkerPod would find an
// outcome in a worker pod now: its container exited, the pod ended, or
// kubelet can never start it. A controller asks it of every Job in flight
// at every reconcile before it decodes the Job's items.
func WorkerSettled(pod *corev1.Pod) bool { return settled(pod) }

// WorkerWaiting is kubelet's reason it cannot (yet) start a worker pod's
// container, or "": what a controller reports when the node's deadline passes.
func WorkerWaiting(pod *corev1.Pod) string { return readPod(pod, nil, nil).waiting }

// FailedNode is the result of a node that failed as a whole: every item
// Failed with msg.
func FailedNode(nj NodeJob, msg string) NodeResult {
	return failAll(&nodeState{node: nj.Node, items: nj.Items}, msg)
}

// ExplainAPIError turns an API error about creating worker Jobs in ns into
// a message that says what to do (RBAC, Pod Security, a missing namespace).
func ExplainAPIError(err error, ns string) string { return explainAPIError(err, ns) }
