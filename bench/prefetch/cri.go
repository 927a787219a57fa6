package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// node is one cluster node as the bench reaches it: its CRI socket and, when
// the local cluster's layout shows it, its containerd content store (to prove
// that a removed image's layers are really gone before a measurement).
type node struct {
	Name     string
	Endpoint string // unix:///…/containerd.sock
	BlobDir  string // …/io.containerd.content.v1.content/blobs/sha256, "" if unknown
	// The node's kubelet and containerd logs (the local cluster keeps them
	// in files): they say when kubelet noticed an exit and tore a pod down.
	KubeletLog, ContainerdLog logTail

	conn   *grpc.ClientConn
	images runtimeapi.ImageServiceClient
	rt     runtimeapi.RuntimeServiceClient
}

func dialNode(name, endpoint string) (*node, error) {
	if !strings.HasPrefix(endpoint, "unix://") {
		return nil, fmt.Errorf("node %s: CRI endpoint %q is not unix://", name, endpoint)
	}
	conn, err := grpc.NewClient(endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		return nil, err
	}
	n := &node{Name: name, Endpoint: endpoint, conn: conn,
		images: runtimeapi.NewImageServiceClient(conn), rt: runtimeapi.NewRuntimeServiceClient(conn)}
	n.BlobDir = contentStore(strings.TrimPrefix(endpoint, "unix://"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.rt.Version(ctx, &runtimeapi.VersionRequest{}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("node %s: the runtime at %s does not answer: %w", name, endpoint, err)
	}
	return n, nil
}

func (n *node) version(ctx context.Context) string {
	v, err := n.rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return "?"
	}
	return v.GetRuntimeName() + " " + v.GetRuntimeVersion()
}

var rootLine = regexp.MustCompile(`(?m)^\s*root\s*=\s*["']([^"']+)["']`)

// contentStore finds the content store of the containerd serving socket, from
// the local cluster's layout (<dir of socket>/containerd/config.toml, key
// root). It returns "" when it cannot tell.
func contentStore(socket string) string {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(socket), "containerd", "config.toml"))
	if err != nil {
		return ""
	}
	m := rootLine.FindSubmatch(b)
	if m == nil {
		return ""
	}
	dir := filepath.Join(string(m[1]), "io.containerd.content.v1.content", "blobs", "sha256")
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return ""
	}
	return dir
}

// status returns the image the node holds under ref, or nil.
func (n *node) status(ctx context.Context, ref string) (*runtimeapi.Image, error) {
	r, err := n.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return nil, fmt.Errorf("%s: ImageStatus %s: %w", n.Name, ref, err)
	}
	return r.GetImage(), nil
}

// remove deletes ref from the node (by image id, so every tag goes) and
// checks that the runtime no longer lists it and that none of the given blobs
// (layer digests) remain in its content store.
func (n *node) remove(ctx context.Context, ref string, blobs []string) error {
	img, err := n.status(ctx, ref)
	if err != nil {
		return err
	}
	if img != nil {
		if _, err := n.images.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: img.GetId()}}); err != nil {
			return fmt.Errorf("%s: RemoveImage %s: %w", n.Name, ref, err)
		}
	}
	if img, err = n.status(ctx, ref); err != nil {
		return err
	}
	if img != nil {
		return fmt.Errorf("%s: %s is still listed after RemoveImage", n.Name, ref)
	}
	if n.BlobDir == "" {
		return nil
	}
	for _, d := range blobs {
		if _, err := os.Stat(filepath.Join(n.BlobDir, strings.TrimPrefix(d, "sha256:"))); err == nil {
			return fmt.Errorf("%s: layer %s of %s is still in the content store after RemoveImage (a pull would not download it)", n.Name, d, ref)
		}
	}
	return nil
}

// pullResult is one image on one node in a floor measurement.
type pullResult struct {
	Image    string
	Duration time.Duration
	Err      error
}

// pullAll pulls refs through the node's CRI socket, at most parallel at once,
// the way the worker does (ImageStatus, PullImage, ImageStatus), and returns
// the per-image results and when the last one finished.
func (n *node) pullAll(ctx context.Context, refs []string, parallel int) ([]pullResult, time.Time) {
	out := make([]pullResult, len(refs))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, ref := range refs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			start := time.Now()
			err := n.pullOne(ctx, ref)
			out[i] = pullResult{Image: ref, Duration: time.Since(start), Err: err}
		})
	}
	wg.Wait()
	return out, time.Now()
}

func (n *node) pullOne(ctx context.Context, ref string) error {
	if img, err := n.status(ctx, ref); err != nil {
		return err
	} else if img != nil {
		return fmt.Errorf("%s: %s was already present before the pull", n.Name, ref)
	}
	if _, err := n.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		return fmt.Errorf("%s: PullImage %s: %w", n.Name, ref, err)
	}
	img, err := n.status(ctx, ref)
	if err != nil {
		return err
	}
	if img == nil {
		return fmt.Errorf("%s: %s not listed after PullImage", n.Name, ref)
	}
	return nil
}

// ensure pulls ref when the node lacks it; it says whether it had to.
func (n *node) ensure(ctx context.Context, ref string) (bool, error) {
	img, err := n.status(ctx, ref)
	if err != nil {
		return false, err
	}
	if img != nil {
		return false, nil
	}
	if _, err := n.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		return true, fmt.Errorf("%s: PullImage %s: %w", n.Name, ref, err)
	}
	return true, nil
}

// podTimes is what the node's runtime knows about a pod, in nanosecond
// precision (the API server only keeps seconds).
type podTimes struct {
	SandboxID        string
	WorkerID         string
	SandboxCreated   time.Time
	ContainerCreated time.Time
	ContainerStarted time.Time
	ContainerExited  time.Time
}

// podTimes reads the sandbox and container timestamps of the pod with uid.
func (n *node) podTimes(ctx context.Context, uid, container string) (podTimes, error) {
	var pt podTimes
	sel := map[string]string{"io.kubernetes.pod.uid": uid}
	sbs, err := n.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{LabelSelector: sel}})
	if err != nil {
		return pt, err
	}
	for _, sb := range sbs.GetItems() {
		if t := time.Unix(0, sb.GetCreatedAt()); pt.SandboxCreated.IsZero() || t.Before(pt.SandboxCreated) {
			pt.SandboxCreated, pt.SandboxID = t, sb.GetId()
		}
	}
	cs, err := n.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{LabelSelector: sel}})
	if err != nil {
		return pt, err
	}
	for _, c := range cs.GetContainers() {
		if c.GetMetadata().GetName() != container {
			continue
		}
		st, err := n.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.GetId()})
		if err != nil {
			return pt, err
		}
		s := st.GetStatus()
		pt.WorkerID = c.GetId()
		pt.ContainerCreated = time.Unix(0, s.GetCreatedAt())
		pt.ContainerStarted = time.Unix(0, s.GetStartedAt())
		if s.GetFinishedAt() > 0 {
			pt.ContainerExited = time.Unix(0, s.GetFinishedAt())
		}
	}
	if pt.SandboxCreated.IsZero() || pt.ContainerStarted.IsZero() {
		return pt, errors.New("the runtime no longer lists the pod's sandbox or container")
	}
	return pt, nil
}
