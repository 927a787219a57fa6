package jobs

import (
	"strings"
	"testing"
	"time"

	"github.com/coral-dev/coral/pkg/plan"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

func spec() Spec {
	return Spec{
		RunID: "a1b2c3", Namespace: "coral-system", WorkerImage: "reg.local/coral-worker:v1",
		ImagePullPolicy: corev1.PullIfNotPresent, Deadline: 10 * time.Minute, TTL: 10 * time.Minute,
		MaxPullsPerNode: 3, ImageTimeout: 5 * time.Minute, Retries: 3,
	}
}

func task() plan.Task {
	return plan.Task{Node: "worker-1", RuntimeSocket: "/run/containerd/containerd.sock", Items: []plan.Item{
		{Ref: "nginx:1.27", ExpectedDigest: "sha256:" + strings.Repeat("a", 64)},
		{Ref: "redis:7"},
	}}
}

func TestForTaskContracts(t *testing.T) {
	j := ForTask(task(), spec())
	ps := j.Spec.Template.Spec
	c := ps.Containers[0]
	checks := []struct {
		name string
		ok   bool
	}{
		{"pinned by nodeName", ps.NodeName == "worker-1"},
		{"backoffLimit 0", *j.Spec.BackoffLimit == 0},
		{"activeDeadlineSeconds", *j.Spec.ActiveDeadlineSeconds == 600},
		{"ttlSecondsAfterFinished", *j.Spec.TTLSecondsAfterFinished == 600},
		{"tolerates every taint", len(ps.Tolerations) == 1 && ps.Tolerations[0].Operator == corev1.TolerationOpExists && ps.Tolerations[0].Key == ""},
		{"restart never", ps.RestartPolicy == corev1.RestartPolicyNever},
		{"no service account token", !*ps.AutomountServiceAccountToken},
		{"seccomp RuntimeDefault", ps.SecurityContext.SeccompProfile.Type == corev1.SeccompProfileTypeRuntimeDefault},
		{"not privileged", !*c.SecurityContext.Privileged && !*c.SecurityContext.AllowPrivilegeEscalation},
		{"drops all capabilities", len(c.SecurityContext.Capabilities.Drop) == 1 && c.SecurityContext.Capabilities.Drop[0] == "ALL" && len(c.SecurityContext.Capabilities.Add) == 0},
		{"read-only root filesystem", *c.SecurityContext.ReadOnlyRootFilesystem},
		{"requests and limits", !c.Resources.Requests.Cpu().IsZero() && !c.Resources.Limits.Memory().IsZero()},
		// Below a core, the CFS quota stops the worker's start-up and hashing bursts.
		{"a CPU limit of one core", c.Resources.Limits.Cpu().MilliValue() == 1000},
		{"run label", j.Labels[LabelRunID] == "a1b2c3" && j.Spec.Template.Labels[LabelRunID] == "a1b2c3"},
		{"node annotation", j.Annotations[AnnotationNode] == "worker-1"},
		{"only the socket is mounted", len(ps.Volumes) == 1 && ps.Volumes[0].HostPath.Path == "/run/containerd/containerd.sock" && *ps.Volumes[0].HostPath.Type == corev1.HostPathSocket},
		{"socket mounted read-only", c.VolumeMounts[0].ReadOnly && c.VolumeMounts[0].MountPath == SocketMountPath},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("contract broken: %s", ch.name)
		}
	}
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"pull", "--runtime-endpoint=unix:///run/coral/cri.sock", "--max-parallel=3", "--image-timeout=5m0s", "--retries=3", "--image=nginx:1.27=sha256:aaaa", "--image=redis:7"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	if strings.Contains(args, "--auth-dir") {
		t.Error("no pull secrets given, but --auth-dir passed")
	}
}

// The pull worker joins the node's network only when asked (it opens no
// connection: the runtime pulls); an artifact worker downloads, so it keeps
// the pod network even when asked.
func TestHostNetworkOnlyForTheSocketWorker(t *testing.T) {
	s := spec()
	if ForTask(task(), s).Spec.Template.Spec.HostNetwork {
		t.Error("HostNetwork unset, but the pull worker has hostNetwork")
	}
	s.HostNetwork = true
	if !ForTask(task(), s).Spec.Template.Spec.HostNetwork {
		t.Error("HostNetwork set, but the pull worker has no hostNetwork")
	}
	s.Unpin = true
	if !ForTask(task(), s).Spec.Template.Spec.HostNetwork {
		t.Error("HostNetwork set, but the unpin worker has no hostNetwork")
	}
	at := plan.Task{Node: "gpu-1", HostRoot: "/", Items: []plan.Item{{Ref: "https://models.example.com/bert.bin"}}}
	if ForArtifactTask(at, s, ArtifactSpec{Name: "bert"}).Spec.Template.Spec.HostNetwork {
		t.Error("the artifact worker got hostNetwork")
	}
}

func TestForTaskPullSecrets(t *testing.T) {
	s := spec()
	s.PullSecrets = []PullSecret{{Name: "regcred", Type: corev1.SecretTypeDockerConfigJson}, {Name: "old", Type: corev1.SecretTypeDockercfg}}
	j := ForTask(task(), s)
	ps := j.Spec.Template.Spec
	if len(ps.Volumes) != 2 || ps.Volumes[1].Projected == nil {
		t.Fatalf("want a projected secret volume, got %+v", ps.Volumes)
	}
	src := ps.Volumes[1].Projected.Sources
	if src[0].Secret.Name != "regcred" || src[0].Secret.Items[0].Key != ".dockerconfigjson" || src[1].Secret.Items[0].Key != ".dockercfg" {
		t.Fatalf("sources %+v", src)
	}
	if *ps.Volumes[1].Projected.DefaultMode != 0o400 {
		t.Error("secret files must be 0400")
	}
	if !strings.Contains(strings.Join(ps.Containers[0].Args, " "), "--auth-dir="+PullSecretsMountPath) {
		t.Error("worker not told where the secrets are")
	}
}

func TestName(t *testing.T) {
	long := strings.Repeat("very-long-node-name.", 12) + "example.com"
	for _, node := range []string{"worker-1", "Node_With.Dots", long, long + "x"} {
		n := Name("a1b2c3", node)
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			t.Errorf("Name(%q) = %q: %v", node, n, errs)
		}
	}
	if Name("r", long) == Name("r", long+"x") {
		t.Error("long names sharing a prefix must still differ")
	}
	if Name("r", "a") != Name("r", "a") {
		t.Error("names must be stable")
	}
}

func TestForArtifactTask(t *testing.T) {
	task := plan.Task{Node: "gpu-1", HostRoot: "/srv/nodes/gpu-1", Items: []plan.Item{
		{Ref: "https://models.example.com/bert.tar.gz", ExpectedDigest: strings.Repeat("9", 64)},
		{Ref: "s3://ml/llama/"},
	}}
	a := ArtifactSpec{Name: "bert", Extract: true, S3Secret: "s3-creds", S3Keys: map[string]string{"AWS_ACCESS_KEY_ID": "accessKeyID", "AWS_SECRET_ACCESS_KEY": "secretAccessKey"},
		S3Endpoint: "https://minio.local:9000", S3PathStyle: true, HeaderSecret: "tokens", SourceTimeout: time.Minute}
	j := ForArtifactTask(task, spec(), a)
	ps := j.Spec.Template.Spec
	if hp := ps.Volumes[0].HostPath; hp == nil || hp.Path != "/srv/nodes/gpu-1/var/lib/coral/artifacts/bert" || *hp.Type != corev1.HostPathDirectoryOrCreate {
		t.Fatalf("artifact volume %+v", ps.Volumes[0])
	}
	for _, v := range ps.Volumes {
		if v.HostPath != nil && v.Name != "artifact" {
			t.Errorf("only the artifact directory may come from the host, got %s", v.Name)
		}
	}
	args := strings.Join(ps.Containers[0].Args, " ")
	for _, want := range []string{"fetch", "--dir=/artifact", "--extract", "--s3-endpoint=https://minio.local:9000", "--s3-path-style",
		"--s3-credentials-dir=" + S3CredentialsMountPath, "--header-dir=" + HeadersMountPath,
		"--source=https://models.example.com/bert.tar.gz=" + strings.Repeat("9", 64), "--source=s3://ml/llama/"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	if c := ps.Containers[0]; !*c.SecurityContext.ReadOnlyRootFilesystem || len(c.SecurityContext.Capabilities.Drop) != 1 {
		t.Error("artifact workers keep the least-privilege contract")
	}
	items := ps.Volumes[1].Projected.Sources[0].Secret.Items
	if len(items) != 2 || items[0].Path != "AWS_ACCESS_KEY_ID" || items[0].Key != "accessKeyID" {
		t.Errorf("s3 secret items %+v", items)
	}
	task.ArtifactRoot = "/data/artifacts"
	if d := ArtifactDir(task, a); d != "/srv/nodes/gpu-1/data/artifacts/bert" {
		t.Errorf("node artifact root: %s", d)
	}
	if j.Labels[LabelComponent] != "artifact-worker" || j.Annotations[AnnotationArtifact] != "bert" {
		t.Errorf("labels %v annotations %v", j.Labels, j.Annotations)
	}
}
