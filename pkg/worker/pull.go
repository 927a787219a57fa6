// Package worker is what runs inside a Coral Job on a node: it pulls images
// through the node's container runtime (CRI), and reports per item.
package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/coral-dev/coral/pkg/registryauth"
	"github.com/coral-dev/coral/pkg/report"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageService is the part of the CRI image service the worker uses.
type ImageService interface {
	ImageStatus(ctx context.Context, ref string) (*runtimeapi.Image, error)
	PullImage(ctx context.Context, ref string, auth *runtimeapi.AuthConfig) error
}

// Item is one image to bring to the node.
type Item struct {
	Image string
	// ExpectedDigest is the digest the plugin resolved ("" when unresolved).
	ExpectedDigest string
}

// ParseItem parses the worker's --image value: REF or REF=DIGEST.
func ParseItem(s string) (Item, error) {
	ref, d, _ := strings.Cut(s, "=")
	if ref == "" {
		return Item{}, fmt.Errorf("--image %q: empty reference", s)
	}
	if d != "" && !strings.HasPrefix(d, "sha256:") {
		return Item{}, fmt.Errorf("--image %q: digest must start with sha256:", s)
	}
	return Item{Image: ref, ExpectedDigest: d}, nil
}

// PullOptions tune Pull.
type PullOptions struct {
	// MaxParallel bounds concurrent pulls (≥1).
	MaxParallel int
	// ImageTimeout bounds one image, all attempts included.
	ImageTimeout time.Duration
	// Retries is how many times a transient failure is retried.
	Retries int
	// Backoff is the first retry delay; it doubles each time.
	Backoff time.Duration
	// Keyring holds pull-secret credentials; nil means anonymous.
	Keyring *registryauth.Keyring
	// Pin keeps the images from kubelet's image garbage collection (needs
	// an ImageService that is also a Pinner).
	Pin bool
	// Logf receives progress lines (never credentials). Nil discards.
	Logf func(format string, args ...any)
}

// Pull brings every item to the node and returns one result per item, in
// order. It never returns early: each item gets an outcome.
func Pull(ctx context.Context, svc ImageService, items []Item, o PullOptions) *report.WorkerReport {
	if o.MaxParallel < 1 {
		o.MaxParallel = 1
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	r := &report.WorkerReport{Version: report.WireVersion, Items: make([]report.ItemResult, len(items))}
	sem := make(chan struct{}, o.MaxParallel)
	var wg sync.WaitGroup
	for i, it := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				r.Items[i] = report.ItemResult{Item: it.Image, Status: report.StatusFailed, Message: "not started: " + ctx.Err().Error()}
				return
			}
			r.Items[i] = pullOne(ctx, svc, it, o, logf)
		}()
	}
	wg.Wait()
	return r
}

func pullOne(ctx context.Context, svc ImageService, it Item, o PullOptions, logf func(string, ...any)) report.ItemResult {
	start := time.Now()
	res := report.ItemResult{Item: it.Image}
	if o.ImageTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.ImageTimeout)
		defer cancel()
	}
	expected := it.ExpectedDigest
	if expected == "" {
		// A digest reference names its bytes: no registry can move it.
		if _, d, ok := strings.Cut(it.Image, "@"); ok {
			expected = d
		}
	}
	finish := func(st report.Status, img *runtimeapi.Image, msg string) report.ItemResult {
		res.Status, res.Message = st, msg
		if img != nil {
			res.Digest = repoDigest(img, it.Image, expected)
			res.SizeBytes = int64(img.GetSize())
			res.Pinned = img.GetPinned()
			if o.Pin && st.Succeeded() {
				p, ok := svc.(Pinner)
				var err error
				if !ok {
					err = ErrCannotPin
				} else {
					err = p.Pin(ctx, it.Image, img)
				}
				res.Pinned = err == nil
				if err != nil {
					res.Message = strings.TrimSpace(res.Message + " not pinned: " + err.Error())
				}
			}
		}
		res.DurationMs = time.Since(start).Milliseconds()
		logf("%s %s %s %s", it.Image, st, res.Digest, msg)
		return res
	}

	// Already there with the expected bytes? Then nothing to pull. Without
	// an expected digest only the registry knows what the tag points to now,
	// so the worker always asks it (a pull, cheap when the layers are there)
	// and calls the image Present only if the node already held those bytes.
	img, err := withRetry(ctx, o, &res.Attempts, func(ctx context.Context) (*runtimeapi.Image, error) {
		return svc.ImageStatus(ctx, it.Image)
	})
	res.Attempts = 0
	if err != nil {
		return finish(report.StatusFailed, nil, describe(err, ctx, o.ImageTimeout))
	}
	if img != nil && expected != "" && hasDigest(img, expected) {
		return finish(report.StatusPresent, img, "")
	}
	var before string // the bytes the node held under this name before the pull
	if img != nil {
		before = img.GetId()
	}

	creds := o.Keyring.Lookup(it.Image)
	var pullErr error
	// Try each matching credential in turn (most specific first) as kubelet
	// does; an unauthorized answer moves on to the next one.
	for ci := 0; ci == 0 || ci < len(creds); ci++ {
		var auth *runtimeapi.AuthConfig
		if ci < len(creds) {
			c := creds[ci]
			auth = &runtimeapi.AuthConfig{Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken, RegistryToken: c.RegistryToken}
		}
		_, pullErr = withRetry(ctx, o, &res.Attempts, func(ctx context.Context) (*runtimeapi.Image, error) {
			return nil, svc.PullImage(ctx, it.Image, auth)
		})
		if pullErr == nil || classify(pullErr) != classUnauthorized {
			break
		}
	}
	if pullErr != nil {
		return finish(report.StatusFailed, nil, describe(pullErr, ctx, o.ImageTimeout))
	}
	img, err = svc.ImageStatus(ctx, it.Image)
	if err != nil || img == nil {
		msg := "pulled, but the runtime does not list the image afterwards"
		if err != nil {
			msg += ": " + describe(err, ctx, o.ImageTimeout)
		}
		return finish(report.StatusFailed, nil, msg)
	}
	if before != "" && img.GetId() == before {
		// The registry serves what the node already had: nothing new came.
		return finish(report.StatusPresent, img, "")
	}
	return finish(report.StatusPulled, img, "")
}

// withRetry runs f, retrying transient failures with exponential backoff.
func withRetry(ctx context.Context, o PullOptions, attempts *int, f func(context.Context) (*runtimeapi.Image, error)) (*runtimeapi.Image, error) {
	delay := o.Backoff
	for try := 0; ; try++ {
		*attempts++
		img, err := f(ctx)
		if err == nil {
			return img, nil
		}
		if classify(err) != classTransient || try >= o.Retries || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, err
		}
		delay *= 2
	}
}

type errClass int

const (
	classPermanent errClass = iota
	classTransient
	classUnauthorized
	classNotFound
	// classRuntime: the worker cannot talk to the runtime at all (socket
	// missing or not permitted); retrying does not help.
	classRuntime
)

// isSocketError says whether msg is the runtime socket refusing the worker
// (dial errors), which must never read as a registry's "denied".
func isSocketError(msg string) bool {
	return strings.Contains(msg, "dial unix") && (strings.Contains(msg, "permission denied") || strings.Contains(msg, "no such file"))
}

// classify sorts an error from the runtime: only transient errors are
// retried (unavailable, deadline, 5xx, 429); not-found and unauthorized never.
func classify(err error) errClass {
	if err == nil {
		return classPermanent
	}
	st, _ := status.FromError(err)
	msg := strings.ToLower(st.Message())
	if st.Code() == codes.Unknown && !strings.Contains(msg, "rpc error") {
		msg = strings.ToLower(err.Error())
	}
	switch {
	case isSocketError(msg):
		return classRuntime
	case st.Code() == codes.Unauthenticated || st.Code() == codes.PermissionDenied ||
		strings.Contains(msg, "401 unauthorized") || strings.Contains(msg, "unauthorized") ||
		strings.Contains(msg, "403 forbidden") || strings.Contains(msg, "denied"):
		return classUnauthorized
	case st.Code() == codes.NotFound || strings.Contains(msg, ": not found") || strings.Contains(msg, "manifest unknown") ||
		strings.Contains(msg, "404 not found") || strings.Contains(msg, "name unknown"):
		return classNotFound
	case st.Code() == codes.Unavailable || st.Code() == codes.DeadlineExceeded || st.Code() == codes.ResourceExhausted ||
		st.Code() == codes.Aborted:
		return classTransient
	}
	for _, s := range []string{" 500 ", " 502 ", " 503 ", " 504 ", "429 too many requests", "internal server error", "bad gateway",
		"service unavailable", "gateway timeout", "connection reset", "connection refused", "i/o timeout", "tls handshake timeout", "unexpected eof"} {
		if strings.Contains(msg, s) {
			return classTransient
		}
	}
	return classPermanent
}

// describe turns a runtime error into a message a user can act on.
func describe(err error, ctx context.Context, timeout time.Duration) string {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Sprintf("timed out after %s (--image-timeout): %s", timeout, grpcMessage(err))
	}
	msg := grpcMessage(err)
	switch classify(err) {
	case classRuntime:
		return "cannot use the container runtime socket: " + msg + " (the worker runs as root without capabilities; check the socket's owner and mode, SELinux/AppArmor labels, and --runtime-endpoint)"
	case classUnauthorized:
		return "unauthorized: " + msg + " (pass a pull secret for this registry with --pull-secret)"
	case classNotFound:
		return "image not found: " + msg
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable {
		return "container runtime unavailable: " + msg
	}
	return msg
}

func grpcMessage(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

// repoDigest returns the digest the image is known by for ref's repository:
// the manifest (or index) digest a registry serves, which is what the plugin
// resolves. An image can carry several repo digests for one repository (an
// index and a platform manifest, or the same bytes pushed twice); the
// expected one is preferred when the runtime lists it. Falls back to the
// first repo digest.
func repoDigest(img *runtimeapi.Image, ref, expected string) string {
	repo := repository(ref)
	var first, ofRepo string
	for _, rd := range img.GetRepoDigests() {
		name, d, ok := strings.Cut(rd, "@")
		if !ok {
			continue
		}
		if first == "" {
			first = d
		}
		if repository(name) != repo {
			continue
		}
		if expected != "" && d == expected {
			return d
		}
		if ofRepo == "" {
			ofRepo = d
		}
	}
	if ofRepo != "" {
		return ofRepo
	}
	return first
}

func hasDigest(img *runtimeapi.Image, d string) bool {
	for _, rd := range img.GetRepoDigests() {
		if strings.HasSuffix(rd, "@"+d) {
			return true
		}
	}
	return false
}

// repository strips tag and digest and applies Docker Hub's defaults, so
// "nginx:1" and "docker.io/library/nginx@sha256:…" compare equal.
func repository(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i >= 0 && !strings.Contains(ref[i:], "/") {
		ref = ref[:i]
	}
	first, _, found := strings.Cut(ref, "/")
	if !found || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		if !found {
			ref = "library/" + ref
		}
		ref = "docker.io/" + ref
	}
	return ref
}
