package install

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"

	"github.com/coral-dev/coral/config"
	"github.com/coral-dev/coral/pkg/version"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
)

// Names of what install creates.
const (
	DefaultNamespace = "coral-system"
	Name             = "coral-controller"
	FieldManager     = "kubectl-coral"
	// EnvControllerImage overrides the default controller image.
	EnvControllerImage = "CORAL_CONTROLLER_IMAGE"
	// ControllerRepository is where released controller images live.
	ControllerRepository = "ghcr.io/coral-dev/coral-controller"
)

// labels on every installed object; uninstall finds them by these.
var installLabels = map[string]string{
	"app.kubernetes.io/name":       "coral",
	"app.kubernetes.io/part-of":    "coral",
	"app.kubernetes.io/managed-by": FieldManager,
}

// DefaultControllerImage is the controller image of this plugin version
// ($CORAL_CONTROLLER_IMAGE overrides it), released with the worker image.
func DefaultControllerImage(getenv func(string) string) string {
	if v := strings.TrimSpace(getenv(EnvControllerImage)); v != "" {
		return v
	}
	return ControllerRepository + ":" + version.Version
}

// Config is what the manifests depend on.
type Config struct {
	Namespace       string
	ControllerImage string
	WorkerImage     string
	Replicas        int32
	MaxJobsInFlight int
	// HostNetwork runs the controller in the node's network (clusters whose
	// service network pods cannot reach, like Coral's local test cluster).
	HostNetwork bool
	// APIServer (host:port), when set, is where the controller reaches the
	// API server instead of the kubernetes Service.
	APIServer   string
	MetricsPort int32
	HealthPort  int32
}

// gvrs maps the kinds install applies to their resources.
var gvrs = map[string]struct {
	gvr        schema.GroupVersionResource
	namespaced bool
}{
	"Namespace":                {schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}, false},
	"CustomResourceDefinition": {schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}, false},
	"ServiceAccount":           {schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}, true},
	"ClusterRole":              {schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}, false},
	"ClusterRoleBinding":       {schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"}, false},
	"Role":                     {schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}, true},
	"RoleBinding":              {schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}, true},
	"Deployment":               {schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, true},
}

// Objects are the manifests in apply order: namespace, CRDs, RBAC, the
// controller's Deployment. Pure: the same Config gives the same objects.
func Objects(c Config) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	add := func(o runtime.Object) error {
		m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{Object: m}
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		unstructured.RemoveNestedField(u.Object, "status")
		out = append(out, u)
		return nil
	}
	meta := func(name string, namespaced bool) metav1.ObjectMeta {
		m := metav1.ObjectMeta{Name: name, Labels: copyMap(installLabels)}
		if namespaced {
			m.Namespace = c.Namespace
		}
		return m
	}
	ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: meta(c.Namespace, false)}
	// The worker mounts the node's runtime socket (hostPath): only the
	// privileged Pod Security level admits it. The controller itself is
	// restricted (see its security context).
	ns.Labels["pod-security.kubernetes.io/enforce"] = "privileged"
	if err := add(ns); err != nil {
		return nil, err
	}
	embedded, err := embeddedObjects()
	if err != nil {
		return nil, err
	}
	for _, u := range embedded {
		labels := u.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		for k, v := range installLabels {
			labels[k] = v
		}
		u.SetLabels(labels)
		if gvrs[u.GetKind()].namespaced {
			u.SetNamespace(c.Namespace)
		}
		out = append(out, u)
	}
	objs := []runtime.Object{
		&corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"}, ObjectMeta: meta(Name, true)},
		&rbacv1.ClusterRoleBinding{
			TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"}, ObjectMeta: meta(Name, false),
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: Name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: c.Namespace}},
		},
		&rbacv1.RoleBinding{
			TypeMeta: metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"}, ObjectMeta: meta(Name+"-leader-election", true),
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: Name + "-leader-election"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: c.Namespace}},
		},
		deployment(c, meta(Name, true)),
	}
	for _, o := range objs {
		if err := add(o); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// embeddedObjects reads config/crd and config/rbac.
func embeddedObjects() ([]*unstructured.Unstructured, error) {
	var paths []string
	for _, dir := range []string{"crd", "rbac"} {
		entries, err := fs.ReadDir(config.Files, dir)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			paths = append(paths, dir+"/"+e.Name())
		}
	}
	sort.Strings(paths) // crd/ before rbac/
	var out []*unstructured.Unstructured
	for _, p := range paths {
		data, err := fs.ReadFile(config.Files, p)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			u := &unstructured.Unstructured{}
			if err := dec.Decode(&u.Object); err != nil {
				if err == io.EOF {
					break
				}
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			if _, ok := gvrs[u.GetKind()]; !ok {
				return nil, fmt.Errorf("%s: kind %s is not one install knows", p, u.GetKind())
			}
			out = append(out, u)
		}
	}
	return out, nil
}

func deployment(c Config, m metav1.ObjectMeta) *appsv1.Deployment {
	sel := map[string]string{"app.kubernetes.io/name": Name}
	podLabels := copyMap(sel)
	podLabels["app.kubernetes.io/part-of"] = "coral"
	args := []string{
		"--worker-image=" + c.WorkerImage,
		"--leader-election-namespace=" + c.Namespace,
		fmt.Sprintf("--max-jobs-in-flight=%d", c.MaxJobsInFlight),
		fmt.Sprintf("--metrics-bind-address=:%d", c.MetricsPort),
		fmt.Sprintf("--health-probe-bind-address=:%d", c.HealthPort),
	}
	if c.MetricsPort == 0 {
		args[3] = "--metrics-bind-address=0"
	}
	var env []corev1.EnvVar
	if c.APIServer != "" {
		host, port, _ := strings.Cut(c.APIServer, ":")
		if port == "" {
			port = "443"
		}
		env = []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: host}, {Name: "KUBERNETES_SERVICE_PORT", Value: port}}
	}
	ports := []corev1.ContainerPort{{Name: "health", ContainerPort: c.HealthPort}}
	if c.MetricsPort != 0 {
		ports = append(ports, corev1.ContainerPort{Name: "metrics", ContainerPort: c.MetricsPort})
	}
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intOrName("health")}}, PeriodSeconds: 10}
	}
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: m,
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(c.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels},
				Spec: corev1.PodSpec{
					ServiceAccountName:            Name,
					HostNetwork:                   c.HostNetwork,
					TerminationGracePeriodSeconds: ptr.To[int64](10),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To[int64](65532),
						RunAsGroup:     ptr.To[int64](65532),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:            "controller",
						Image:           c.ControllerImage,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Args:            args,
						Env:             env,
						Ports:           ports,
						LivenessProbe:   probe("/healthz"),
						ReadinessProbe:  probe("/readyz"),
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
				},
			},
		},
	}
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
