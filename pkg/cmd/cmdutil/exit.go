// Package cmdutil holds what every coral command shares: the Options shape
// and the RunE that drives it, exit codes and the errors that carry them.
package cmdutil

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Exit codes that scripts can rely on.
const (
	// ExitOK means every item reached every selected node (or registry).
	ExitOK = 0
	// ExitFailed means the run completed but some items failed.
	ExitFailed = 1
	// ExitBadInput means the input was rejected before anything was created.
	ExitBadInput = 2
	// ExitInterrupted means the run was interrupted (SIGINT/SIGTERM) and cleaned up.
	ExitInterrupted = 130
)

// ExitError is an error that carries the process exit code. A nil Err with a
// non-zero Code means "already reported, just exit with Code".
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit code %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// BadInput wraps err as a bad-input error (exit code 2). Use it for everything
// that is rejected before any object is created.
func BadInput(err error) error {
	if err == nil {
		return nil
	}
	return &ExitError{Code: ExitBadInput, Err: err}
}

// BadInputf formats a bad-input error (exit code 2).
func BadInputf(format string, args ...any) error {
	return &ExitError{Code: ExitBadInput, Err: fmt.Errorf(format, args...)}
}

// Silent returns an error that only sets the exit code: the command has
// already printed what the user needs (e.g. a report with failures).
func Silent(code int) error { return &ExitError{Code: code} }

// Code returns the exit code for err: 0 for nil, the carried code for an
// ExitError, and 1 otherwise.
func Code(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return ExitFailed
}

// RequireSubcommand is the RunE of a command that only groups others: with
// no argument it shows help, with an unknown one it says so (exit 2).
func RequireSubcommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return BadInputf("unknown command %q for %q: use one of %s", args[0], cmd.CommandPath(), strings.Join(names, ", "))
}
