package install

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestObjects(t *testing.T) {
	c := Config{Namespace: "ops", ControllerImage: "r.example/ctl:v1", WorkerImage: "r.example/w:v1", Replicas: 2, MaxJobsInFlight: 7, MetricsPort: 9090, HealthPort: 9091}
	objs, err := Objects(c)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	var deploy, ns, role *unstructured.Unstructured
	for _, u := range objs {
		kinds[u.GetKind()]++
		if gvrs[u.GetKind()].namespaced && u.GetNamespace() != "ops" {
			t.Errorf("%s %s is in namespace %q, want ops", u.GetKind(), u.GetName(), u.GetNamespace())
		}
		if u.GetLabels()["app.kubernetes.io/managed-by"] != FieldManager {
			t.Errorf("%s %s lacks the managed-by label uninstall relies on", u.GetKind(), u.GetName())
		}
		switch u.GetKind() {
		case "Deployment":
			deploy = u
		case "Namespace":
			ns = u
		case "ClusterRole":
			role = u
		}
	}
	if objs[0].GetKind() != "Namespace" || objs[1].GetKind() != "CustomResourceDefinition" || objs[len(objs)-1].GetKind() != "Deployment" {
		t.Errorf("apply order: namespace, CRDs, …, Deployment last; got %s … %s", objs[0].GetKind(), objs[len(objs)-1].GetKind())
	}
	if kinds["CustomResourceDefinition"] != 3 {
		t.Errorf("%d CRDs, want 3 (imageprefetches, artifactprefetches, prefetchnodes)", kinds["CustomResourceDefinition"])
	}
	if ns.GetLabels()["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace labels %v: the worker needs the privileged Pod Security level", ns.GetLabels())
	}
	containers, _, _ := unstructured.NestedSlice(deploy.Object, "spec", "template", "spec", "containers")
	ctr := containers[0].(map[string]any)
	if ctr["image"] != c.ControllerImage {
		t.Errorf("controller image %v", ctr["image"])
	}
	args := strings.Join(toStrings(ctr["args"]), " ")
	for _, want := range []string{"--worker-image=r.example/w:v1", "--max-jobs-in-flight=7", "--metrics-bind-address=:9090", "--health-probe-bind-address=:9091", "--leader-election-namespace=ops"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %s", args, want)
		}
	}
	if r, _, _ := unstructured.NestedInt64(deploy.Object, "spec", "replicas"); r != 2 {
		t.Errorf("replicas %d", r)
	}
	// Least privilege: no wildcard, secrets only read one by one.
	rules, _, _ := unstructured.NestedSlice(role.Object, "rules")
	for _, r := range rules {
		m := r.(map[string]any)
		verbs, res := toStrings(m["verbs"]), toStrings(m["resources"])
		for _, v := range append(verbs, res...) {
			if v == "*" {
				t.Errorf("wildcard in rule %v", m)
			}
		}
		for _, x := range res {
			if x == "secrets" && strings.Join(verbs, ",") != "get" {
				t.Errorf("secrets verbs %v, want only get", verbs)
			}
		}
	}
}

func toStrings(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestDefaultControllerImage(t *testing.T) {
	if got := DefaultControllerImage(func(string) string { return "" }); !strings.HasPrefix(got, ControllerRepository+":") {
		t.Errorf("default %q", got)
	}
	if got := DefaultControllerImage(func(k string) string { return map[string]string{EnvControllerImage: " m/c:1 "}[k] }); got != "m/c:1" {
		t.Errorf("from env: %q", got)
	}
}
