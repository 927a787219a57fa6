package source

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

var fuzzRefs = []string{
	"nginx", "nginx:1.27", "library/nginx:latest", "docker.io/library/nginx",
	"registry.example.com:5000/team/api@sha256:" + strings.Repeat("a", 64),
	"localhost/app:v1", "127.0.0.1:5001/x:1", "[::1]:5000/x:1", "a.b/c.d/e_f/g-h:1.0-rc_1",
	"kind:v1", "apiVersion", "-", "x#y", "Not A Ref!", "", "nginx:", "@sha256:" + strings.Repeat("0", 64),
	"A://", "a//b:1", "r.io/x/", "-a", "a:-1",
}

// An image reference is either refused with an error or kept exactly as the
// user spelled it, whether it comes as an argument or as a line of a list file.
func FuzzValidateRef(f *testing.F) {
	for _, r := range fuzzRefs {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, ref string) {
		if err := ValidateRef(ref); err != nil {
			if _, err2 := FromArgs([]string{ref}); err2 == nil {
				t.Fatalf("FromArgs accepts %q, which ValidateRef refuses (%v)", ref, err)
			}
			return
		}
		// What is accepted has a name of non-empty lower-case path components
		// (runtimes refuse "a//b", "a/", "-a") and a tag that starts with a
		// word character.
		r, err := name.ParseReference(ref, name.WeakValidation)
		if err != nil {
			t.Fatalf("ValidateRef accepts %q, which go-containerregistry cannot parse: %v", ref, err)
		}
		for _, c := range strings.Split(r.Context().RepositoryStr(), "/") {
			if c == "" || strings.IndexAny(c[:1]+c[len(c)-1:], "._-") >= 0 {
				t.Fatalf("ValidateRef accepts %q, whose repository %q has a bad component %q", ref, r.Context().RepositoryStr(), c)
			}
		}
		if tg, ok := r.(name.Tag); ok && strings.IndexAny(tg.TagStr()[:1], ".-") == 0 {
			t.Fatalf("ValidateRef accepts %q, whose tag %q starts with %q", ref, tg.TagStr(), tg.TagStr()[:1])
		}
		got, err := FromArgs([]string{ref, ref})
		if err != nil || !reflect.DeepEqual(got, []string{ref}) {
			t.Fatalf("FromArgs(%q twice) = %q, %v", ref, got, err)
		}
		if strings.ContainsAny(ref, "#\r\n") || strings.HasPrefix(ref, "- ") {
			return // comments and line ends of a list file
		}
		for _, file := range []string{ref, ref + "\n", "# images\n" + ref + "  # the app\n", "- " + ref + "\n"} {
			got, err := FromReader(strings.NewReader(file), "list")
			if err != nil || !reflect.DeepEqual(got, []string{ref}) {
				t.Fatalf("a list file %q gives %q, %v; want [%q]", file, got, err, ref)
			}
		}
	})
}

// Any bytes given with -f: references or an error, never a panic; what comes
// back is valid, de-duplicated and non-empty.
func FuzzFromReader(f *testing.F) {
	for _, s := range []string{
		"# images\nnginx:1.27\n\n  redis:7   # cache\nnginx:1.27\n",
		"- nginx\n- redis:7\n",
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      initContainers: [{name: i, image: busybox:1.36}]\n      containers: [{name: a, image: nginx:1.27}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
		`{"apiVersion":"v1","kind":"List","items":[{"kind":"Pod","spec":{"containers":[{"image":"a:1"}],"ephemeralContainers":[{"image":"b:2"}]}},{"kind":"PodList","items":[{"kind":"Pod","spec":{"containers":[{"image":" c:3 "}]}}]}]}`,
		"kind: CronJob\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers: [{image: 'x/y:z'}]\n",
		"kind: Deployment\nspec:\n  template:\n    spec:\n      containers: [{image: 'Not A Ref!'}]\n",
		"kind: ReplicationController\nspec: {}\n",
		"---\n---\nnull\n",
		"kind: Pod\nspec: {containers: [{image: 5}]}\n",
		"{\"kind\": \"List\", \"items\": [{}]}",
		"kind:v1\n",
		"[1, 2]",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		refs, err := FromReader(bytes.NewReader(data), "fuzz")
		if err != nil {
			if refs != nil {
				t.Fatalf("an error (%v) with references %q", err, refs)
			}
			return
		}
		if len(refs) == 0 {
			t.Fatal("no references and no error")
		}
		seen := map[string]bool{}
		for _, r := range refs {
			if err := ValidateRef(r); err != nil {
				t.Fatalf("FromReader returned %q, which is not a valid reference: %v", r, err)
			}
			if seen[r] {
				t.Fatalf("%q returned twice", r)
			}
			seen[r] = true
		}
	})
}

// Images put into any pod-template-bearing object, written as YAML or JSON,
// alone or inside a List, come back exactly: init, regular, ephemeral
// containers in that order, empty ones skipped, duplicates once.
func FuzzManifestImages(f *testing.F) {
	f.Add(uint8(0), "busybox:1.36", "nginx:1.27", "nginx:1.27", false)
	f.Add(uint8(3), "", " redis:7 ", "debug/tools:v1", true)
	f.Add(uint8(8), "a:1", "b:2", "c:3", false)
	f.Add(uint8(9), "x", "y", "z", true)
	f.Add(uint8(5), "Not A Ref!", "ok:1", "", false)
	f.Fuzz(func(t *testing.T, kind uint8, initImg, img, debugImg string, asJSON bool) {
		spec := corev1.PodSpec{
			InitContainers:      []corev1.Container{{Name: "init", Image: initImg}},
			Containers:          []corev1.Container{{Name: "app", Image: img}},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: debugImg}}},
		}
		tmpl := corev1.PodTemplateSpec{Spec: spec}
		objs := []any{
			&corev1.Pod{TypeMeta: tm("v1", "Pod"), Spec: spec},
			&corev1.PodTemplate{TypeMeta: tm("v1", "PodTemplate"), Template: tmpl},
			&corev1.ReplicationController{TypeMeta: tm("v1", "ReplicationController"), Spec: corev1.ReplicationControllerSpec{Template: &tmpl}},
			&appsv1.Deployment{TypeMeta: tm("apps/v1", "Deployment"), Spec: appsv1.DeploymentSpec{Template: tmpl}},
			&appsv1.StatefulSet{TypeMeta: tm("apps/v1", "StatefulSet"), Spec: appsv1.StatefulSetSpec{Template: tmpl}},
			&appsv1.DaemonSet{TypeMeta: tm("apps/v1", "DaemonSet"), Spec: appsv1.DaemonSetSpec{Template: tmpl}},
			&appsv1.ReplicaSet{TypeMeta: tm("apps/v1", "ReplicaSet"), Spec: appsv1.ReplicaSetSpec{Template: tmpl}},
			&batchv1.Job{TypeMeta: tm("batch/v1", "Job"), Spec: batchv1.JobSpec{Template: tmpl}},
			&batchv1.CronJob{TypeMeta: tm("batch/v1", "CronJob"), Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}},
		}
		var obj any = objs[int(kind)%len(objs)]
		if int(kind)%(2*len(objs)) >= len(objs) {
			obj = map[string]any{"apiVersion": "v1", "kind": "List", "items": []any{obj}}
		}
		var data []byte
		var err error
		if asJSON {
			data, err = json.Marshal(obj)
		} else {
			data, err = yaml.Marshal(obj)
		}
		if err != nil {
			return // the YAML encoder refuses some strings (control characters): nothing to read back
		}
		// A Service beside it holds no images.
		data = append(data, "\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n"...)
		if asJSON {
			data = append([]byte("---\n"), data...)
		}

		var want []string
		valid := true
		for _, r := range []string{initImg, img, debugImg} {
			if r = strings.TrimSpace(r); r != "" {
				want = append(want, r)
				valid = valid && ValidateRef(r) == nil
			}
		}
		want = Dedup(want)
		got, err := FromReader(bytes.NewReader(data), "manifest")
		switch {
		case len(want) == 0:
			if err == nil {
				t.Fatalf("no images in the manifest, got %q", got)
			}
		case !valid:
			if err == nil {
				t.Fatalf("images %q include an invalid reference, got %q and no error", want, got)
			}
		case err != nil || !reflect.DeepEqual(got, want):
			t.Fatalf("%T: got %q, %v; want %q\n%s", obj, got, err, want, data)
		}
	})
}

func tm(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}
