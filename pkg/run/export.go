package run

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
)

// This file exports, for the controller (pkg/controller), the engine's
// reading of worker pods, so a level-based reconciler decodes results the
// same way a CLI run does. Thin wrappers only: the logic stays in pod.go and
// engine.go.

// ReadWorkerPod decides whether a worker pod holds its node's final outcome
// and decodes it (the termination-message report; the pod log when the
// worker had to cut the report). ok is false while the pod is still working.
// client is used only to read the log in that overflow case.
func ReadWorkerPod(client kubernetes.Interface, pod *corev1.Pod, nj NodeJob) (res NodeResult, ok bool) {
	e := &Engine{Client: client, Namespace: pod.Namespace}
	return e.readPod(pod, nj)
}

// FailedNode is the result of a node that failed as a whole: every item
// Failed with msg.
func FailedNode(nj NodeJob, msg string) NodeResult { return failAll(nj, msg) }

// ExplainAPIError turns an API error about creating worker Jobs in ns into
// a message that says what to do (RBAC, Pod Security, a missing namespace).
func ExplainAPIError(err error, ns string) string { return explainAPIError(err, ns) }
