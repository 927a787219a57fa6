// Package version holds `kubectl coral version`.
package version

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	coralversion "github.com/coral-dev/coral/pkg/version"
	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"
)

// Info is what `kubectl coral version -o json|yaml` prints. The field names
// are an interface for scripts: add fields, never rename them.
type Info struct {
	Version     string `json:"version"`
	Commit      string `json:"commit"`
	GoVersion   string `json:"goVersion"`
	Platform    string `json:"platform"`
	WorkerImage string `json:"workerImage"`
}

// Current returns the Info of this binary.
func Current() Info {
	return Info{
		Version:     coralversion.Version,
		Commit:      coralversion.Commit,
		GoVersion:   coralversion.GoVersion(),
		Platform:    runtime.GOOS + "/" + runtime.GOARCH,
		WorkerImage: coralversion.DefaultWorkerImage(),
	}
}

// outputFormats are the values -o accepts; "" is the default text view.
var outputFormats = []string{"json", "yaml"}

// Options holds everything `kubectl coral version` needs.
type Options struct {
	genericiooptions.IOStreams

	Output string

	// Set by Complete.
	info Info
	// workerImageFromEnv says the worker image came from $CORAL_WORKER_IMAGE.
	workerImageFromEnv bool
	// current returns the Info to print; replaced in tests.
	current func() Info
}

// NewOptions returns the defaults.
func NewOptions(streams genericiooptions.IOStreams) *Options {
	return &Options{IOStreams: streams, current: Current}
}

// NewCmdVersion builds `kubectl coral version`.
func NewCmdVersion(streams genericiooptions.IOStreams) *cobra.Command {
	return newCmd(NewOptions(streams))
}

func newCmd(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version [-o json|yaml]",
		Short: "Print the plugin's version and the worker image it runs",
		Long: `Print the version of the Coral plugin, the commit and Go release it was built
from, and the worker image it runs on nodes by default.

The plugin and the worker image are released together and speak one wire
version, so the default worker image carries the plugin's version as its tag.
$` + coralversion.EnvWorkerImage + ` (or --worker-image on a command) points Coral at
another image, e.g. a copy in an air-gapped registry.

The version command does not contact the cluster.`,
		Example: `  # The version, commit, Go release and default worker image
  kubectl coral version

  # As JSON, for a script (fields: version, commit, goVersion, platform, workerImage)
  kubectl coral version -o json

  # Just the version
  kubectl coral version -o json | jq -r .version`,
		Args:              cobra.NoArgs,
		RunE:              cmdutil.RunE(o),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	cmd.Flags().StringVarP(&o.Output, "output", "o", "", "output format: "+strings.Join(outputFormats, " or ")+" (default: text)")
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(outputFormats, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// Complete gathers the build information.
func (o *Options) Complete(_ *cobra.Command, _ []string) error {
	o.info = o.current()
	o.workerImageFromEnv = strings.TrimSpace(os.Getenv(coralversion.EnvWorkerImage)) != ""
	return nil
}

// Validate checks the flags.
func (o *Options) Validate() error {
	switch o.Output {
	case "", "json", "yaml":
		return nil
	}
	return cmdutil.BadInputf("--output %q is not supported: use one of %s, or leave it out for text", o.Output, strings.Join(outputFormats, ", "))
}

// Run prints the information.
func (o *Options) Run(context.Context) error {
	switch o.Output {
	case "json":
		b, err := json.MarshalIndent(o.info, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(o.Out, "%s\n", b)
		return err
	case "yaml":
		b, err := yaml.Marshal(o.info)
		if err != nil {
			return err
		}
		_, err = o.Out.Write(b)
		return err
	}
	worker := o.info.WorkerImage
	if o.workerImageFromEnv {
		worker += " (from $" + coralversion.EnvWorkerImage + ")"
	}
	w := tabwriter.NewWriter(o.Out, 0, 4, 1, ' ', 0)
	fmt.Fprintf(w, "Version:\t%s\n", o.info.Version)
	fmt.Fprintf(w, "Commit:\t%s\n", o.info.Commit)
	fmt.Fprintf(w, "Go version:\t%s\n", o.info.GoVersion)
	fmt.Fprintf(w, "Platform:\t%s\n", o.info.Platform)
	fmt.Fprintf(w, "Worker image:\t%s\n", worker)
	return w.Flush()
}
