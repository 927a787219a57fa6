// Package mirror copies container images from registry to registry: whole
// multi-platform indexes with their digests kept (or a platform subset),
// incrementally (an image already at the destination costs one HEAD, a blob
// already there is never sent again, blobs are mounted across repositories
// where the registry allows), concurrently, retrying what registries ask to
// be retried. It is built on go-containerregistry and prints nothing.
//
// A run has two steps. Plan resolves every source and looks at the
// destination without writing anything; any problem there (an invalid or
// missing image, an unreachable registry, rejected credentials, two sources
// mapping to one destination) is returned before a single byte is written.
// Copy then carries the plan out and returns a Report.
package mirror

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"
)

// Mirror copies images. Create it with New; it may be used for one run.
type Mirror struct {
	o         *options
	sent      atomic.Int64
	rt        http.RoundTripper
	puller    *remote.Puller // sources, with source credentials
	dstPuller *remote.Puller // destination reads (HEAD), with destination credentials
	pusher    *remote.Pusher
	homes     blobHomes
}

// New returns a Mirror configured by opts.
func New(opts ...Option) (*Mirror, error) {
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(o); err != nil {
			return nil, err
		}
	}
	m := &Mirror{o: o}
	m.rt = newTransport(o, &m.sent)
	common := []remote.Option{
		remote.WithTransport(m.rt),
		remote.WithJobs(o.jobs),
		remote.WithUserAgent(o.userAgent),
		// Status codes are retried (honouring Retry-After) by our transport;
		// go-containerregistry still retries whole blob uploads.
		remote.WithRetryStatusCodes(),
	}
	var err error
	if m.puller, err = remote.NewPuller(append(common, remote.WithAuthFromKeychain(o.srcKeychain))...); err != nil {
		return nil, fmt.Errorf("creating source client: %w", err)
	}
	if m.dstPuller, err = remote.NewPuller(append(common, remote.WithAuthFromKeychain(o.dstKeychain))...); err != nil {
		return nil, fmt.Errorf("creating destination client: %w", err)
	}
	if m.pusher, err = remote.NewPusher(append(common, remote.WithAuthFromKeychain(o.dstKeychain))...); err != nil {
		return nil, fmt.Errorf("creating destination client: %w", err)
	}
	return m, nil
}

// Plan is what Copy will do: one Item per image.
type Plan struct {
	Destination Destination
	Items       []*Item
	// Platforms is the subset asked for, if any.
	Platforms []v1.Platform
}

// Item is one image to mirror.
type Item struct {
	// Original is the source as the user spelled it (or as expanded).
	Original    string
	Source      name.Reference
	Destination name.Reference
	// SourceDigest is the digest of the source manifest.
	SourceDigest v1.Hash
	// Digest is the digest the destination will hold (differs from
	// SourceDigest only for a platform subset).
	Digest v1.Hash
	// Platforms copied, when a subset was asked for.
	Platforms []string
	// Present means the destination already holds Digest.
	Present bool
	// Bytes to send; filled by Estimate (dry runs).
	Bytes int64
	// Note explains anything surprising (a changed digest, missing platforms).
	Note string

	taggable remote.Taggable
}

// PlanError lists every problem found while planning. Nothing was written.
type PlanError struct {
	Problems []error
}

func (e *PlanError) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0].Error()
	}
	s := fmt.Sprintf("%d problems, nothing was copied:", len(e.Problems))
	const show = 20
	for i, p := range e.Problems {
		if i == show {
			s += fmt.Sprintf("\n  … and %d more", len(e.Problems)-show)
			break
		}
		s += "\n  " + p.Error()
	}
	return s
}

// Unwrap returns the problems, so errors.Is finds e.g. ErrCollision.
func (e *PlanError) Unwrap() []error { return e.Problems }

func planError(problems []error) error {
	if len(problems) == 0 {
		return nil
	}
	return &PlanError{Problems: problems}
}

// Plan resolves sources (image references, or repositories when a tag
// filter is set) and checks the destination, writing nothing.
func (m *Mirror) Plan(ctx context.Context, sources []string, to Destination) (*Plan, error) {
	if len(sources) == 0 {
		return nil, errors.New("no images to mirror")
	}
	refs, originals, err := m.expand(ctx, sources)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Destination: to, Platforms: m.o.platforms}
	var problems []error
	seen := map[string]bool{}
	for i, ref := range refs {
		if seen[ref.Name()] {
			continue
		}
		seen[ref.Name()] = true
		dst, err := to.Map(ref, originals[i])
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", originals[i], err))
			continue
		}
		plan.Items = append(plan.Items, &Item{Original: originals[i], Source: ref, Destination: dst})
	}
	if err := collisions(plan.Items); err != nil {
		problems = append(problems, err)
	}
	if len(problems) > 0 {
		return nil, planError(problems)
	}

	// Not errgroup.WithContext: the descriptors keep the context they were
	// fetched with, for the blob reads of Copy.
	errs := make([]error, len(plan.Items))
	var g errgroup.Group
	g.SetLimit(min(4*m.o.jobs, 32))
	for i, it := range plan.Items {
		g.Go(func() error {
			errs[i] = m.resolve(ctx, it)
			return nil
		})
	}
	_ = g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return plan, planError(groupByRegistry(plan.Items, errs))
}

// expand parses sources, listing and filtering tags of repositories when a
// tag filter is set.
func (m *Mirror) expand(ctx context.Context, sources []string) ([]name.Reference, []string, error) {
	var (
		refs      []name.Reference
		originals []string
		problems  []error
	)
	if !m.o.tags.Enabled() {
		for _, s := range sources {
			ref, err := parseSource(s, m.o.insecureHosts)
			if err != nil {
				problems = append(problems, err)
				continue
			}
			refs = append(refs, ref)
			originals = append(originals, s)
		}
		return refs, originals, planError(problems)
	}
	repos := make([]name.Repository, 0, len(sources))
	for _, s := range sources {
		repo, err := parseRepository(s, m.o.insecureHosts)
		if err != nil {
			problems = append(problems, err)
			continue
		}
		repos = append(repos, repo)
	}
	if len(problems) > 0 {
		return nil, nil, planError(problems)
	}
	tags := make([][]string, len(repos))
	errs := make([]error, len(repos))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(m.o.jobs)
	for i, repo := range repos {
		g.Go(func() error {
			all, err := m.puller.List(gctx, repo)
			if err != nil {
				errs[i] = fmt.Errorf("listing tags of %s: %w", repo, explain(err, "source"))
				return nil
			}
			tags[i] = m.o.tags.Select(all)
			if len(tags[i]) == 0 {
				errs[i] = fmt.Errorf("no tag of %s matches %s (it has %d tags)", repo, m.o.tags, len(all))
			}
			return nil
		})
	}
	_ = g.Wait()
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	for i, repo := range repos {
		if errs[i] != nil {
			problems = append(problems, errs[i])
			continue
		}
		for _, t := range tags[i] {
			refs = append(refs, repo.Tag(t))
			originals = append(originals, sources[i]+":"+t)
		}
	}
	return refs, originals, planError(problems)
}

// resolve fetches the source manifest, picks what to write and looks for it
// at the destination.
func (m *Mirror) resolve(ctx context.Context, it *Item) error {
	var (
		dstDigest v1.Hash // what the destination holds, once looked up
		looked    bool
	)
	// A pinned source (by digest) that the destination already holds needs
	// nothing from the source registry: re-runs work while it is down.
	if d, ok := it.Source.(name.Digest); ok && len(m.o.platforms) == 0 {
		if h, err := v1.NewHash(d.DigestStr()); err == nil {
			got, err := m.destinationDigest(ctx, it)
			if err != nil {
				return err
			}
			if got == h {
				it.SourceDigest, it.Digest, it.Present = h, h, true
				return nil
			}
			dstDigest, looked = got, true
		}
	}
	desc, err := m.puller.Get(ctx, it.Source)
	if err != nil {
		return &itemError{item: it, side: "source", reg: it.Source.Context().Registry, err: explain(err, "source")}
	}
	it.SourceDigest = desc.Digest
	it.Digest = desc.Digest
	it.taggable = desc
	if len(m.o.platforms) > 0 {
		if err := m.selectPlatforms(it, desc); err != nil {
			return &itemError{item: it, side: "source", err: err}
		}
		// A subset has its own digest: a by-digest destination must name it.
		if d, ok := it.Destination.(name.Digest); ok && it.Digest != it.SourceDigest {
			it.Destination = d.Context().Digest(it.Digest.String())
		}
	}
	if !looked {
		if dstDigest, err = m.destinationDigest(ctx, it); err != nil {
			return err
		}
	}
	it.Present = dstDigest == it.Digest
	return nil
}

// destinationDigest returns the digest the item's destination holds, or the
// zero hash when it holds nothing.
func (m *Mirror) destinationDigest(ctx context.Context, it *Item) (v1.Hash, error) {
	head, err := m.dstPuller.Head(ctx, it.Destination)
	if err != nil {
		// Not there yet. Like go-containerregistry, take 403 for "not there":
		// some registries answer a HEAD for a missing manifest that way.
		var terr *transport.Error
		if errors.As(err, &terr) && (terr.StatusCode == http.StatusNotFound || terr.StatusCode == http.StatusForbidden) {
			return v1.Hash{}, nil
		}
		return v1.Hash{}, &itemError{item: it, side: "destination", reg: it.Destination.Context().Registry, err: explain(err, "destination")}
	}
	return head.Digest, nil
}

// Copy carries out the plan: images not yet present are written, up to
// WithJobs at a time. The report lists every item. The error is non-nil only
// when ctx ended (the report then says which images were not copied).
func (m *Mirror) Copy(ctx context.Context, plan *Plan) (*Report, error) {
	start := time.Now()
	results := make([]Result, len(plan.Items))
	var todo []int
	for i, it := range plan.Items {
		results[i] = it.result()
		if it.Present {
			results[i].Status = StatusPresent
			continue
		}
		todo = append(todo, i)
	}

	copyCtx, stop := context.WithCancel(ctx)
	defer stop()
	prog := newProgressLoop(m, len(todo), start)
	defer prog.stop()

	// copyCtx ends on interrupt, or after a failure without keep-going.
	var wg sync.WaitGroup
	sem := make(chan struct{}, m.o.jobs)
	for _, i := range todo {
		select {
		case sem <- struct{}{}:
		case <-copyCtx.Done():
		}
		if copyCtx.Err() != nil {
			results[i].Status = StatusFailed
			results[i].Message = notStarted(ctx)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res := m.copyOne(copyCtx, ctx, plan.Items[i], results[i])
			if res.Status == StatusFailed && !m.o.keepGoing {
				stop()
			}
			results[i] = res
			prog.finished(res)
		}()
	}
	wg.Wait()
	prog.stop()
	return newReport(results, false, time.Since(start)), ctx.Err()
}

func notStarted(parent context.Context) string {
	if parent.Err() != nil {
		return "not copied: interrupted"
	}
	return "not copied: stopped after an earlier image failed (keep-going is off)"
}

// copyOne pushes one item under ctx, a child of parent that also ends when
// another image failed and keep-going is off.
func (m *Mirror) copyOne(ctx, parent context.Context, it *Item, res Result) Result {
	var sent atomic.Int64
	start := time.Now()
	mounts := &mountPlan{homes: &m.homes, dst: it.Destination.Context()}
	err := m.pusher.Push(withCounter(ctx, &sent), it.Destination, mounts.wrap(it.taggable))
	res.Bytes = sent.Load()
	res.Seconds = roundSeconds(time.Since(start))
	if err != nil {
		res.Status = StatusFailed
		switch {
		case parent.Err() != nil:
			res.Message = "interrupted: " + err.Error()
		case ctx.Err() != nil:
			res.Message = "stopped after an earlier image failed (keep-going is off): " + err.Error()
		default:
			res.Message = explain(err, "destination").Error()
		}
		return res
	}
	mounts.done()
	res.Status = StatusCopied
	return res
}

func (it *Item) result() Result {
	r := Result{
		Source:      it.Original,
		Destination: it.Destination.String(),
		Platforms:   it.Platforms,
		Message:     it.Note,
	}
	if it.Digest != (v1.Hash{}) {
		r.Digest = it.Digest.String()
	}
	if it.SourceDigest != it.Digest {
		r.SourceDigest = it.SourceDigest.String()
	}
	return r
}

// DryRunReport is the plan as a report: Present or Planned per image, with
// the bytes Estimate found.
func (p *Plan) DryRunReport() *Report {
	results := make([]Result, len(p.Items))
	for i, it := range p.Items {
		results[i] = it.result()
		results[i].Bytes = it.Bytes
		results[i].Status = StatusPlanned
		if it.Present {
			results[i].Status = StatusPresent
		}
	}
	return newReport(results, true, 0)
}

// progressLoop reports progress from one goroutine.
type progressLoop struct {
	m        *Mirror
	fn       func(Progress)
	mu       sync.Mutex
	p        Progress
	start    time.Time
	done     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
}

func newProgressLoop(m *Mirror, images int, start time.Time) *progressLoop {
	l := &progressLoop{m: m, fn: m.o.progress, start: start, done: make(chan struct{})}
	l.p.Images = images
	if l.fn == nil {
		return l
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(m.o.progressEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				l.emit()
			case <-l.done:
				l.emit()
				return
			}
		}
	}()
	return l
}

func (l *progressLoop) finished(r Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.p.Done++
	if r.Status == StatusFailed {
		l.p.Failed++
	}
	l.p.Finished = append(l.p.Finished, r)
}

func (l *progressLoop) emit() {
	l.mu.Lock()
	p := l.p
	l.p.Finished = nil
	l.mu.Unlock()
	p.Bytes = l.m.sent.Load()
	p.Elapsed = time.Since(l.start)
	l.fn(p)
}

func (l *progressLoop) stop() {
	l.stopOnce.Do(func() {
		close(l.done)
		l.wg.Wait()
	})
}
