package cmdutil

import (
	"context"
	"errors"

	"github.com/spf13/cobra"
)

// Options is the shape of every coral command's options (the kubectl
// pattern): Complete fills in what the flags and arguments imply (files
// read, clients built), Validate checks the result, Run does the work.
// Complete and Validate change nothing outside the process.
type Options interface {
	Complete(cmd *cobra.Command, args []string) error
	Validate() error
	Run(ctx context.Context) error
}

// RunE is the RunE of every command that does work: Complete, Validate,
// then Run with the command's context.
//
// Nothing has been changed before Run, so an error from Complete or
// Validate that carries no exit code is bad input (exit 2). Run's errors
// pass through as they are: the root command gives an error without a code
// exit 1, since it may follow writes.
func RunE(o Options) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if err := o.Complete(cmd, args); err != nil {
			return badInputUnlessCoded(err)
		}
		if err := o.Validate(); err != nil {
			return badInputUnlessCoded(err)
		}
		ctx := cmd.Context()
		if ctx == nil { // cobra sets one in Execute; a command run on its own may lack it
			ctx = context.Background()
		}
		return o.Run(ctx)
	}
}

func badInputUnlessCoded(err error) error {
	var ee *ExitError
	if errors.As(err, &ee) {
		return err
	}
	return BadInput(err)
}
