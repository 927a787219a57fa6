// Package v1alpha1 holds Coral's API types, group coral.dev, version
// v1alpha1: ImagePrefetch and ArtifactPrefetch (prefetches that persist: a
// node that joins later gets them too, moved tags are followed) and
// PrefetchNode (one small per-node record of what a prefetch put there).
// The CRDs under config/crd are generated from these types (make manifests).
//
// +kubebuilder:object:generate=true
// +groupName=coral.dev
package v1alpha1
