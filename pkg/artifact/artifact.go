// Package artifact says what an artifact is on a node: the rules for its
// name, the node label that says a node holds it, and where it lives on the
// node's disk. Prefetch, inject and the controller share it. It does no I/O,
// except the node labelling in labels.go, which goes through a small
// interface. The rules for source URLs are in artifacturl, which the worker
// shares too.
package artifact

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Names, labels and annotations.
const (
	// LabelPrefix starts the node label that says a node holds a verified
	// artifact: artifacts.coral.dev/<name>=<first 12 hex digits of its digest>.
	LabelPrefix = "artifacts.coral.dev/"
	// AnnotationHostRoot, when set on a node, is prefixed to every host path
	// Coral writes on that node (e.g. nodes that share one host in tests, or
	// nodes whose writable root is not "/").
	AnnotationHostRoot = "coral.dev/host-root"
	// AnnotationRoot, when set on a node, replaces the run's artifact root
	// directory on that node.
	AnnotationRoot = "coral.dev/artifact-root"
	// DefaultRoot holds one directory per artifact name on each node.
	DefaultRoot = "/var/lib/coral/artifacts"
)

// LabelKey is the node label key for an artifact name.
func LabelKey(name string) string { return LabelPrefix + name }

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`)

// ValidateName checks that name is safe as a directory name and as the name
// part of a node label key.
func ValidateName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("artifact name %q: use lower-case letters, digits, '.', '_' and '-', starting and ending with a letter or digit, at most 63 characters", name)
	}
	return nil
}

// HostRoot is the node's host-root prefix from its annotation ("" for "/").
func HostRoot(n *corev1.Node) string {
	r := path.Clean("/" + n.Annotations[AnnotationHostRoot])
	if r == "/" {
		return ""
	}
	return r
}

// Dir is an artifact's directory on a node's host file system: the node's
// host root, then its artifact root (nodeRoot, from the node's annotation,
// wins over the run's root; DefaultRoot when both are empty), then the name.
func Dir(hostRoot, nodeRoot, root, name string) string {
	r := root
	if nodeRoot != "" {
		r = nodeRoot
	}
	if r == "" {
		r = DefaultRoot
	}
	return path.Join("/", hostRoot, r, name)
}

// NodeDir is Dir for a node object.
func NodeDir(n *corev1.Node, root, name string) string {
	return Dir(HostRoot(n), n.Annotations[AnnotationRoot], root, name)
}

// LabelValue is the label value for an artifact made of the given item
// digests: the first 12 hex digits of its one digest, or of the digest of
// the sorted list when there are several.
func LabelValue(digests []string) string {
	if len(digests) == 1 {
		return shortHex(digests[0])
	}
	s := append([]string(nil), digests...)
	sort.Strings(s)
	h := sha256.Sum256([]byte(strings.Join(s, "\n")))
	return hex.EncodeToString(h[:])[:12]
}

func shortHex(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}
