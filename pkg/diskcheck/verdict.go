// Package diskcheck tells, before anything is pulled, whether a set of images
// fits on each node's image filesystem: the images' sizes come from their
// manifests, the free space from kubelet's summary API and the image-GC high
// threshold from kubelet's configz, both read through the API server's node
// proxy. The verdict itself (Judge) is a pure function.
//
// Sizes are compressed sizes (layers + config, as the manifests declare
// them): a lower bound of what a node needs. containerd keeps the compressed
// blobs and unpacks them beside them (typically 2–4× the compressed size in
// all); CRI-O keeps the unpacked layers only. The check therefore never
// refuses a run on a guess: a node that "does not fit" cannot hold even the
// compressed bytes, and one "over the GC threshold" crosses it with them.
//
// The package does no printing; it returns values and errors.
package diskcheck

import (
	"fmt"
)

// DefaultImageGCHighThresholdPercent is kubelet's default for
// imageGCHighThresholdPercent, used when configz does not say.
const DefaultImageGCHighThresholdPercent = 85

// FsStats is a node's image filesystem as kubelet reports it
// (summary API: node.runtime.imageFs).
type FsStats struct {
	AvailableBytes int64 `json:"availableBytes"`
	CapacityBytes  int64 `json:"capacityBytes"`
	UsedBytes      int64 `json:"usedBytes"`
}

// Status is a node's verdict.
type Status string

const (
	// Fits: the images fit and stay under kubelet's image-GC high threshold.
	Fits Status = "Fits"
	// OverGCThreshold: the images fit, but the filesystem would reach the
	// image-GC high threshold, so kubelet deletes unused images (possibly
	// the ones just pulled, or others the node's workloads need later).
	OverGCThreshold Status = "OverGCThreshold"
	// DoesNotFit: the node has less free space than the images need.
	DoesNotFit Status = "DoesNotFit"
	// Unknown: the numbers do not allow a verdict (no capacity reported).
	Unknown Status = "Unknown"
)

// Verdict is one node's outcome, with the numbers behind it.
type Verdict struct {
	Node   string `json:"node"`
	Status Status `json:"status"`
	// NeedBytes is what the node still needs (compressed: a lower bound).
	NeedBytes      int64 `json:"needBytes"`
	AvailableBytes int64 `json:"availableBytes"`
	CapacityBytes  int64 `json:"capacityBytes"`
	// UsedPercent and UsedPercentAfter are computed as kubelet's image GC
	// does: 100 - available*100/capacity, before and after the pulls.
	UsedPercent      int `json:"usedPercent"`
	UsedPercentAfter int `json:"usedPercentAfter"`
	// HighThresholdPercent is kubelet's imageGCHighThresholdPercent (100
	// disables image GC by disk usage).
	HighThresholdPercent int `json:"highThresholdPercent"`
	// Message says it in words, with human numbers.
	Message string `json:"message"`
}

// Judge decides whether need bytes fit on a node whose image filesystem is
// fs and whose kubelet starts image GC at highThreshold percent used.
func Judge(node string, need int64, fs FsStats, highThreshold int) Verdict {
	v := Verdict{
		Node: node, NeedBytes: need, AvailableBytes: fs.AvailableBytes, CapacityBytes: fs.CapacityBytes,
		HighThresholdPercent: highThreshold,
	}
	if need < 0 {
		need, v.NeedBytes = 0, 0
	}
	if fs.CapacityBytes <= 0 {
		v.Status = Unknown
		v.Message = "kubelet reports no capacity for the image filesystem"
		return v
	}
	avail := min(max(fs.AvailableBytes, 0), fs.CapacityBytes)
	v.UsedPercent = usedPercent(avail, fs.CapacityBytes)
	v.UsedPercentAfter = usedPercent(max(avail-need, 0), fs.CapacityBytes)
	switch {
	case need > avail:
		v.Status = DoesNotFit
		v.Message = fmt.Sprintf("needs at least %s, %s free of %s", HumanBytes(need), HumanBytes(avail), HumanBytes(fs.CapacityBytes))
	case highThreshold < 100 && need > 0 && v.UsedPercentAfter >= highThreshold:
		v.Status = OverGCThreshold
		if v.UsedPercent >= highThreshold {
			v.Message = fmt.Sprintf("needs at least %s, and the image filesystem is already %d%% used (%s free of %s, %d%% after): kubelet's image GC starts at %d%% and deletes unused images",
				HumanBytes(need), v.UsedPercent, HumanBytes(avail), HumanBytes(fs.CapacityBytes), v.UsedPercentAfter, highThreshold)
			break
		}
		v.Message = fmt.Sprintf("needs at least %s, which takes the image filesystem from %d%% to %d%% used (%s free of %s); kubelet's image GC starts at %d%% and deletes unused images",
			HumanBytes(need), v.UsedPercent, v.UsedPercentAfter, HumanBytes(avail), HumanBytes(fs.CapacityBytes), highThreshold)
	default:
		v.Status = Fits
		gc := fmt.Sprintf("image GC at %d%%", highThreshold)
		if highThreshold >= 100 {
			gc = "image GC by disk usage off"
		}
		if need == 0 {
			v.Message = fmt.Sprintf("holds every image already (%s free of %s, %d%% used, %s)", HumanBytes(avail), HumanBytes(fs.CapacityBytes), v.UsedPercent, gc)
		} else {
			v.Message = fmt.Sprintf("needs at least %s, %s free of %s (%d%% → %d%% used, %s)", HumanBytes(need), HumanBytes(avail), HumanBytes(fs.CapacityBytes), v.UsedPercent, v.UsedPercentAfter, gc)
		}
	}
	return v
}

// usedPercent is kubelet's image-GC arithmetic (pkg/kubelet/images:
// usagePercent := 100 - int(available*100/capacity)).
func usedPercent(avail, capacity int64) int {
	return 100 - int(avail*100/capacity)
}

// HumanBytes prints a size with a binary unit ("1.5 GiB", "0 B").
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
