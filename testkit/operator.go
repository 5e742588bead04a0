package testkit

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/setpoint-dev/setpoint/operator"
)

// StartOperator runs op in the background until the test ends or stop is
// called (stop waits for Run to return and may be called more than once).
// The test fails if Run ends with an error.
func StartOperator(t testing.TB, op *operator.Operator) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- op.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("operator: %v", err)
				}
			case <-time.After(time.Minute):
				t.Error("operator did not stop within a minute")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
