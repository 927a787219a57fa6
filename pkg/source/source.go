// Package source turns what a user gives Coral — arguments, a file, stdin, or
// live objects from a cluster — into a de-duplicated list of image references.
// Files may hold a plain list (one reference per line, '#' comments) or
// Kubernetes manifests (multi-document YAML or JSON, including List kinds);
// from manifests every container, init container and ephemeral container image
// of every pod-template-bearing kind is taken. Prefetch and mirror share it.
package source

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// ErrNoImages is returned when a source holds no image reference at all.
var ErrNoImages = errors.New("no images found")

// ValidateRef checks that ref is a valid image reference and returns it
// unchanged (Coral keeps the user's spelling: it is the name workloads use).
func ValidateRef(ref string) error {
	if ref == "" {
		return errors.New("empty image reference")
	}
	if strings.ContainsAny(ref, " \t") {
		return fmt.Errorf("invalid image reference %q: contains white space", ref)
	}
	if _, err := name.ParseReference(ref, name.WeakValidation); err != nil {
		return fmt.Errorf("invalid image reference %q: %w", ref, err)
	}
	// go-containerregistry's weak validation lets through what a node's
	// runtime refuses ("a//b", "r.io/x/", "-a", "a:-1"): such a reference
	// would fail on every node, so it is refused here.
	if !referenceGrammar.MatchString(ref) || len(ref[:nameEnd(ref)]) > 255 {
		return fmt.Errorf("invalid image reference %q: not of the form [registry[:port]/]path[:tag][@digest] that container runtimes accept", ref)
	}
	return nil
}

// referenceGrammar is the image reference grammar of the distribution
// project, which containerd and kubelet enforce.
var referenceGrammar = func() *regexp.Regexp {
	const (
		domainComponent = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
		domain          = `(?:` + domainComponent + `(?:\.` + domainComponent + `)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?`
		pathComponent   = `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
		tag             = `[\w][\w.-]{0,127}`
		digest          = `[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`
	)
	return regexp.MustCompile(`^(?:` + domain + `/)?` + pathComponent + `(?:/` + pathComponent + `)*(?::` + tag + `)?(?:@` + digest + `)?$`)
}()

// nameEnd is where the name of a reference ends (before its tag or digest).
func nameEnd(ref string) int {
	end := len(ref)
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		end = i
	}
	if i := strings.LastIndexByte(ref[:end], ':'); i > strings.LastIndexByte(ref[:end], '/') {
		end = i
	}
	return end
}

// FromArgs validates and de-duplicates references given as arguments.
func FromArgs(args []string) ([]string, error) {
	for _, a := range args {
		if err := ValidateRef(a); err != nil {
			return nil, err
		}
	}
	return Dedup(args), nil
}

// FromFile reads references from path; "-" reads stdin.
func FromFile(path string, stdin io.Reader) ([]string, error) {
	if path == "-" {
		if stdin == nil {
			return nil, errors.New("reading images from stdin: no standard input")
		}
		return FromReader(stdin, "<stdin>")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading images from -f %s: %w", path, unwrapPathError(err))
	}
	defer f.Close()
	return FromReader(f, path)
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// FromReader reads a plain list or Kubernetes manifests from r. name is used
// in error messages only.
func FromReader(r io.Reader, name string) ([]string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	var refs []string
	if looksLikeManifests(data) {
		refs, err = fromManifests(data)
	} else {
		refs, err = fromList(data)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("reading %s: %w", name, ErrNoImages)
	}
	return Dedup(refs), nil
}

// looksLikeManifests says whether data is YAML/JSON objects rather than a
// plain list: a JSON object, or any line that is a "key: value" mapping at
// the top level such as "kind: Pod" or "apiVersion: v1". A list line may look
// close: "[::1]:5000/app:v1" (an IPv6 registry) or "kind:v1" (an image named
// kind) are references, not JSON or YAML mappings.
func looksLikeManifests(data []byte) bool {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) > 0 && trimmed[0] == '{' {
		return true
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if isMappingKey(line, "apiVersion") || isMappingKey(line, "kind") || line == "---" || strings.HasPrefix(line, "--- ") {
			return true
		}
	}
	return false
}

// isMappingKey says whether line starts a YAML mapping entry for key ("key:"
// followed by a blank or the end of the line).
func isMappingKey(line, key string) bool {
	rest, ok := strings.CutPrefix(line, key+":")
	return ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t')
}

func fromList(data []byte) ([]string, error) {
	var refs []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.Index(line, "#"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "- ") { // tolerate a YAML-style list
			line = strings.TrimSpace(strings.TrimPrefix(line, "- "))
		}
		if err := ValidateRef(line); err != nil {
			return nil, fmt.Errorf("line %d: %w (expected one image reference per line, or Kubernetes manifests)", n, err)
		}
		refs = append(refs, line)
	}
	return refs, sc.Err()
}

// typeMeta is the part of every object needed to pick its Go type.
type typeMeta struct {
	APIVersion string                 `json:"apiVersion"`
	Kind       string                 `json:"kind"`
	Items      []runtime.RawExtension `json:"items"`
}

func fromManifests(data []byte) ([]string, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var refs []string
	for doc := 1; ; doc++ {
		var raw runtime.RawExtension
		if err := dec.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("document %d is not valid YAML or JSON: %w", doc, err)
		}
		if len(bytes.TrimSpace(raw.Raw)) == 0 || string(bytes.TrimSpace(raw.Raw)) == "null" {
			continue
		}
		got, err := imagesOfDocument(raw.Raw)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		refs = append(refs, got...)
	}
	return refs, nil
}

func imagesOfDocument(raw []byte) ([]string, error) {
	var tm typeMeta
	if err := yaml.Unmarshal(raw, &tm); err != nil {
		return nil, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	if tm.Kind == "" {
		return nil, errors.New("not a Kubernetes object: no kind")
	}
	if strings.HasSuffix(tm.Kind, "List") {
		var refs []string
		for i, item := range tm.Items {
			got, err := imagesOfDocument(item.Raw)
			if err != nil {
				return nil, fmt.Errorf("item %d: %w", i, err)
			}
			refs = append(refs, got...)
		}
		return refs, nil
	}
	obj := NewObjectForKind(tm.Kind)
	if obj == nil {
		return nil, nil // a Service, ConfigMap, CRD instance …: holds no pod template we know
	}
	if err := yaml.Unmarshal(raw, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	refs := fromObject(obj)
	for _, r := range refs {
		if err := ValidateRef(r); err != nil {
			return nil, fmt.Errorf("%s: %w", tm.Kind, err)
		}
	}
	return refs, nil
}

// NewObjectForKind returns an empty typed object for a kind that carries a
// pod template (or is a Pod), or nil.
func NewObjectForKind(kind string) runtime.Object {
	switch kind {
	case "Pod":
		return &corev1.Pod{}
	case "PodTemplate":
		return &corev1.PodTemplate{}
	case "ReplicationController":
		return &corev1.ReplicationController{}
	case "Deployment":
		return &appsv1.Deployment{}
	case "StatefulSet":
		return &appsv1.StatefulSet{}
	case "DaemonSet":
		return &appsv1.DaemonSet{}
	case "ReplicaSet":
		return &appsv1.ReplicaSet{}
	case "Job":
		return &batchv1.Job{}
	case "CronJob":
		return &batchv1.CronJob{}
	}
	return nil
}

// PodSpecOf returns the pod spec an object carries, or nil for kinds that
// carry none.
func PodSpecOf(obj runtime.Object) *corev1.PodSpec {
	switch o := obj.(type) {
	case *corev1.Pod:
		return &o.Spec
	case *corev1.PodTemplate:
		return &o.Template.Spec
	case *corev1.ReplicationController:
		if o.Spec.Template == nil {
			return nil
		}
		return &o.Spec.Template.Spec
	case *appsv1.Deployment:
		return &o.Spec.Template.Spec
	case *appsv1.StatefulSet:
		return &o.Spec.Template.Spec
	case *appsv1.DaemonSet:
		return &o.Spec.Template.Spec
	case *appsv1.ReplicaSet:
		return &o.Spec.Template.Spec
	case *batchv1.Job:
		return &o.Spec.Template.Spec
	case *batchv1.CronJob:
		return &o.Spec.JobTemplate.Spec.Template.Spec
	}
	return nil
}

func fromObject(obj runtime.Object) []string {
	spec := PodSpecOf(obj)
	if spec == nil {
		return nil
	}
	return ImagesOfPodSpec(spec)
}

// ImagesOfPodSpec lists the images of every init, regular and ephemeral
// container of spec, in that order, skipping empty ones.
func ImagesOfPodSpec(spec *corev1.PodSpec) []string {
	var refs []string
	for _, c := range spec.InitContainers {
		refs = append(refs, c.Image)
	}
	for _, c := range spec.Containers {
		refs = append(refs, c.Image)
	}
	for _, c := range spec.EphemeralContainers {
		refs = append(refs, c.Image)
	}
	out := refs[:0]
	for _, r := range refs {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}

// FromPodSpecs lists the images of live objects (Pods and workloads), for
// reading what a cluster runs. Objects without a pod template are ignored.
func FromPodSpecs(objs []runtime.Object) []string {
	var refs []string
	for _, o := range objs {
		refs = append(refs, fromObject(o)...)
	}
	return Dedup(refs)
}

// Dedup removes repeated references, keeping the first occurrence's order.
func Dedup(refs []string) []string {
	seen := make(map[string]bool, len(refs))
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		if seen[r] {
			continue
		}
		seen[r] = true
		out = append(out, r)
	}
	return out
}
