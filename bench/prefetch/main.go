// Command prefetch (make bench-prefetch) measures `kubectl coral prefetch
// images` against its floor on the local cluster (e2e/cluster).
//
// It pushes an image set of about 200 MB (random layers) to the cluster's
// registry and puts it onto every node, two ways, interleaved over --rounds
// rounds (which goes first alternates), with the images removed from every
// node before each measurement:
//
//	(a) floor: CRI PullImage straight on every node's runtime socket, all nodes
//	    at once, --max-pulls-per-node images at a time per node (what the
//	    worker does, minus Kubernetes);
//	(b) coral: bin/kubectl-coral prefetch images … -o json --progress=plain.
//
// Every measurement is checked: before it, no node lists the images and their
// layers are gone from each node's content store; after it, every node holds
// every image with the pushed digest, and the plugin reports Pulled (not
// Present) for every node and image. The plugin's time is then broken down
// from its own stderr lines, a watch on its Jobs and pods, each node's CRI
// (sandbox and container timestamps in ns) and the worker's log.
//
//	go run ./bench/prefetch [--rounds 5] [--images 5 --layers 4 --layer-size 10000000]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coral-dev/coral/pkg/report"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

type config struct {
	envFile   string
	plugin    string
	namespace string
	rounds    int
	images    int
	layers    int
	layerSize int64
	maxPulls  int
	seed      uint64
	timeout   time.Duration
	verbose   bool
	// pluginArgs are more flags for the plugin (space-separated).
	pluginArgs string
	// nodes, when set, limits both ways to these nodes (comma-separated).
	nodes string
}

func main() {
	var c config
	flag.StringVar(&c.envFile, "env", "_output/cluster/env", "the local cluster's env file (written by make cluster-up)")
	flag.StringVar(&c.plugin, "plugin", "bin/kubectl-coral", "the plugin binary (make build)")
	flag.StringVar(&c.namespace, "n", "default", "namespace for the plugin's Jobs")
	flag.IntVar(&c.rounds, "rounds", 5, "rounds; each times the floor and the plugin once (at least 3)")
	flag.IntVar(&c.images, "images", 5, "images in the set")
	flag.IntVar(&c.layers, "layers", 4, "random layers per image")
	flag.Int64Var(&c.layerSize, "layer-size", 10_000_000, "bytes per layer (random: gzip does not shrink them)")
	flag.IntVar(&c.maxPulls, "max-pulls-per-node", 3, "pulls at once per node, both ways (the plugin's default is 3)")
	flag.Uint64Var(&c.seed, "seed", 1, "content seed (same seed, same digests: the registry re-uses its blobs); 0 = random")
	flag.DurationVar(&c.timeout, "timeout", 5*time.Minute, "limit for one measurement")
	flag.StringVar(&c.pluginArgs, "plugin-args", "", "more flags for the plugin, space-separated (e.g. --mode=pods)")
	flag.StringVar(&c.nodes, "nodes", "", "only these nodes, comma-separated (both ways; the plugin gets --nodes): one node shows a node's own overhead, without the local cluster's nodes sharing one disk and two cores")
	flag.BoolVar(&c.verbose, "v", false, "print the plugin's stderr (with offsets) for every run")
	flag.Parse()
	if c.rounds < 3 {
		fmt.Fprintln(os.Stderr, "bench-prefetch: --rounds must be at least 3")
		os.Exit(2)
	}
	if c.images < 1 || c.layers < 1 || c.layerSize < 1 || c.maxPulls < 1 {
		fmt.Fprintln(os.Stderr, "bench-prefetch: --images, --layers, --layer-size and --max-pulls-per-node must be positive")
		os.Exit(2)
	}
	if c.seed == 0 {
		c.seed = uint64(time.Now().UnixNano())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, c)
	stop()
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "bench-prefetch: interrupted")
		os.Exit(130)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-prefetch:", err)
		os.Exit(1)
	}
}

// bench is the state of one bench run.
type bench struct {
	c       config
	env     map[string]string
	nodes   []*node
	byName  map[string]*node
	client  kubernetes.Interface
	rec     *recorder
	images  []benchImage
	refs    []string
	totalMB float64
	floors  []*floorRun
	plugins []*pluginRun
}

func run(ctx context.Context, c config) error {
	env, err := readEnv(c.envFile)
	if err != nil {
		return fmt.Errorf("%v (start the cluster with make cluster-up)", err)
	}
	for _, k := range []string{"KUBECONFIG", "CORAL_REGISTRY", "CORAL_NODES", "CORAL_WORKER_IMAGE"} {
		if env[k] == "" {
			return fmt.Errorf("%s does not set %s", c.envFile, k)
		}
	}
	if _, err := os.Stat(c.plugin); err != nil {
		return fmt.Errorf("plugin %s: %v (run make build)", c.plugin, err)
	}
	b := &bench{c: c, env: env, byName: map[string]*node{}}
	names := strings.Fields(env["CORAL_NODES"])
	if c.nodes != "" {
		want := strings.Split(c.nodes, ",")
		for _, n := range want {
			if !slices.Contains(names, n) {
				return fmt.Errorf("--nodes: %s is not a node of the local cluster (%s)", n, strings.Join(names, ", "))
			}
		}
		names = want
		b.c.pluginArgs += " --nodes=" + c.nodes
	}
	for _, name := range names {
		key := "CORAL_CRI_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
		n, err := dialNode(name, env[key])
		if err != nil {
			return fmt.Errorf("%v (is the local cluster up? make cluster-up)", err)
		}
		defer n.conn.Close()
		if dir := env["CORAL_CLUSTER_DIR"]; dir != "" {
			n.KubeletLog.Path = filepath.Join(dir, "logs", "kubelet-"+name+".log")
			n.ContainerdLog.Path = filepath.Join(dir, "logs", "containerd-"+name+".log")
		}
		b.nodes = append(b.nodes, n)
		b.byName[name] = n
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", env["KUBECONFIG"])
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 50, 100
	if b.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return err
	}

	b.printHeader(ctx)
	if b.rec, err = newRecorder(ctx, b.client, c.namespace, b.byName); err != nil {
		return err
	}

	t := time.Now()
	repo := "coral-bench/prefetch"
	if b.images, err = makeImages(ctx, env["CORAL_REGISTRY"], repo, c.images, c.layers, c.layerSize, c.seed); err != nil {
		return err
	}
	var total int64
	for _, im := range b.images {
		b.refs = append(b.refs, im.Ref)
		total += im.Bytes
	}
	b.totalMB = float64(total) / 1e6
	fmt.Printf("image set: %d images × %d layers × %.1f MB = %.0f MB compressed, pushed to %s/%s/ in %.1f s\n",
		c.images, c.layers, float64(c.layerSize)/1e6, b.totalMB, env["CORAL_REGISTRY"], repo, time.Since(t).Seconds())

	// Whatever happens from here on, take the images off the nodes again.
	defer b.cleanup()

	if err := b.warmWorker(ctx); err != nil {
		return err
	}
	// The first pull of freshly pushed blobs is slower (registry, page
	// cache) and would penalise whichever way goes first in round 1.
	fr, err := b.measureFloor(ctx)
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	fmt.Printf("warm-up (untimed): the set pulled onto every node in %.2f s\n", fr.Total.Seconds())
	fmt.Println()
	fmt.Printf("%-5s  %-5s  %9s  %9s  %6s  %9s  %s\n", "round", "first", "floor (a)", "coral (b)", "b/a", "b-a", "checks")
	for r := 1; r <= c.rounds; r++ {
		floorFirst := r%2 == 1
		var fr *floorRun
		var pr *pluginRun
		for step := range 2 {
			if (step == 0) == floorFirst {
				if fr, err = b.measureFloor(ctx); err != nil {
					return fmt.Errorf("round %d, floor: %w", r, err)
				}
			} else {
				if pr, err = b.measurePlugin(ctx); err != nil {
					return fmt.Errorf("round %d, coral: %w", r, err)
				}
			}
		}
		b.floors, b.plugins = append(b.floors, fr), append(b.plugins, pr)
		first := "coral"
		if floorFirst {
			first = "floor"
		}
		a, bb := fr.Total.Seconds(), pr.Exit.Sub(pr.Start).Seconds()
		fmt.Printf("%-5d  %-5s  %7.2f s  %7.2f s  %6.2f  %+7.2f s  %d/%d Pulled both ways, none present before\n",
			r, first, a, bb, bb/a, bb-a, pr.Report.Summary.Pulled, pr.Report.Summary.Total)
		if c.verbose {
			fmt.Print(indent(pr.Stderr, "        "))
		}
	}
	b.printSummary()
	return nil
}

func (b *bench) printHeader(ctx context.Context) {
	fmt.Printf("bench-prefetch: kubectl coral prefetch images vs direct CRI pulls, %d rounds, %d pulls at once per node\n", b.c.rounds, b.c.maxPulls)
	fmt.Printf("cluster: %s (registry %s)\n", b.c.envFile, b.env["CORAL_REGISTRY"])
	for _, n := range b.nodes {
		store := "content store " + n.BlobDir
		if n.BlobDir == "" {
			store = "content store unknown: layer removal is checked through CRI only"
		}
		fmt.Printf("  %s: %s at %s; %s\n", n.Name, n.version(ctx), n.Endpoint, store)
	}
	fmt.Printf("plugin: %s, worker image %s, namespace %s\n", b.c.plugin, b.env["CORAL_WORKER_IMAGE"], b.c.namespace)
	fmt.Printf("machine: %d CPUs, load average %s (shared: expect noise)\n", runtime.NumCPU(), loadavg())
}

// warmWorker makes sure every node holds the worker image before the rounds,
// so that no round pays for pulling it (a steady-state user has it).
func (b *bench) warmWorker(ctx context.Context) error {
	var pulled []string
	for _, n := range b.nodes {
		did, err := n.ensure(ctx, b.env["CORAL_WORKER_IMAGE"])
		if err != nil {
			return fmt.Errorf("pulling the worker image: %w", err)
		}
		if did {
			pulled = append(pulled, n.Name)
		}
	}
	if len(pulled) > 0 {
		fmt.Printf("worker image pulled onto %s beforehand (untimed)\n", strings.Join(pulled, ", "))
	} else {
		fmt.Println("worker image already on every node (as in steady state; never timed)")
	}
	return nil
}

// prepare waits for the previous plugin run's pods to be gone and removes
// the image set from every node, checking that nothing of it is left.
func (b *bench) prepare(ctx context.Context) error {
	if err := b.rec.waitNoPods(ctx, time.Minute); err != nil {
		return err
	}
	return b.removeAll(ctx)
}

func (b *bench) removeAll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, n := range b.nodes {
		wg.Go(func() {
			for _, im := range b.images {
				if err := n.remove(ctx, im.Ref, im.Layers); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (b *bench) cleanup() {
	if len(b.images) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_ = b.rec.waitNoPods(ctx, 30*time.Second)
	if err := b.removeAll(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench-prefetch: cleanup:", err)
		return
	}
	fmt.Printf("\ncleanup: the image set was removed from %d nodes (it stays in the registry, %d MB, re-used by the next run)\n", len(b.nodes), int(b.totalMB))
}

// floorRun is one floor measurement.
type floorRun struct {
	Total   time.Duration
	PerNode map[string]time.Duration
	Items   []pullResult
}

func (b *bench) measureFloor(ctx context.Context) (*floorRun, error) {
	if err := b.prepare(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.c.timeout)
	defer cancel()
	fr := &floorRun{PerNode: map[string]time.Duration{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for _, n := range b.nodes {
		wg.Go(func() {
			res, end := n.pullAll(ctx, b.refs, b.c.maxPulls)
			mu.Lock()
			defer mu.Unlock()
			fr.PerNode[n.Name] = end.Sub(start)
			fr.Items = append(fr.Items, res...)
		})
	}
	wg.Wait()
	fr.Total = time.Since(start)
	for _, it := range fr.Items {
		if it.Err != nil {
			return nil, it.Err
		}
	}
	return fr, b.verifyNodes(ctx)
}

// verifyNodes checks that every node holds every image with its digest.
func (b *bench) verifyNodes(ctx context.Context) error {
	for _, n := range b.nodes {
		for _, im := range b.images {
			img, err := n.status(ctx, im.Ref)
			if err != nil {
				return err
			}
			if img == nil || !slices.ContainsFunc(img.GetRepoDigests(), func(d string) bool { return strings.HasSuffix(d, "@"+im.Digest) }) {
				return fmt.Errorf("%s does not hold %s@%s after the run", n.Name, im.Ref, im.Digest)
			}
		}
	}
	return nil
}

func (b *bench) measurePlugin(ctx context.Context) (*pluginRun, error) {
	if err := b.prepare(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.c.timeout)
	defer cancel()
	pr, err := runPlugin(ctx, b.c.plugin, b.env["KUBECONFIG"], b.env["CORAL_WORKER_IMAGE"], b.c.namespace, b.c.maxPulls, strings.Fields(b.c.pluginArgs), b.refs, b.rec)
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	digest := map[string]string{}
	for _, im := range b.images {
		digest[im.Ref] = im.Digest
	}
	var bad []string
	for _, r := range pr.Report.Results {
		if r.Status != report.StatusPulled || r.Digest != digest[r.Image] {
			bad = append(bad, fmt.Sprintf("%s %s: %s %s %s", r.Node, r.Image, r.Status, r.Digest, r.Message))
		}
	}
	if want := len(b.nodes) * len(b.images); pr.ExitCode != 0 || pr.Report.Summary.Pulled != want || len(bad) > 0 {
		return nil, fmt.Errorf("the plugin did not pull everything (exit %d, %d of %d Pulled):\n  %s\nstderr:\n%s",
			pr.ExitCode, pr.Report.Summary.Pulled, want, strings.Join(bad, "\n  "), pr.Stderr)
	}
	return pr, b.verifyNodes(ctx)
}

func readEnv(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			continue
		}
		if u, err := strconv.Unquote(v); err == nil {
			v = u
		} else {
			v = strings.Trim(v, `'`)
		}
		env[k] = v
	}
	if env["KUBECONFIG"] != "" && !filepath.IsAbs(env["KUBECONFIG"]) {
		env["KUBECONFIG"] = filepath.Join(filepath.Dir(path), env["KUBECONFIG"])
	}
	return env, sc.Err()
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func indent(s, pre string) string {
	var out strings.Builder
	for line := range strings.SplitSeq(strings.TrimRight(s, "\n"), "\n") {
		out.WriteString(pre + line + "\n")
	}
	return out.String()
}
