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
	"k8s.io/client-go/kubernetes"
)

// waitingFailures are container waiting reasons that will not resolve on
// their own within a run: the node cannot start the worker.
var waitingFailures = map[string]bool{
	"ErrImagePull":               true,
	"ImagePullBackOff":           true,
	"InvalidImageName":           true,
	"ErrImageNeverPull":          true,
	"CreateContainerConfigError": true,
	"CreateContainerError":       true,
	"RunContainerError":          true,
}

// readPod decides whether pod holds a final outcome for its node. The
// worker container's Terminated state (with its report) is final as soon as
// it appears: the pod never restarts it (restartPolicy Never, backoffLimit
// 0), and waiting for phase Succeeded would add kubelet's teardown (about a
// second per node) to every run.
func (e *Engine) readPod(pod *corev1.Pod, nj NodeJob) (NodeResult, bool) {
	cs := workerStatus(pod)
	if cs != nil && cs.State.Terminated != nil {
		t := cs.State.Terminated
		if strings.TrimSpace(t.Message) != "" {
			return e.decode(pod, nj, t.Message), true
		}
		return failAll(nj, fmt.Sprintf("the worker exited with code %d (%s) without a report%s", t.ExitCode, t.Reason, podReason(pod))), true
	}
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed:
		return failAll(nj, "the worker pod "+strings.ToLower(string(pod.Status.Phase))+" before its container ran"+podReason(pod)), true
	}
	if cs != nil && cs.State.Waiting != nil && waitingFailures[cs.State.Waiting.Reason] {
		w := cs.State.Waiting
		if strings.Contains(w.Reason, "Image") {
			return failAll(nj, fmt.Sprintf("the node cannot pull the worker image %s (%s: %s); check --worker-image, or push the worker image where the node can reach it (make jobimage-push)", cs.Image, w.Reason, w.Message)), true
		}
		return failAll(nj, fmt.Sprintf("the node cannot start the worker (%s: %s)", w.Reason, w.Message)), true
	}
	return NodeResult{}, false
}

func workerStatus(pod *corev1.Pod) *corev1.ContainerStatus {
	for i := range pod.Status.ContainerStatuses {
		if pod.Status.ContainerStatuses[i].Name == jobs.ContainerName {
			return &pod.Status.ContainerStatuses[i]
		}
	}
	return nil
}

func podReason(pod *corev1.Pod) string {
	if pod.Status.Reason == "" && pod.Status.Message == "" {
		return ""
	}
	return fmt.Sprintf(": %s %s", pod.Status.Reason, pod.Status.Message)
}

// decode reads the worker's termination message; when the worker had to cut
// it (overflow), the full report is read from the pod log.
func (e *Engine) decode(pod *corev1.Pod, nj NodeJob, msg string) NodeResult {
	wr, err := report.DecodeTermination(msg, nj.Images, nj.Expected)
	if err != nil {
		return failAll(nj, err.Error())
	}
	if wr.Overflow {
		full, err := e.fullReport(pod)
		if err == nil && len(full.Items) == len(nj.Images) {
			wr = full
		} else {
			for i := range wr.Items {
				if wr.Items[i].Status == report.StatusFailed {
					wr.Items[i].Message = "failed (details in the worker log, which could not be read: " + errString(err) + ")"
				}
			}
		}
	}
	return NodeResult{Node: nj.Node, Items: wr.Items}
}

func errString(err error) string {
	if err == nil {
		return "item count differs"
	}
	return err.Error()
}

func (e *Engine) fullReport(pod *corev1.Pod) (*report.WorkerReport, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rc, err := e.Client.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{Container: jobs.ContainerName}).Stream(ctx)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return report.DecodeFull(rc)
}

// Preflight asks the API server, without creating anything, whether the
// run's Jobs and their pods would be admitted: RBAC, quota, Pod Security and
// admission webhooks. Server-side dry-run runs every admission step.
func Preflight(ctx context.Context, client kubernetes.Interface, job *batchv1.Job) error {
	dry := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}
	if _, err := client.BatchV1().Jobs(job.Namespace).Create(ctx, job, dry); err != nil {
		return fmt.Errorf("the API server would not accept the worker Job: %s", explainAPIError(err, job.Namespace))
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: job.Name + "-preflight-", Namespace: job.Namespace, Labels: job.Spec.Template.Labels},
		Spec:       job.Spec.Template.Spec,
	}
	if _, err := client.CoreV1().Pods(job.Namespace).Create(ctx, pod, dry); err != nil {
		// Without permission to create pods directly we learn nothing here;
		// the Job controller (which has it) will be the judge.
		if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "cannot create resource") {
			return nil
		}
		return fmt.Errorf("the worker pod would be rejected: %s", explainAPIError(err, job.Namespace))
	}
	return nil
}
