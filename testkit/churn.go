package testkit

import (
	"context"
	"math/rand/v2"
	"time"
)

// Churn calls step over and over in a goroutine, pace apart (0: as fast
// as step returns), each call with a context of 5 s, until the function
// it returns is called; that returns how many steps ran. The chaos tests
// change objects with it while they inject faults; a step's errors are
// part of the churn and are its own to handle.
func Churn(pace time.Duration, step func(ctx context.Context)) (stop func() int) {
	quit, done := make(chan struct{}), make(chan int, 1)
	go func() {
		steps := 0
		for {
			select {
			case <-quit:
				done <- steps
				return
			case <-time.After(pace):
			}
			steps++
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			step(ctx)
			cancel()
		}
	}()
	return func() int {
		close(quit)
		return <-done
	}
}

// KillRandomly SIGKILLs one of the supervisor's processes, chosen by rnd,
// n times, 0.3–3 s apart (also drawn from rnd), and returns after the
// last kill.
func (s *Supervisor) KillRandomly(rnd *rand.Rand, n int) {
	for range n {
		<-time.After(time.Duration(300+rnd.IntN(2700)) * time.Millisecond)
		s.Kill(rnd.IntN(len(s.current)))
	}
}
