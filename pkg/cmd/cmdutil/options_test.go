package cmdutil

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/spf13/cobra"
)

// recorder is an Options that records its calls and fails where told.
type recorder struct {
	calls                   []string
	args                    []string
	ctx                     context.Context
	complete, validate, run error
}

func (r *recorder) Complete(_ *cobra.Command, args []string) error {
	r.calls = append(r.calls, "Complete")
	r.args = args
	return r.complete
}

func (r *recorder) Validate() error {
	r.calls = append(r.calls, "Validate")
	return r.validate
}

func (r *recorder) Run(ctx context.Context) error {
	r.calls = append(r.calls, "Run")
	r.ctx = ctx
	return r.run
}

type ctxKey struct{}

func TestRunE(t *testing.T) {
	plain := errors.New("plain")
	interrupted := &ExitError{Code: ExitInterrupted, Err: errors.New("interrupted")}
	for _, tc := range []struct {
		name      string
		r         recorder
		wantCalls []string
		wantCode  int
		wantErr   error // must be in the returned chain
	}{
		{"all three, in order", recorder{}, []string{"Complete", "Validate", "Run"}, ExitOK, nil},
		{"a plain Complete error is bad input", recorder{complete: plain}, []string{"Complete"}, ExitBadInput, plain},
		{"a plain Validate error is bad input", recorder{validate: plain}, []string{"Complete", "Validate"}, ExitBadInput, plain},
		{"Complete keeps its own code", recorder{complete: interrupted}, []string{"Complete"}, ExitInterrupted, interrupted},
		{"Validate keeps its own code", recorder{validate: BadInputf("--x")}, []string{"Complete", "Validate"}, ExitBadInput, nil},
		{"a plain Run error passes as it is", recorder{run: plain}, []string{"Complete", "Validate", "Run"}, ExitFailed, plain},
		{"Run keeps its own code", recorder{run: Silent(ExitFailed)}, []string{"Complete", "Validate", "Run"}, ExitFailed, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r
			cmd := &cobra.Command{Use: "x", RunE: RunE(&r), SilenceErrors: true, SilenceUsage: true}
			cmd.SetArgs([]string{"a", "b"})
			ctx := context.WithValue(context.Background(), ctxKey{}, "the command's")
			err := cmd.ExecuteContext(ctx)
			if !reflect.DeepEqual(r.calls, tc.wantCalls) {
				t.Errorf("calls %v, want %v", r.calls, tc.wantCalls)
			}
			if got := Code(err); got != tc.wantCode {
				t.Errorf("exit %d (%v), want %d", got, err, tc.wantCode)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v does not wrap %v", err, tc.wantErr)
			}
			if len(r.calls) > 0 && !reflect.DeepEqual(r.args, []string{"a", "b"}) {
				t.Errorf("Complete got args %v", r.args)
			}
			if r.ctx != nil && r.ctx.Value(ctxKey{}) != "the command's" {
				t.Errorf("Run did not get the command's context")
			}
		})
	}
}

// Code of a plain Run error is ExitFailed only through the root command's
// contract; here it must stay plain, not become bad input.
func TestRunEDoesNotCodeRunErrors(t *testing.T) {
	plain := errors.New("after writes")
	r := &recorder{run: plain}
	err := RunE(r)(&cobra.Command{}, nil)
	var ee *ExitError
	if errors.As(err, &ee) {
		t.Fatalf("Run's plain error got a code: %v", ee.Code)
	}
	if r.ctx == nil {
		t.Fatal("Run got a nil context from a command without one")
	}
}
