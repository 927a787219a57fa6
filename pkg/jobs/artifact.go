package jobs

import (
	"fmt"
	"sort"
	"time"

	"github.com/coral-dev/coral/pkg/artifact"
	"github.com/coral-dev/coral/pkg/plan"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Where artifacts live, and how the worker sees them.
const (
	// DefaultArtifactRoot holds one directory per artifact name on each node.
	DefaultArtifactRoot = artifact.DefaultRoot
	// ArtifactMountPath is the artifact's directory inside the worker.
	ArtifactMountPath = "/artifact"
	// S3CredentialsMountPath holds the S3 secret's keys (tmpfs, read-only).
	S3CredentialsMountPath = "/var/run/coral/s3"
	// HeadersMountPath holds the HTTP header secret's keys (tmpfs, read-only).
	HeadersMountPath = "/var/run/coral/headers"
	// QueriesMountPath holds the run's URL queries (tmpfs, read-only).
	QueriesMountPath = "/var/run/coral/queries"
	// ChecksumQueryKey is the key of the checksum URL's query in the run's
	// query secret; sources' queries are under QueryKey(i).
	ChecksumQueryKey = "checksum-url"
)

// QueryKey is the key of the i-th source's query in the run's query secret.
func QueryKey(i int) string { return fmt.Sprintf("source-%d", i) }

// QuerySecretName is the name of the Secret that carries a run's URL queries.
func QuerySecretName(runID string) string { return "coral-" + runID + "-queries" }

// ArtifactQuerySecret is the Secret that carries the query strings of a
// run's URLs (pre-signed URLs keep their credentials there) to its workers,
// so that Job arguments, logs and reports never hold them. The run deletes
// it at its end; it has the run's labels, so whatever finds a run's leftovers
// finds it too. queries maps QueryKey(i) / ChecksumQueryKey to a query.
func ArtifactQuerySecret(runID, namespace string, queries map[string]string) *corev1.Secret {
	labels := RunLabels(runID)
	labels[LabelComponent] = "artifact-queries"
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: QuerySecretName(runID), Namespace: namespace, Labels: labels},
		Type:       corev1.SecretTypeOpaque,
		StringData: queries,
	}
}

// ArtifactSpec is what every Job of an artifact run shares.
type ArtifactSpec struct {
	Name string
	// Root is the directory holding artifact directories on the node; a
	// node's own coral.dev/artifact-root annotation wins over it.
	Root        string
	Extract     bool
	ChecksumURL string
	// HeaderSecret names a secret whose keys are HTTP header names.
	HeaderSecret string
	// S3Secret names a secret with credentials; S3Keys maps the file names
	// the worker reads (AWS_ACCESS_KEY_ID …) to the secret's keys.
	S3Secret    string
	S3Keys      map[string]string
	S3Endpoint  string
	S3Region    string
	S3PathStyle bool
	// SourceTimeout bounds one source inside the worker.
	SourceTimeout time.Duration
	// QuerySecret names the run's Secret of URL queries (ArtifactQuerySecret),
	// "" when no URL has one.
	QuerySecret string
}

// ArtifactDir is the artifact's directory on the node's host file system.
func ArtifactDir(t plan.Task, a ArtifactSpec) string {
	return artifact.Dir(t.HostRoot, t.ArtifactRoot, a.Root, a.Name)
}

// SourceArg is how a source is passed to the worker: URL or URL=SHA256.
// The URL is the public one (artifact.Source.Public): queries go through
// the query secret.
func SourceArg(it plan.Item) string {
	if it.ExpectedDigest == "" {
		return it.Ref
	}
	return it.Ref + "=" + it.ExpectedDigest
}

// ForArtifactTask builds the Job that fetches a task's sources into the
// artifact's directory on the node. Only that directory is mounted
// (read-write); secrets arrive as read-only tmpfs files.
func ForArtifactTask(t plan.Task, s Spec, a ArtifactSpec) *batchv1.Job {
	args := []string{
		"fetch",
		"--dir=" + ArtifactMountPath,
		fmt.Sprintf("--retries=%d", s.Retries),
		fmt.Sprintf("--timeout=%s", a.SourceTimeout),
	}
	if a.Extract {
		args = append(args, "--extract")
	}
	if a.ChecksumURL != "" {
		args = append(args, "--checksum-url="+a.ChecksumURL)
	}
	if a.S3Endpoint != "" {
		args = append(args, "--s3-endpoint="+a.S3Endpoint)
	}
	if a.S3Region != "" {
		args = append(args, "--s3-region="+a.S3Region)
	}
	if a.S3PathStyle {
		args = append(args, "--s3-path-style")
	}
	volumes := []corev1.Volume{{
		Name: "artifact",
		VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
			Path: ArtifactDir(t, a),
			Type: ptr.To(corev1.HostPathDirectoryOrCreate),
		}},
	}}
	mounts := []corev1.VolumeMount{{Name: "artifact", MountPath: ArtifactMountPath}}
	if a.S3Secret != "" {
		files := make([]string, 0, len(a.S3Keys))
		for f := range a.S3Keys {
			files = append(files, f)
		}
		sort.Strings(files)
		var items []corev1.KeyToPath
		for _, f := range files {
			items = append(items, corev1.KeyToPath{Key: a.S3Keys[f], Path: f})
		}
		volumes = append(volumes, secretVolume("s3-credentials", []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: a.S3Secret}, Items: items,
		}}}))
		mounts = append(mounts, corev1.VolumeMount{Name: "s3-credentials", MountPath: S3CredentialsMountPath, ReadOnly: true})
		args = append(args, "--s3-credentials-dir="+S3CredentialsMountPath)
	}
	if a.HeaderSecret != "" {
		volumes = append(volumes, secretVolume("http-headers", []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: a.HeaderSecret},
		}}}))
		mounts = append(mounts, corev1.VolumeMount{Name: "http-headers", MountPath: HeadersMountPath, ReadOnly: true})
		args = append(args, "--header-dir="+HeadersMountPath)
	}
	if a.QuerySecret != "" {
		volumes = append(volumes, secretVolume("url-queries", []corev1.VolumeProjection{{Secret: &corev1.SecretProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: a.QuerySecret},
		}}}))
		mounts = append(mounts, corev1.VolumeMount{Name: "url-queries", MountPath: QueriesMountPath, ReadOnly: true})
		args = append(args, "--query-dir="+QueriesMountPath)
	}
	for _, it := range t.Items {
		args = append(args, "--source="+SourceArg(it))
	}
	j := job(t, s, "artifact-worker", args, volumes, mounts)
	j.Annotations[AnnotationArtifact] = a.Name
	j.Spec.Template.Annotations[AnnotationArtifact] = a.Name
	return j
}

// AnnotationArtifact names the artifact a Job fetches.
const AnnotationArtifact = "coral.dev/artifact"
