package autoscale

import (
	"fmt"
	"time"
)

// Policy is one pool's scaling rules.
type Policy struct {
	Min, Max int32
	// Target is the backlog one worker is meant to carry (> 0).
	Target int64
	// ScaleToZero lets the pool have no workers while nothing waits.
	ScaleToZero bool
	// ScaleDownWindow: a scale-down goes only as low as the highest
	// recommendation of this long before.
	ScaleDownWindow time.Duration
	// MaxStepUp and MaxStepDown bound one change (0: unbounded).
	MaxStepUp, MaxStepDown int32
}

// Validate reports a policy that cannot work. CRD validation refuses
// these first; this guards the library's own callers.
func (p Policy) Validate() error {
	switch {
	case p.Target <= 0:
		return fmt.Errorf("target backlog per worker must be positive, got %d", p.Target)
	case p.Min < 0 || p.Max < 0:
		return fmt.Errorf("min and max replicas must not be negative (min %d, max %d)", p.Min, p.Max)
	case p.Max < p.Min:
		return fmt.Errorf("min replicas %d is above max %d", p.Min, p.Max)
	case p.Max == 0:
		return fmt.Errorf("max replicas must be at least 1")
	}
	return nil
}

// floor is the fewest workers the pool may have.
func (p Policy) floor() int32 {
	if p.ScaleToZero {
		return p.Min
	}
	return max(p.Min, 1)
}

// Desired is ceil(backlog / Target) clamped to the policy's bounds.
func Desired(p Policy, backlog int64) int32 {
	want := int64(0)
	if backlog > 0 {
		want = (backlog + p.Target - 1) / p.Target
	}
	return int32(min(max(want, int64(p.floor())), int64(p.Max)))
}

// Decision is what the autoscaler does now.
type Decision struct {
	Replicas int32
	// Reason says why, for the pool's status and Events.
	Reason string
}

// Changed reports whether the decision moves the replica count.
func (d Decision) Changed(current int32) bool { return d.Replicas != current }

type sample struct {
	at      time.Time
	desired int32
}

// Scaler keeps one pool's recent recommendations. Not safe for
// concurrent use: one pool is decided by one goroutine at a time.
type Scaler struct {
	history []sample
}

// Load is what a pool has to do now.
type Load struct {
	// Backlog is the messages waiting for its workers or reserved by
	// them.
	Backlog int64
	// Busy is the number of its workers running a task: a scale-down
	// never goes below it (the idle ones are the ones removed). With
	// Celery's early acknowledgement a running task is in no queue, so
	// the backlog alone would let a busy pool shrink.
	Busy int32
	// BusyKnown is false while the workers are not all known (their
	// heartbeats not heard yet): every scale-down is held.
	BusyKnown bool
}

// Next decides the pool's replica count from its load at now.
func (s *Scaler) Next(p Policy, now time.Time, current int32, load Load) Decision {
	backlog := load.Backlog
	desired := Desired(p, backlog)
	if len(s.history) == 0 && p.ScaleDownWindow > 0 {
		// Nothing seen yet (a new pool, a restarted operator): the
		// current count stands for the window, so a restart never
		// scales down at once.
		s.history = append(s.history, sample{now, current})
	}
	s.history = append(s.history, sample{now, desired})
	kept := s.history[:0]
	for _, h := range s.history {
		if now.Sub(h.at) <= p.ScaleDownWindow {
			kept = append(kept, h)
		}
	}
	s.history = kept
	reason := fmt.Sprintf("backlog %d at %d per worker wants %d", backlog, p.Target, desired)
	next := desired
	switch {
	case desired > current:
		if p.MaxStepUp > 0 && desired-current > p.MaxStepUp {
			next = current + p.MaxStepUp
			reason += fmt.Sprintf("; up by at most %d at a time", p.MaxStepUp)
		}
	case desired < current:
		highest := desired
		for _, h := range s.history {
			highest = max(highest, h.desired)
		}
		if highest > desired {
			next = min(highest, current)
			reason += fmt.Sprintf("; held at %d by the %s scale-down window", next, p.ScaleDownWindow)
		}
		if p.MaxStepDown > 0 && current-next > p.MaxStepDown {
			next = current - p.MaxStepDown
			reason += fmt.Sprintf("; down by at most %d at a time", p.MaxStepDown)
		}
	}
	switch {
	case next >= current:
	case !load.BusyKnown:
		next = current
		reason += "; scale-down held until the workers' heartbeats say which are busy"
	case next < load.Busy:
		next = min(current, load.Busy)
		reason += fmt.Sprintf("; held at %d: %d workers are running tasks", next, load.Busy)
	}
	// Bounds changed by the user apply at once, whatever the window says.
	next = min(max(next, p.floor()), p.Max)
	return Decision{Replicas: next, Reason: reason}
}
