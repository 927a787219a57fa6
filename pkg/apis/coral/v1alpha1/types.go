package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Condition types every prefetch object reports.
const (
	// ConditionReady: every selected, usable node holds every item at the
	// resolved digest.
	ConditionReady = "Ready"
	// ConditionProgressing: Jobs are running or waiting for a slot.
	ConditionProgressing = "Progressing"
	// ConditionDegraded: something a person must fix keeps the object from
	// Ready (the reason and message say what).
	ConditionDegraded = "Degraded"
)

// Nodes selects the nodes a prefetch is for, with the CLI's semantics
// (-l, --nodes, --include-unschedulable): nodes that are not Ready,
// cordoned, virtual or without a worker build for their platform are
// skipped with a reason.
type Nodes struct {
	// selector selects nodes by label; empty selects every node.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// names restricts the prefetch to these nodes; with a selector, a node
	// must match both. A name no node has is reported, not an error (the node
	// may join later).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=5000
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	Names []string `json:"names,omitempty"`
	// includeUnschedulable includes cordoned nodes.
	// +optional
	IncludeUnschedulable bool `json:"includeUnschedulable,omitempty"`
}

// RunSettings bound how a prefetch runs on nodes.
type RunSettings struct {
	// maxNodesInFlight caps this object's nodes whose worker pod runs at
	// once (the controller also has a cap across all objects, and never
	// gives one node more than one Job at a time). Jobs still waiting for a
	// backlogged Job controller to make their pods pull nothing and may
	// exceed it, while the pods it makes stay within the cap at its pace
	// (the controller's --jobs-ahead).
	// +optional
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	MaxNodesInFlight int32 `json:"maxNodesInFlight,omitempty"`
	// nodeTimeout bounds one node, from its worker pod's creation to its
	// report. A Job still waiting for its pod fails only once the Job
	// controller has made no pod for this object in nodeTimeout.
	// +optional
	// +kubebuilder:default="15m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('30s') && duration(self) <= duration('24h')",message="nodeTimeout must be between 30s and 24h"
	NodeTimeout *metav1.Duration `json:"nodeTimeout,omitempty"`
	// retries per item for transient errors (never for not-found or unauthorized).
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	Retries int32 `json:"retries,omitempty"`
	// workerImage overrides the controller's worker image for this object.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	WorkerImage string `json:"workerImage,omitempty"`
}

// ImagePrefetchSpec is what an ImagePrefetch wants: these images on these
// nodes, now and on every node that joins later.
type ImagePrefetchSpec struct {
	// images to hold on every selected node (references as in a pod spec).
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=512
	// +kubebuilder:validation:items:Pattern=`^[^\s]+$`
	Images []string `json:"images"`
	// nodes selects the nodes; empty selects every node.
	// +optional
	Nodes Nodes `json:"nodes,omitempty"`
	// pullSecrets name kubernetes.io/dockerconfigjson or dockercfg secrets
	// in this namespace, for private registries.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	PullSecrets []string `json:"pullSecrets,omitempty"`
	// pin keeps the images from kubelet's image garbage collection
	// (containerd 1.6.26+ / 2.x) until this object is deleted.
	// +optional
	Pin bool `json:"pin,omitempty"`
	// maxPullsPerNode is how many images one node pulls at once.
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=32
	MaxPullsPerNode int32 `json:"maxPullsPerNode,omitempty"`
	// imageTimeout bounds one image on a node, retries included.
	// +optional
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s') && duration(self) <= duration('24h')",message="imageTimeout must be between 10s and 24h"
	ImageTimeout *metav1.Duration `json:"imageTimeout,omitempty"`
	// refreshInterval is how often tags are resolved again; a tag that moved
	// is prefetched anew on every node. 0s never refreshes.
	// +optional
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:XValidation:rule="duration(self) == duration('0s') || duration(self) >= duration('10s')",message="refreshInterval must be 0s (never) or at least 10s"
	RefreshInterval *metav1.Duration `json:"refreshInterval,omitempty"`
	// runtimeEndpoint overrides the per-node discovery of the runtime socket.
	// +optional
	// +kubebuilder:validation:Pattern=`^unix:///.+`
	RuntimeEndpoint string `json:"runtimeEndpoint,omitempty"`

	RunSettings `json:",inline"`
}

// NodeMessage is one node and what went wrong there.
type NodeMessage struct {
	Node    string `json:"node"`
	Message string `json:"message,omitempty"`
}

// PrefetchStatus is what every prefetch object reports. It stays small at
// any cluster size: counts, conditions and at most MaxListedNodes nodes;
// per-node detail lives in PrefetchNode objects.
type PrefetchStatus struct {
	// observedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready, Progressing, Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ready is readyNodes/desiredNodes, for kubectl get.
	// +optional
	Ready string `json:"ready,omitempty"`
	// desiredNodes are the selected nodes that can hold the items.
	// +optional
	DesiredNodes int32 `json:"desiredNodes"`
	// readyNodes hold every item at the resolved digest.
	// +optional
	ReadyNodes int32 `json:"readyNodes"`
	// failedNodes failed their last attempt (they are retried with backoff).
	// +optional
	FailedNodes int32 `json:"failedNodes"`
	// inFlightNodes have a Job running now.
	// +optional
	InFlightNodes int32 `json:"inFlightNodes"`
	// skippedNodes are selected but cannot get a Job (not Ready, cordoned,
	// no runtime socket, …).
	// +optional
	SkippedNodes int32 `json:"skippedNodes"`
	// failingNodes lists some failed nodes with their messages (at most 10;
	// every node's detail: kubectl get prefetchnodes -l coral.dev/<kind>=<name>).
	// +optional
	// +kubebuilder:validation:MaxItems=10
	FailingNodes []NodeMessage `json:"failingNodes,omitempty"`
	// skipped lists some skipped nodes with the reason (at most 10).
	// +optional
	// +kubebuilder:validation:MaxItems=10
	Skipped []NodeMessage `json:"skipped,omitempty"`
}

// ResolvedImage is an image and the digest its tag pointed to when last
// resolved.
type ResolvedImage struct {
	Image string `json:"image"`
	// digest the nodes must hold; empty when the controller could not resolve
	// the tag (nodes then pull the tag as it is).
	// +optional
	Digest string `json:"digest,omitempty"`
	// message says why the tag could not be resolved.
	// +optional
	Message string `json:"message,omitempty"`
}

// ImagePrefetchStatus is the observed state of an ImagePrefetch.
type ImagePrefetchStatus struct {
	PrefetchStatus `json:",inline"`
	// images are the resolved digests, in spec order.
	// +optional
	// +kubebuilder:validation:MaxItems=256
	Images []ResolvedImage `json:"images,omitempty"`
	// lastResolveTime is when tags were last resolved.
	// +optional
	LastResolveTime *metav1.Time `json:"lastResolveTime,omitempty"`
}

// ImagePrefetch keeps images on a set of nodes: every selected node that is
// Ready, including nodes that join later, pulls them once; moved tags are
// followed; with pin, kubelet's image GC leaves them alone.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=ipf,categories=coral
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.ready`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Images",type=string,JSONPath=`.spec.images`
// +kubebuilder:printcolumn:name="Pin",type=boolean,JSONPath=`.spec.pin`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="metadata.name: at most 63 characters (it is used as a label value)"
type ImagePrefetch struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ImagePrefetchSpec   `json:"spec"`
	Status ImagePrefetchStatus `json:"status,omitempty"`
}

// ImagePrefetchList is a list of ImagePrefetch.
//
// +kubebuilder:object:root=true
type ImagePrefetchList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ImagePrefetch `json:"items"`
}

// ArtifactSource is one file (http/https/s3) or S3 prefix to fetch.
type ArtifactSource struct {
	// url: http(s)://host/path/file, s3://bucket/key or s3://bucket/prefix/.
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^(https?|s3)://[^/\s]+/?[^\s]*$`
	URL string `json:"url"`
	// sha256 the file must have (64 hex digits).
	// +optional
	// +kubebuilder:validation:Pattern=`^[a-f0-9]{64}$`
	SHA256 string `json:"sha256,omitempty"`
}

// S3Options say how to reach an S3-compatible store.
type S3Options struct {
	// secret with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optional
	// AWS_SESSION_TOKEN keys; without it the worker uses the default chain.
	// +optional
	Secret string `json:"secret,omitempty"`
	// endpoint of an S3-compatible store (implies path-style addressing).
	// +optional
	// +kubebuilder:validation:Pattern=`^https?://`
	Endpoint string `json:"endpoint,omitempty"`
	// region (default us-east-1).
	// +optional
	Region string `json:"region,omitempty"`
	// pathStyle bucket addressing.
	// +optional
	PathStyle bool `json:"pathStyle,omitempty"`
}

// ArtifactPrefetchSpec is what an ArtifactPrefetch wants: these files in
// the artifact's directory on these nodes, verified.
type ArtifactPrefetchSpec struct {
	// name of the artifact: its directory on each node
	// (<root>/<name>) and its node label artifacts.coral.dev/<name>.
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$`
	Name string `json:"name"`
	// sources to fetch.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	Sources []ArtifactSource `json:"sources"`
	// checksumURL names a sha256sum-style file with the sources' checksums.
	// +optional
	ChecksumURL string `json:"checksumURL,omitempty"`
	// extract unpacks tar / tar.gz sources.
	// +optional
	Extract bool `json:"extract,omitempty"`
	// root is the directory on the node holding one directory per artifact.
	// +optional
	// +kubebuilder:default="/var/lib/coral/artifacts"
	// +kubebuilder:validation:Pattern=`^/`
	Root string `json:"root,omitempty"`
	// headerSecret names a secret whose keys are HTTP header names.
	// +optional
	HeaderSecret string `json:"headerSecret,omitempty"`
	// s3 options.
	// +optional
	S3 *S3Options `json:"s3,omitempty"`
	// sourceTimeout bounds one source on a node, retries included.
	// +optional
	// +kubebuilder:default="30m"
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('10s') && duration(self) <= duration('24h')",message="sourceTimeout must be between 10s and 24h"
	SourceTimeout *metav1.Duration `json:"sourceTimeout,omitempty"`
	// nodes selects the nodes; empty selects every node.
	// +optional
	Nodes Nodes `json:"nodes,omitempty"`

	RunSettings `json:",inline"`
}

// ArtifactPrefetchStatus is the observed state of an ArtifactPrefetch.
type ArtifactPrefetchStatus struct {
	PrefetchStatus `json:",inline"`
}

// ArtifactPrefetch keeps a verified artifact on a set of nodes, including
// nodes that join later; nodes that hold it carry the label
// artifacts.coral.dev/<name> that kubectl coral inject artifact targets.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=apf,categories=coral
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.ready`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Artifact",type=string,JSONPath=`.spec.name`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 63",message="metadata.name: at most 63 characters (it is used as a label value)"
type ArtifactPrefetch struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ArtifactPrefetchSpec   `json:"spec"`
	Status ArtifactPrefetchStatus `json:"status,omitempty"`
}

// ArtifactPrefetchList is a list of ArtifactPrefetch.
//
// +kubebuilder:object:root=true
type ArtifactPrefetchList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ArtifactPrefetch `json:"items"`
}

// Node states a PrefetchNode reports.
const (
	NodeStateReady  = "Ready"
	NodeStateFailed = "Failed"
)

// NodeItem is one item's outcome on one node.
type NodeItem struct {
	// ref is the image reference or source URL.
	Ref string `json:"ref"`
	// expectedDigest is what the controller asked for.
	// +optional
	ExpectedDigest string `json:"expectedDigest,omitempty"`
	// digest the node holds.
	// +optional
	Digest string `json:"digest,omitempty"`
	// status: Pulled, Present, Downloaded or Failed.
	Status string `json:"status"`
	// pinned: the runtime keeps the image from kubelet's image GC.
	// +optional
	Pinned bool `json:"pinned,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
}

// PrefetchRef names the prefetch object a PrefetchNode belongs to.
type PrefetchRef struct {
	// kind: ImagePrefetch or ArtifactPrefetch.
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// PrefetchNode records what one prefetch object put on one node: the
// controller's per-node memory that survives restarts, kept out of the
// parent's status so that stays small at any cluster size. It is owned by
// the prefetch object and deleted with it.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:shortName=pfn,categories=coral
// +kubebuilder:printcolumn:name="Prefetch",type=string,JSONPath=`.prefetch.name`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.node`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.state`
// +kubebuilder:printcolumn:name="Attempts",type=integer,JSONPath=`.attempts`
// +kubebuilder:printcolumn:name="Updated",type=date,JSONPath=`.lastAttemptTime`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.message`
type PrefetchNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// prefetch is the owning object.
	Prefetch PrefetchRef `json:"prefetch"`
	// node name.
	Node string `json:"node"`
	// state: Ready (every item at its digest) or Failed (see message and items).
	State string `json:"state"`
	// attempts counts failed attempts in a row (for backoff); 0 when Ready.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// lastAttemptTime is when the last Job for this node finished.
	// +optional
	LastAttemptTime *metav1.Time `json:"lastAttemptTime,omitempty"`
	// lastJob is the name of the Job whose result was recorded last (a
	// restarted controller that finds it still there only deletes it).
	// +optional
	LastJob string `json:"lastJob,omitempty"`
	// results are the outcomes of the last Jobs, merged: one per item (not
	// "items": a top-level items field would make clients take the object
	// for a list).
	// +optional
	// +kubebuilder:validation:MaxItems=256
	Results []NodeItem `json:"results,omitempty"`
	// message summarises a failure.
	// +optional
	Message string `json:"message,omitempty"`
}

// PrefetchNodeList is a list of PrefetchNode.
//
// +kubebuilder:object:root=true
type PrefetchNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PrefetchNode `json:"items"`
}
