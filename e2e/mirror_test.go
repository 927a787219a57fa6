package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Cross-cluster sync on a real cluster: every image the workloads of a
// namespace use is mirrored into another repository, digests kept.
func TestMirrorFromCluster(t *testing.T) {
	c := getCluster(t)
	ns := c.namespace(t, nil)
	reg := c.env["CORAL_REGISTRY"]
	app, appDigest := c.pushRandomImage(t, reg, "mirror-app", nil)
	side, sideDigest := c.pushRandomImage(t, reg, "mirror-side", nil)
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](0), // the template is what counts; nothing needs to run
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{
					InitContainers: []corev1.Container{{Name: "init", Image: side}},
					Containers:     []corev1.Container{{Name: "app", Image: app}},
				},
			},
		},
	}
	if _, err := c.client.AppsV1().Deployments(ns).Create(context.Background(), deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dest := reg + "/synced"
	res := c.coral(t, nil, "mirror", "--from-cluster", "-n", ns, "--to", dest, "-o", "json")
	if res.code != 0 {
		t.Fatalf("exit %d\n%s", res.code, res.stdout)
	}
	var rep struct {
		Kind    string `json:"kind"`
		Results []struct {
			Source, Destination, Digest, Status string
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &rep); err != nil || rep.Kind != "MirrorReport" {
		t.Fatalf("report: %v\n%s", err, res.stdout)
	}
	if len(rep.Results) != 2 {
		t.Fatalf("%d results, want the 2 images of the namespace: %+v", len(rep.Results), rep.Results)
	}
	for src, d := range map[string]string{app: appDigest, side: sideDigest} {
		want := dest + strings.TrimPrefix(src, reg)
		r, _ := name.ParseReference(want)
		desc, err := remote.Head(r)
		if err != nil {
			t.Errorf("%s is not at the destination %s: %v", src, want, err)
			continue
		}
		if desc.Digest.String() != d {
			t.Errorf("%s: destination digest %s, source %s", want, desc.Digest, d)
		}
	}
	// Again: everything Present.
	res = c.coral(t, nil, "mirror", "--from-cluster", "-n", ns, "--to", dest, "-o", "json")
	json.Unmarshal([]byte(res.stdout), &rep)
	for _, r := range rep.Results {
		if r.Status != "Present" {
			t.Errorf("second sync: %s is %s, want Present", r.Source, r.Status)
		}
	}
}
