package cmd

import (
	"context"
	"errors"
	"testing"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

func TestExitError(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	plain := errors.New("printing the report: broken pipe")
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		err     error
		started bool
		want    int
	}{
		{"cobra's own error", live, errors.New(`unknown flag: --nope`), false, cmdutil.ExitBadInput},
		{"plain error after the command ran may follow writes", live, plain, true, cmdutil.ExitFailed},
		{"bad input keeps its code", live, cmdutil.BadInputf("no images"), true, cmdutil.ExitBadInput},
		{"a lookup cut short by Ctrl-C", cancelled, cmdutil.BadInputf("listing nodes: context canceled"), true, cmdutil.ExitInterrupted},
		{"a failure after Ctrl-C", cancelled, plain, true, cmdutil.ExitInterrupted},
		{"interrupt stays", cancelled, &cmdutil.ExitError{Code: cmdutil.ExitInterrupted}, true, cmdutil.ExitInterrupted},
	} {
		if got := exitError(tc.ctx, tc.err, tc.started).Code; got != tc.want {
			t.Errorf("%s: exit %d, want %d", tc.name, got, tc.want)
		}
	}
}

// Through the real command tree: an unknown subcommand is bad input.
func TestRunUnknownCommandIsBadInput(t *testing.T) {
	err := Run(context.Background(), testStreams(), []string{"nope"})
	if cmdutil.Code(err) != cmdutil.ExitBadInput {
		t.Fatalf("exit %d (%v), want 2", cmdutil.Code(err), err)
	}
}

func testStreams() genericiooptions.IOStreams {
	s, _, _, _ := genericiooptions.NewTestIOStreams()
	return s
}
