package version

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	coralversion "github.com/coral-dev/coral/pkg/version"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"
)

var fixed = Info{
	Version:     "v1.2.3",
	Commit:      "abc1234",
	GoVersion:   "go1.26.0",
	Platform:    "linux/arm64",
	WorkerImage: "ghcr.io/coral-dev/coral-worker:v1.2.3",
}

func runVersion(t *testing.T, args ...string) (stdout string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	o := NewOptions(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	o.current = func() Info { return fixed }
	cmd := newCmd(o)
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	err = cmd.Execute()
	return out.String(), err
}

func TestVersionOutput(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, out string)
	}{
		{
			name: "text",
			check: func(t *testing.T, out string) {
				want := "Version:      v1.2.3\n" +
					"Commit:       abc1234\n" +
					"Go version:   go1.26.0\n" +
					"Platform:     linux/arm64\n" +
					"Worker image: ghcr.io/coral-dev/coral-worker:v1.2.3\n"
				if out != want {
					t.Errorf("got\n%s\nwant\n%s", out, want)
				}
			},
		},
		{
			name: "json",
			args: []string{"-o", "json"},
			check: func(t *testing.T, out string) {
				var got Info
				if err := json.Unmarshal([]byte(out), &got); err != nil {
					t.Fatalf("not JSON: %v\n%s", err, out)
				}
				if got != fixed {
					t.Errorf("got %+v, want %+v", got, fixed)
				}
				for _, field := range []string{`"version"`, `"commit"`, `"goVersion"`, `"platform"`, `"workerImage"`} {
					if !strings.Contains(out, field) {
						t.Errorf("no %s field in\n%s", field, out)
					}
				}
			},
		},
		{
			name: "yaml",
			args: []string{"--output=yaml"},
			check: func(t *testing.T, out string) {
				var got Info
				if err := yaml.UnmarshalStrict([]byte(out), &got); err != nil {
					t.Fatalf("not YAML: %v\n%s", err, out)
				}
				if got != fixed {
					t.Errorf("got %+v, want %+v", got, fixed)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(coralversion.EnvWorkerImage, "")
			out, err := runVersion(t, tt.args...)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			tt.check(t, out)
		})
	}
}

func TestVersionBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown output", []string{"-o", "wide"}, `--output "wide" is not supported`},
		{"argument", []string{"extra"}, `unknown command "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runVersion(t, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.want)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
			if tt.name == "unknown output" && cmdutil.Code(err) != cmdutil.ExitBadInput {
				t.Errorf("exit code = %d, want %d", cmdutil.Code(err), cmdutil.ExitBadInput)
			}
		})
	}
}

func TestVersionNamesAnOverriddenWorkerImage(t *testing.T) {
	t.Setenv(coralversion.EnvWorkerImage, "registry.example.com/coral/worker:v1.2.3")
	var out bytes.Buffer
	o := NewOptions(genericiooptions.IOStreams{Out: &out})
	if err := o.Complete(nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := o.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := "Worker image: registry.example.com/coral/worker:v1.2.3 (from $CORAL_WORKER_IMAGE)\n"
	if !strings.HasSuffix(out.String(), want) {
		t.Errorf("got\n%s\nwant it to end with\n%s", out.String(), want)
	}
}

func TestCurrentIsStamped(t *testing.T) {
	got := Current()
	if got.Version != coralversion.Version || got.Commit != coralversion.Commit {
		t.Errorf("Current() = %+v, want the stamped version %q and commit %q", got, coralversion.Version, coralversion.Commit)
	}
	if !strings.HasPrefix(got.GoVersion, "go") || !strings.Contains(got.Platform, "/") {
		t.Errorf("Current() = %+v: Go version or platform look wrong", got)
	}
}
