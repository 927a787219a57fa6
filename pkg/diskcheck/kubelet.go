package diskcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
)

// ReadOptions tune ReadNodes.
type ReadOptions struct {
	// Concurrency bounds the nodes read at once (default 16).
	Concurrency int
	// Timeout bounds each request (default 10s).
	Timeout time.Duration
}

// NodeDisk is what one node's kubelet says about its image filesystem.
type NodeDisk struct {
	Node string
	// ImageFs is node.runtime.imageFs of the summary API; valid when Err is nil.
	ImageFs FsStats
	// HighThresholdPercent is kubelet's imageGCHighThresholdPercent.
	HighThresholdPercent int
	// ThresholdErr is why configz could not be read (HighThresholdPercent
	// is then the default, 85).
	ThresholdErr error
	// Err is why the summary could not be read (nothing else is valid).
	Err error
}

// ErrNoImageFs means kubelet's summary has no image filesystem stats (the
// runtime did not report them).
var ErrNoImageFs = errors.New("kubelet reports no image filesystem stats")

// RBACHint is the permission the reads need, for messages.
const RBACHint = `get on nodes/proxy (e.g. a ClusterRole with rules [{apiGroups: [""], resources: ["nodes/proxy"], verbs: ["get"]}])`

// ReadNodes reads, for each node, kubelet's stats summary and configz
// through the API server's node proxy (GET /api/v1/nodes/NAME/proxy/
// stats/summary and /proxy/configz): two requests per node, at once. c is
// the core/v1 REST client (clientset.CoreV1().RESTClient()). A forbidden
// answer is returned as the API server's error (apierrors.IsForbidden);
// once one node's summary is forbidden the nodes not yet asked are not
// asked (nodes/proxy is granted for every node or, rarely, by name): they
// get an error that wraps that answer, so a user without the permission
// costs the API server at most 2 × Concurrency requests, not two per node.
// The result is in the order of nodes.
func ReadNodes(ctx context.Context, c rest.Interface, nodes []string, o ReadOptions) []NodeDisk {
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	out := make([]NodeDisk, len(nodes))
	var wg sync.WaitGroup
	var refused atomic.Pointer[NodeDisk] // the first forbidden answer
	sem := make(chan struct{}, o.Concurrency)
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if first := refused.Load(); first != nil {
				out[i] = NodeDisk{Node: n, HighThresholdPercent: DefaultImageGCHighThresholdPercent,
					Err: fmt.Errorf("node %s not asked after node %s's answer: %w", n, first.Node, errors.Unwrap(first.Err))}
				return
			}
			out[i] = readNode(ctx, c, n, o.Timeout)
			if out[i].Err != nil && apierrors.IsForbidden(out[i].Err) {
				refused.CompareAndSwap(nil, &out[i])
			}
		}()
	}
	wg.Wait()
	return out
}

// readNode reads a node's stats summary and configz, both at once.
func readNode(ctx context.Context, c rest.Interface, node string, timeout time.Duration) NodeDisk {
	nd := NodeDisk{Node: node, HighThresholdPercent: DefaultImageGCHighThresholdPercent}
	var configz []byte
	var configzErr error
	got := make(chan struct{})
	go func() {
		defer close(got)
		configz, configzErr = proxyGet(ctx, c, node, "configz", timeout)
	}()
	raw, err := proxyGet(ctx, c, node, "stats/summary", timeout)
	<-got
	if err != nil {
		nd.Err = fmt.Errorf("reading kubelet's stats summary of node %s: %w", node, err)
		return nd
	}
	if nd.ImageFs, err = ParseSummary(raw); err != nil {
		nd.Err = fmt.Errorf("node %s: %w", node, err)
		return nd
	}
	if configzErr != nil {
		nd.ThresholdErr = fmt.Errorf("reading kubelet's configz of node %s: %w", node, configzErr)
		return nd
	}
	if nd.HighThresholdPercent, err = ParseConfigz(configz); err != nil {
		nd.ThresholdErr = fmt.Errorf("node %s: %w", node, err)
	}
	return nd
}

func proxyGet(ctx context.Context, c rest.Interface, node, path string, timeout time.Duration) ([]byte, error) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return c.Get().Resource("nodes").Name(node).SubResource("proxy").Suffix(path).Do(rctx).Raw()
}

// summary is the part of kubelet's stats/summary (stats/v1alpha1) the check
// reads.
type summary struct {
	Node struct {
		Runtime *struct {
			ImageFs *struct {
				AvailableBytes *int64 `json:"availableBytes"`
				CapacityBytes  *int64 `json:"capacityBytes"`
				UsedBytes      *int64 `json:"usedBytes"`
			} `json:"imageFs"`
		} `json:"runtime"`
	} `json:"node"`
}

// ParseSummary reads node.runtime.imageFs from a stats summary.
func ParseSummary(raw []byte) (FsStats, error) {
	var s summary
	if err := json.Unmarshal(raw, &s); err != nil {
		return FsStats{}, fmt.Errorf("decoding kubelet's stats summary: %w", err)
	}
	rt := s.Node.Runtime
	if rt == nil || rt.ImageFs == nil || rt.ImageFs.AvailableBytes == nil || rt.ImageFs.CapacityBytes == nil {
		return FsStats{}, ErrNoImageFs
	}
	fs := FsStats{AvailableBytes: *rt.ImageFs.AvailableBytes, CapacityBytes: *rt.ImageFs.CapacityBytes}
	if rt.ImageFs.UsedBytes != nil {
		fs.UsedBytes = *rt.ImageFs.UsedBytes
	}
	return fs, nil
}

// ParseConfigz reads kubeletconfig.imageGCHighThresholdPercent from
// kubelet's configz (the default, 85, when it is not set).
func ParseConfigz(raw []byte) (int, error) {
	var c struct {
		KubeletConfig *struct {
			ImageGCHighThresholdPercent *int `json:"imageGCHighThresholdPercent"`
		} `json:"kubeletconfig"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return DefaultImageGCHighThresholdPercent, fmt.Errorf("decoding kubelet's configz: %w", err)
	}
	if c.KubeletConfig == nil {
		return DefaultImageGCHighThresholdPercent, errors.New("kubelet's configz has no kubeletconfig")
	}
	if c.KubeletConfig.ImageGCHighThresholdPercent == nil {
		return DefaultImageGCHighThresholdPercent, nil
	}
	return *c.KubeletConfig.ImageGCHighThresholdPercent, nil
}
