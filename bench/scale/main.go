// Command scale (make bench-scale) measures `kubectl coral prefetch images`
// on N simulated nodes against the bound the control plane allows.
//
// It runs on the scale control plane of e2e/cluster/scale-up.sh: the local
// cluster's etcd, kube-apiserver, kube-controller-manager and scheduler, and
// kwok standing in for the kubelets of nodes labelled coral-scale/sim=true.
// For every N (ascending) it makes sure N such nodes exist and are Ready,
// then, every round, times two runs on the same nodes, one after the other
// (which goes first alternates by round), each starting from an empty
// namespace:
//
//   - bound: the Jobs Coral would create (its own --dry-run=client output),
//     created at QPS 100 / Burst 200 and watched by a minimal client with no
//     Coral logic (`scale bound`, a subprocess), until every node's worker
//     has terminated — what the control plane alone allows;
//   - coral: the real bin/kubectl-coral prefetch images, as a non-admin user.
//
// Worker pods are taken Pending → Running by kwok and completed by this
// program's completer (complete.go) with the termination message a real
// worker writes, encoded by pkg/report from the pod's own args; a share of
// the nodes report Failed, a share never reports. Requests are counted per
// user from the API server's audit log, CPU from /proc, Coral's peak RSS and
// CPU from its rusage.
//
//	go run ./bench/scale [--n "100 1000"] [--rounds 1] (see --help)
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	envFile     string
	plugin      string
	ns          []int
	rounds      int
	images      int
	failPct     float64
	silentPct   float64
	work        time.Duration
	nodeTimeout time.Duration
	runTimeout  time.Duration
	coralArgs   []string
	modes       []string
	memPerNode  float64
	memBase     float64
	boundQPS    float64
	// boundOwnerLease gives the bound's workers one Lease as owner, as Coral's.
	boundOwnerLease bool
	nodeImages      int
	progress        string // Coral's --progress: plain or bar
	// controller is the coral-controller binary (mode controller), run
	// with controllerArgs; ctlMaxNodesInFlight, when set, is the
	// ImagePrefetch's maxNodesInFlight (else the CRD's default).
	controller          string
	controllerArgs      []string
	ctlMaxNodesInFlight int
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "bound" {
		os.Exit(boundMain(os.Args[2:]))
	}
	os.Exit(benchMain(os.Args[1:]))
}

func benchMain(args []string) int {
	fs := flag.NewFlagSet("scale", flag.ExitOnError)
	var c config
	var ns, coralArgs, modes, controllerArgs string
	fs.StringVar(&c.envFile, "env", "_output/scale/env", "the scale control plane's env file (e2e/cluster/scale-up.sh)")
	fs.StringVar(&c.plugin, "plugin", "bin/kubectl-coral", "the plugin binary (make build)")
	fs.StringVar(&ns, "n", "100 1000 5000", "node counts, space or comma separated (run in ascending order)")
	fs.IntVar(&c.rounds, "rounds", 1, "rounds per N and mode; each times the bound and Coral once")
	fs.IntVar(&c.images, "images", 3, "images per run (digest references; nothing is pulled)")
	fs.Float64Var(&c.failPct, "fail-pct", 2, "percent of nodes whose worker reports the first image Failed")
	fs.Float64Var(&c.silentPct, "silent-pct", 0.5, "percent of nodes whose worker never reports: in each run the first nodes whose worker pod appears, whatever the order the tool starts them in (the bound by the same rule), so their --timeout runs out early in the run")
	fs.DurationVar(&c.work, "work", time.Second, "simulated worker time, from Running to its report")
	fs.DurationVar(&c.nodeTimeout, "node-timeout", 90*time.Second, "Coral's --timeout (only silent nodes should reach it)")
	fs.DurationVar(&c.runTimeout, "run-timeout", 0, "limit for one run, bound or Coral (default 180s + 0.6s per node)")
	fs.StringVar(&coralArgs, "coral-args", "", "extra arguments for kubectl coral prefetch images (space separated)")
	fs.StringVar(&modes, "modes", "jobs pods", "modes to run: jobs and pods (the plugin; pods only when it has --mode), controller (coral-controller and one ImagePrefetch)")
	fs.StringVar(&c.controller, "controller", "_output/bin/coral-controller", "the coral-controller binary, for --modes controller (go build ./cmd/coral-controller)")
	fs.StringVar(&controllerArgs, "controller-args", "", "extra arguments for coral-controller (space separated), e.g. --max-jobs-in-flight=200")
	fs.IntVar(&c.ctlMaxNodesInFlight, "controller-max-nodes-in-flight", 0, "the ImagePrefetch's spec.maxNodesInFlight (default: the CRD's default)")
	fs.Float64Var(&c.memBase, "mem-base-mb", 1500, "memory an N needs besides per node (MemAvailable check)")
	fs.Float64Var(&c.memPerNode, "mem-per-node-mb", 0.8, "memory an N needs per node (control plane, kwok, Coral)")
	fs.Float64Var(&c.boundQPS, "bound-qps", 100, "the bound client's QPS (burst is twice that)")
	fs.BoolVar(&c.boundOwnerLease, "bound-owner-lease", false, "make the bound's Jobs (or pods) dependents of one Lease, as Coral's are: what that ownership costs the control plane")
	fs.IntVar(&c.nodeImages, "node-images", 50, "images each simulated node lists in its status, as a kubelet does (up to 50): what a node list costs to decode and keep")
	fs.StringVar(&c.progress, "progress", "plain", "Coral's --progress: plain (a line per node; gap_s is the longest time without a line) or bar (what a terminal shows: gap_s is the longest time the bar was not redrawn)")
	_ = fs.Parse(args)
	if c.progress != "plain" && c.progress != "bar" {
		fmt.Fprintf(os.Stderr, "scale: --progress must be plain or bar, got %q\n", c.progress)
		return 2
	}
	for _, f := range strings.FieldsFunc(ns, func(r rune) bool { return r == ' ' || r == ',' }) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "scale: --n: %q is not a node count\n", f)
			return 2
		}
		c.ns = append(c.ns, n)
	}
	slices.Sort(c.ns)
	c.ns = slices.Compact(c.ns)
	c.coralArgs = strings.Fields(coralArgs)
	c.modes = strings.Fields(modes)
	c.controllerArgs = strings.Fields(controllerArgs)
	for _, m := range c.modes {
		if m != "jobs" && m != "pods" && m != "controller" {
			fmt.Fprintf(os.Stderr, "scale: --modes: %q is not jobs, pods or controller\n", m)
			return 2
		}
	}
	if len(c.ns) == 0 || c.rounds < 1 || c.images < 1 {
		fmt.Fprintln(os.Stderr, "scale: need at least one N, one round and one image")
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e, err := readEnv(c.envFile)
	if err != nil {
		fmt.Fprintf(os.Stderr, "scale: %v (start the control plane with e2e/cluster/scale-up.sh)\n", err)
		return 2
	}
	if c.plugin, err = filepath.Abs(c.plugin); err != nil {
		fmt.Fprintf(os.Stderr, "scale: %v\n", err)
		return 2
	}
	if wants(c.modes, "controller") {
		if c.controller, err = filepath.Abs(c.controller); err != nil {
			fmt.Fprintf(os.Stderr, "scale: %v\n", err)
			return 2
		}
		if _, err := os.Stat(c.controller); err != nil {
			fmt.Fprintf(os.Stderr, "scale: --controller: %v (go build -o %s ./cmd/coral-controller)\n", err, c.controller)
			return 2
		}
	}
	b, err := newBench(ctx, c, e)
	if err != nil {
		fmt.Fprintf(os.Stderr, "scale: %v\n", err)
		return 1
	}
	return b.run(ctx)
}

// env is what scale-up.sh wrote to its env file.
type env struct {
	dir, adminKubeconfig, coralKubeconfig, boundKubeconfig, simKubeconfig string
	auditLog, pidsDir, namespace, nodeLabel, kubectl                      string
	controllerKubeconfig                                                  string // empty from an older scale-up.sh
}

func readEnv(path string) (*env, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	v := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export ")
		k, val, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		v[k] = strings.Trim(val, `"`)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	e := &env{
		dir: v["SCALE_DIR"], adminKubeconfig: v["KUBECONFIG"], coralKubeconfig: v["SCALE_CORAL_KUBECONFIG"],
		boundKubeconfig: v["SCALE_BOUND_KUBECONFIG"], simKubeconfig: v["SCALE_SIM_KUBECONFIG"],
		auditLog: v["SCALE_AUDIT_LOG"], pidsDir: v["SCALE_PIDS_DIR"], namespace: v["SCALE_NAMESPACE"],
		nodeLabel: v["SCALE_NODE_LABEL"], kubectl: v["SCALE_KUBECTL"], controllerKubeconfig: v["SCALE_CONTROLLER_KUBECONFIG"],
	}
	for k, s := range map[string]string{"KUBECONFIG": e.adminKubeconfig, "SCALE_CORAL_KUBECONFIG": e.coralKubeconfig,
		"SCALE_BOUND_KUBECONFIG": e.boundKubeconfig, "SCALE_SIM_KUBECONFIG": e.simKubeconfig, "SCALE_AUDIT_LOG": e.auditLog,
		"SCALE_PIDS_DIR": e.pidsDir, "SCALE_NAMESPACE": e.namespace, "SCALE_NODE_LABEL": e.nodeLabel} {
		if s == "" {
			return nil, fmt.Errorf("%s: no %s", path, k)
		}
	}
	return e, nil
}
