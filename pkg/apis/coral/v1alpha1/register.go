package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is coral.dev/v1alpha1.
var GroupVersion = schema.GroupVersion{Group: "coral.dev", Version: "v1alpha1"}

var (
	// SchemeBuilder registers the types of this version.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds them to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion,
		&ImagePrefetch{}, &ImagePrefetchList{},
		&ArtifactPrefetch{}, &ArtifactPrefetchList{},
		&PrefetchNode{}, &PrefetchNodeList{},
	)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
