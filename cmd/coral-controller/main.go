// Command coral-controller is Coral's controller mode: it keeps
// ImagePrefetch and ArtifactPrefetch objects true on the cluster's nodes.
// It is installed by `kubectl coral install`; its image is built like the
// worker's (static, FROM scratch): make controllerimage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/coral-dev/coral/pkg/controller"
	"github.com/coral-dev/coral/pkg/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

func main() {
	ctx := ctrl.SetupSignalHandler()
	if err := Run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "coral-controller:", err)
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// Run is the whole program: flags, manager, reconcilers, until ctx ends.
func Run(ctx context.Context, args []string, stderr io.Writer) error {
	o := controller.NewOptions()
	fs := flag.NewFlagSet("coral-controller", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.WorkerImage, "worker-image", version.DefaultWorkerImage(), "image of the worker that runs on each node ($"+version.EnvWorkerImage+" overrides the default)")
	var pullSecrets stringList
	fs.Var(&pullSecrets, "worker-image-pull-secret", "image pull secret for the worker image, in each object's namespace (repeatable)")
	fs.IntVar(&o.MaxJobsInFlight, "max-jobs-in-flight", o.MaxJobsInFlight, "worker pods running at once across every object (Jobs waiting for the Job controller to make their pods may exceed it: see --jobs-ahead)")
	fs.IntVar(&o.JobsAhead, "jobs-ahead", o.JobsAhead, "Jobs that may wait for a backlogged Job controller beyond the caps, while the pods it makes stay within them at its pace (0: no bound beyond that rule, negative: none, the caps count Jobs)")
	fs.DurationVar(&o.RetryBase, "retry-base", o.RetryBase, "first wait before a failed node is retried (doubles per failure)")
	fs.DurationVar(&o.RetryMax, "retry-max", o.RetryMax, "longest wait before a failed node is retried")
	leaderElect := fs.Bool("leader-elect", true, "elect a leader, so several replicas are safe")
	leaderNS := fs.String("leader-election-namespace", "", "namespace of the leader-election Lease (default: the pod's own)")
	metricsAddr := fs.String("metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint (0 disables it)")
	probeAddr := fs.String("health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	pprofAddr := fs.String("pprof-bind-address", "", "address of Go's /debug/pprof profiles, e.g. 127.0.0.1:6060 (default: off)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	klog.InitFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintf(stderr, "coral-controller %s (%s, %s)\n", version.Version, version.Commit, version.GoVersion())
		return nil
	}
	if o.MaxJobsInFlight < 1 {
		return fmt.Errorf("--max-jobs-in-flight must be at least 1, got %d", o.MaxJobsInFlight)
	}
	o.WorkerPullSecrets = pullSecrets
	ctrl.SetLogger(klog.NewKlogr())
	log := ctrl.Log.WithName("coral-controller")

	cfg, err := ctrl.GetConfig()
	if err != nil {
		return err
	}
	cfg.UserAgent = "coral-controller/" + version.Version
	// A node costs the controller about 3 writes (its Job, its record, the
	// Job's delete) and the Job controller makes ~8 pods/s at its own
	// defaults (bench-scale, docs/scale.md): 50/s keeps up with that twice
	// over, and the burst lets a reconcile's createsPerSync go at once.
	cfg.QPS, cfg.Burst = 50, 100
	leaseDuration, renew := 15*time.Second, 10*time.Second
	core, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  controller.Scheme(),
		Cache:                   controller.CacheOptions(core.CoreV1().RESTClient()),
		Metrics:                 metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress:  *probeAddr,
		PprofBindAddress:        *pprofAddr,
		LeaderElection:          *leaderElect,
		LeaderElectionID:        "coral-controller.coral.dev",
		LeaderElectionNamespace: *leaderNS,
		LeaseDuration:           &leaseDuration,
		RenewDeadline:           &renew,
		// The new leader may start at once when the old one stops cleanly.
		LeaderElectionReleaseOnCancel: true,
	})
	if err != nil {
		return err
	}
	if err := controller.Setup(mgr, o); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	log.Info("starting", "version", version.Version, "workerImage", o.WorkerImage, "maxJobsInFlight", o.MaxJobsInFlight, "jobsAhead", o.JobsAhead)
	return mgr.Start(ctx)
}

type stringList []string

func (s *stringList) String() string     { return fmt.Sprint([]string(*s)) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }
