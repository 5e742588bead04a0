package testkit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/setpoint-dev/setpoint/operator"
)

// StartOperator runs op in the background until the test ends or stop is
// called. stop waits for Run to return and returns its error; it may be
// called more than once. When the test ends, an error Run returned is
// logged (a test that expects none asserts on stop's result).
func StartOperator(t testing.TB, op *operator.Operator) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- op.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(time.Minute):
				runErr = errors.New("operator did not stop within a minute")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Logf("operator: %v", err)
		}
	})
	return stop
}
