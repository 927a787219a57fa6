package source

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func spec(images ...string) corev1.PodSpec {
	var s corev1.PodSpec
	for i, img := range images {
		switch {
		case strings.HasPrefix(img, "init:"):
			s.InitContainers = append(s.InitContainers, corev1.Container{Name: "i", Image: strings.TrimPrefix(img, "init:")})
		case strings.HasPrefix(img, "eph:"):
			s.EphemeralContainers = append(s.EphemeralContainers, corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "e", Image: strings.TrimPrefix(img, "eph:")}})
		default:
			s.Containers = append(s.Containers, corev1.Container{Name: string(rune('a' + i)), Image: img})
		}
	}
	return s
}

func tmpl(images ...string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{Spec: spec(images...)}
}

func objMeta(ns, name string) metav1.ObjectMeta { return metav1.ObjectMeta{Namespace: ns, Name: name} }

func TestFromCluster(t *testing.T) {
	objs := []runtime.Object{
		&corev1.Pod{ObjectMeta: objMeta("a", "running"), Spec: spec("init:busybox:1", "nginx:1.27", "eph:debug:1"), Status: corev1.PodStatus{Phase: corev1.PodRunning}},
		&corev1.Pod{ObjectMeta: objMeta("a", "done"), Spec: spec("finished:1"), Status: corev1.PodStatus{Phase: corev1.PodSucceeded}},
		&appsv1.Deployment{ObjectMeta: objMeta("a", "d"), Spec: appsv1.DeploymentSpec{Template: tmpl("deploy:1")}},
		&appsv1.StatefulSet{ObjectMeta: objMeta("a", "s"), Spec: appsv1.StatefulSetSpec{Template: tmpl("sts:1")}},
		&appsv1.DaemonSet{ObjectMeta: objMeta("a", "ds"), Spec: appsv1.DaemonSetSpec{Template: tmpl("ds:1")}},
		&appsv1.ReplicaSet{ObjectMeta: objMeta("a", "rs"), Spec: appsv1.ReplicaSetSpec{Template: tmpl("rs:1", "nginx:1.27")}},
		&corev1.ReplicationController{ObjectMeta: objMeta("a", "rc"), Spec: corev1.ReplicationControllerSpec{Template: &corev1.PodTemplateSpec{Spec: spec("rc:1")}}},
		&batchv1.Job{ObjectMeta: objMeta("a", "j"), Spec: batchv1.JobSpec{Template: tmpl("job:1")}},
		&batchv1.CronJob{ObjectMeta: objMeta("a", "cj"), Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl("cron:1")}}}},
		&corev1.PodTemplate{ObjectMeta: objMeta("a", "pt"), Template: tmpl("podtemplate:1")},
		&appsv1.Deployment{ObjectMeta: objMeta("b", "other"), Spec: appsv1.DeploymentSpec{Template: tmpl("other-ns:1")}},
	}
	all := "busybox:1 nginx:1.27 debug:1 deploy:1 sts:1 ds:1 rs:1 rc:1 job:1 cron:1 podtemplate:1"

	tests := []struct {
		name      string
		ns        string
		forbidden string
		want      string
		warning   string
	}{
		{name: "one namespace", ns: "a", want: all},
		{name: "all namespaces", ns: "", want: strings.Replace(all, "deploy:1", "deploy:1 other-ns:1", 1)},
		{name: "forbidden kind is skipped", ns: "a", forbidden: "cronjobs", want: strings.Replace(all, " cron:1", "", 1), warning: "not allowed to list cronjobs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewSimpleClientset(objs...)
			if tc.forbidden != "" {
				c.PrependReactor("list", tc.forbidden, func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: tc.forbidden}, "", nil)
				})
			}
			got, err := FromCluster(context.Background(), c, tc.ns)
			if err != nil {
				t.Fatal(err)
			}
			warnings := got.Warnings
			if imgs := strings.Join(got.Images, " "); imgs != tc.want {
				t.Fatalf("images:\n got %s\nwant %s", imgs, tc.want)
			}
			if tc.warning != "" && (len(warnings) != 1 || !strings.Contains(warnings[0], tc.warning)) {
				t.Fatalf("warnings %v, want %q", warnings, tc.warning)
			}
		})
	}
}
