// Package jobs builds the batch/v1 Job that carries one plan.Task to its
// node. It is pure: the same Task and Spec always give the same Job.
package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/coral-dev/coral/pkg/plan"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Labels and annotations on every object a run creates.
const (
	LabelRunID     = "coral.dev/run-id"
	LabelComponent = "app.kubernetes.io/component"
	LabelName      = "app.kubernetes.io/name"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	AnnotationNode = "coral.dev/node"

	// ContainerName is the worker container's name.
	ContainerName = "worker"
	// SocketMountPath is where the node's runtime socket appears in the worker.
	SocketMountPath = "/run/coral/cri.sock"
	// PullSecretsMountPath holds the mounted pull secrets (tmpfs, read-only).
	PullSecretsMountPath = "/var/run/coral/pull-secrets"
)

// Spec is what every Job of a run shares.
type Spec struct {
	RunID           string
	Namespace       string
	WorkerImage     string
	ImagePullPolicy corev1.PullPolicy
	// Deadline bounds the Job (activeDeadlineSeconds); the plugin's own
	// per-node timeout should be a little shorter.
	Deadline time.Duration
	// TTL removes finished Jobs even if the plugin dies before cleanup.
	TTL time.Duration
	// MaxPullsPerNode bounds concurrent pulls inside one worker.
	MaxPullsPerNode int
	// ImageTimeout bounds one image (all its attempts) inside the worker.
	ImageTimeout time.Duration
	// Retries is the worker's retry count for transient errors.
	Retries int
	// PullSecrets are secrets (in Namespace) of type kubernetes.io/dockerconfigjson
	// or kubernetes.io/dockercfg: name → type.
	PullSecrets []PullSecret
	// WorkerPullSecrets are image pull secrets for the worker image itself.
	WorkerPullSecrets []string
	// Pin asks the worker to pin the images against kubelet's image GC.
	Pin bool
	// Unpin makes the Job release the images' pins instead of pulling them.
	Unpin bool
	// PriorityClassName, when set, is given to worker pods.
	PriorityClassName string
	// HostNetwork runs a pull or unpin worker (ForTask) in the node's network
	// namespace. That worker opens no network connection — the runtime does
	// the pulls, the worker only talks to its socket — so it needs no pod
	// network, and skipping its setup (CNI ADD, and DEL at the end) starts the
	// worker ~0.1–0.3 s sooner and spares the node that work (docs/scale.md,
	// "Single-run overhead"). Artifact workers download, so they always use
	// the pod network (and its DNS and network policies): ForArtifactTask
	// ignores this.
	HostNetwork bool
}

// PullSecret names a secret and its type.
type PullSecret struct {
	Name string
	Type corev1.SecretType
}

// Name returns the Job name for a node: stable for a run and node, valid as
// a DNS label and as a label value (the job-name label), and unique even when
// long node names share a prefix.
func Name(runID, node string) string {
	sum := sha256.Sum256([]byte(node))
	h := hex.EncodeToString(sum[:])[:6]
	s := sanitize(node)
	const max = 63 - len("coral--") - 6 - 1 // room for run id and hash
	room := max - len(runID)
	if len(s) > room {
		s = strings.Trim(s[:room], "-")
	}
	return fmt.Sprintf("coral-%s-%s-%s", runID, s, h)
}

var notDNS = regexp.MustCompile(`[^a-z0-9-]+`)

func sanitize(s string) string {
	return strings.Trim(notDNS.ReplaceAllString(strings.ToLower(s), "-"), "-")
}

// RunLabels are the labels that identify a run's objects.
func RunLabels(runID string) map[string]string {
	return map[string]string{
		LabelName:      "coral",
		LabelComponent: "prefetch-worker",
		LabelManagedBy: "kubectl-coral",
		LabelRunID:     runID,
	}
}

// RunSelector selects every object of a run.
func RunSelector(runID string) string { return LabelRunID + "=" + runID }

// ImageArg is how an item is passed to the worker: REF or REF=DIGEST.
func ImageArg(it plan.Item) string {
	if it.ExpectedDigest == "" {
		return it.Ref
	}
	return it.Ref + "=" + it.ExpectedDigest
}

// ForTask builds the Job that pulls a task's images through the node's
// runtime socket.
func ForTask(t plan.Task, s Spec) *batchv1.Job {
	args := []string{
		"pull",
		"--runtime-endpoint=unix://" + SocketMountPath,
		fmt.Sprintf("--max-parallel=%d", s.MaxPullsPerNode),
		fmt.Sprintf("--image-timeout=%s", s.ImageTimeout),
		fmt.Sprintf("--retries=%d", s.Retries),
	}
	if len(s.PullSecrets) > 0 {
		args = append(args, "--auth-dir="+PullSecretsMountPath)
	}
	if s.Pin {
		args = append(args, "--pin")
	}
	for _, it := range t.Items {
		args = append(args, "--image="+ImageArg(it))
	}
	if s.Unpin {
		args[0] = "unpin"
	}

	volumes := []corev1.Volume{{
		Name: "cri-socket",
		VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
			Path: t.RuntimeSocket,
			Type: ptr.To(corev1.HostPathSocket),
		}},
	}}
	mounts := []corev1.VolumeMount{{Name: "cri-socket", MountPath: SocketMountPath, ReadOnly: true}}
	if len(s.PullSecrets) > 0 {
		var sources []corev1.VolumeProjection
		for i, ps := range s.PullSecrets {
			key, file := corev1.DockerConfigJsonKey, fmt.Sprintf("%02d-%s.json", i, ps.Name)
			if ps.Type == corev1.SecretTypeDockercfg {
				key, file = corev1.DockerConfigKey, fmt.Sprintf("%02d-%s.dockercfg", i, ps.Name)
			}
			sources = append(sources, corev1.VolumeProjection{Secret: &corev1.SecretProjection{
				LocalObjectReference: corev1.LocalObjectReference{Name: ps.Name},
				Items:                []corev1.KeyToPath{{Key: key, Path: file}},
			}})
		}
		volumes = append(volumes, secretVolume("pull-secrets", sources))
		mounts = append(mounts, corev1.VolumeMount{Name: "pull-secrets", MountPath: PullSecretsMountPath, ReadOnly: true})
	}
	j := job(t, s, "prefetch-worker", args, volumes, mounts)
	j.Spec.Template.Spec.HostNetwork = s.HostNetwork
	return j
}

// secretVolume is a read-only (0400) projected volume: tmpfs, never the node's disk.
func secretVolume(name string, sources []corev1.VolumeProjection) corev1.Volume {
	return corev1.Volume{
		Name: name,
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources:     sources,
			DefaultMode: ptr.To[int32](0o400),
		}},
	}
}

// workerResources is what a worker asks for and may use. The request is
// small: the images worker waits on the runtime, which pulls and unpacks
// outside the pod. The CPU limit is one core, not less: a CFS quota stops a
// process for the rest of its 100 ms period once it has used its share, and
// the worker's own work comes in bursts. At 250m (before) an images worker,
// which spends ~40 ms of CPU starting and dialling the socket, was throttled
// in 16 of 24 periods and took ~175 ms instead of ~90 ms, and an artifact
// worker hashing 512 MiB as it streams took 3.7–4.4 s instead of 1.1–1.3 s
// (the worker binary in a v1 CPU cgroup at each quota, docs/scale.md,
// "Session 12"). One core still bounds what a worker can take from a node.
func workerResources() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("32Mi"),
		},
		Limits: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("1"),
			corev1.ResourceMemory: resource.MustParse("128Mi"),
		},
	}
}

// job is the skeleton every worker Job shares: pinning, least privilege,
// tolerations, deadlines, labels.
func job(t plan.Task, s Spec, component string, args []string, volumes []corev1.Volume, mounts []corev1.VolumeMount) *batchv1.Job {
	labels := RunLabels(s.RunID)
	labels[LabelComponent] = component
	var imagePullSecrets []corev1.LocalObjectReference
	for _, n := range s.WorkerPullSecrets {
		imagePullSecrets = append(imagePullSecrets, corev1.LocalObjectReference{Name: n})
	}

	return &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        Name(s.RunID, t.Node),
			Namespace:   s.Namespace,
			Labels:      labels,
			Annotations: map[string]string{AnnotationNode: t.Node},
		},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptr.To[int32](0),
			ActiveDeadlineSeconds:   ptr.To(int64(s.Deadline.Seconds())),
			TTLSecondsAfterFinished: ptr.To(int32(s.TTL.Seconds())),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      labels,
					Annotations: map[string]string{AnnotationNode: t.Node},
				},
				Spec: corev1.PodSpec{
					// Pinned: no scheduler hop, and the pod cannot land anywhere else.
					NodeName:                     t.Node,
					RestartPolicy:                corev1.RestartPolicyNever,
					AutomountServiceAccountToken: ptr.To(false),
					EnableServiceLinks:           ptr.To(false),
					PriorityClassName:            s.PriorityClassName,
					ImagePullSecrets:             imagePullSecrets,
					// Tainted nodes still get their images.
					Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					TerminationGracePeriodSeconds: ptr.To[int64](5),
					SecurityContext: &corev1.PodSecurityContext{
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:                     ContainerName,
						Image:                    s.WorkerImage,
						ImagePullPolicy:          s.ImagePullPolicy,
						Args:                     args,
						VolumeMounts:             mounts,
						Resources:                workerResources(),
						TerminationMessagePath:   corev1.TerminationMessagePathDefault,
						TerminationMessagePolicy: corev1.TerminationMessageReadFile,
						SecurityContext: &corev1.SecurityContext{
							Privileged:               ptr.To(false),
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
							// The runtime socket is root-owned (0660): the worker runs as
							// uid 0 but with every capability dropped, so it can open the
							// socket and nothing else a root process could.
							RunAsUser:    ptr.To[int64](0),
							RunAsNonRoot: ptr.To(false),
						},
					}},
					Volumes: volumes,
				},
			},
		},
	}
}

// WorkerPod is the pod a worker Job would make, created directly (the
// engine's pods mode): the same spec, labels and annotations, the Job's
// name and owners, and its deadline on the pod itself.
func WorkerPod(job *batchv1.Job) *corev1.Pod {
	t := job.Spec.Template
	pod := &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            job.Name,
			Namespace:       job.Namespace,
			Labels:          t.Labels,
			Annotations:     t.Annotations,
			OwnerReferences: job.OwnerReferences,
		},
		Spec: *t.Spec.DeepCopy(),
	}
	pod.Spec.ActiveDeadlineSeconds = job.Spec.ActiveDeadlineSeconds
	return pod
}
