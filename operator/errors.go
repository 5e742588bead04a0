package operator

import (
	"errors"
	"fmt"
	"time"
)

// TemporaryError asks for the handler to be retried after a given delay,
// for failures that are expected to heal (a dependency not ready yet).
type TemporaryError struct {
	Err   error
	After time.Duration
}

func (e *TemporaryError) Error() string {
	return fmt.Sprintf("%v (retry in %s)", e.Err, e.After)
}

func (e *TemporaryError) Unwrap() error { return e.Err }

// Temporary wraps err so the handler is retried after the given delay
// instead of the handler's backoff.
func Temporary(err error, after time.Duration) error {
	return &TemporaryError{Err: err, After: after}
}

// PermanentError stops retrying: the handler is recorded as failed, a
// Warning Event says why, and the flow goes on with the other handlers.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so the handler is not retried.
func Permanent(err error) error { return &PermanentError{Err: err} }

// IsPermanent reports whether err (or an error it wraps) is permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// panicError is what a recovered panic becomes: an ordinary error, retried
// like any other, so one bad handler cannot take the operator down.
type panicError struct{ value any }

func (e panicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.value) }
