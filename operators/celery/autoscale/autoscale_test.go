package autoscale

import (
	"strings"
	"testing"
	"time"
)

func TestDesired(t *testing.T) {
	tests := []struct {
		name    string
		p       Policy
		backlog int64
		want    int32
	}{
		{"idle pool that may sleep", Policy{Min: 0, Max: 10, Target: 10, ScaleToZero: true}, 0, 0},
		{"idle pool that may not sleep keeps one", Policy{Min: 0, Max: 10, Target: 10}, 0, 1},
		{"idle pool keeps its minimum", Policy{Min: 2, Max: 10, Target: 10, ScaleToZero: true}, 0, 2},
		{"wakes from zero on one task", Policy{Max: 10, Target: 10, ScaleToZero: true}, 1, 1},
		{"rounds up", Policy{Max: 10, Target: 10}, 25, 3},
		{"exact multiple", Policy{Max: 10, Target: 10}, 30, 3},
		{"clamped to max", Policy{Max: 4, Target: 10}, 1000, 4},
		{"huge backlog does not overflow", Policy{Max: 50, Target: 1}, 1 << 62, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Desired(tt.p, tt.backlog); got != tt.want {
				t.Errorf("Desired = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	for _, p := range []Policy{{Max: 1}, {Max: 1, Target: -1}, {Min: 3, Max: 2, Target: 1}, {Min: -1, Max: 2, Target: 1}, {Target: 1}} {
		if p.Validate() == nil {
			t.Errorf("%+v accepted", p)
		}
	}
	if err := (Policy{Min: 0, Max: 3, Target: 5}).Validate(); err != nil {
		t.Errorf("a good policy refused: %v", err)
	}
}

// step is one decision in a scenario: at second at, with the pool at
// current replicas and backlog waiting, the scaler decides want.
type step struct {
	at      int
	current int32
	backlog int64
	want    int32
	reason  string // a part of the reason, if checked
}

func TestScaler(t *testing.T) {
	window := Policy{Max: 10, Target: 10, ScaleToZero: true, ScaleDownWindow: 60 * time.Second}
	tests := []struct {
		name  string
		p     Policy
		steps []step
	}{
		{"scales up at once", window, []step{
			{0, 1, 95, 10, "wants 10"},
		}},
		{"scale-up step limit", Policy{Max: 10, Target: 10, MaxStepUp: 2}, []step{
			{0, 1, 95, 3, "up by at most 2"},
			{1, 3, 95, 5, ""},
		}},
		{"every scale-down waits for the window, not only the last to zero", window, []step{
			{0, 8, 80, 8, ""},
			{10, 8, 30, 8, "held at 8 by the 1m0s scale-down window"},
			{59, 8, 30, 8, ""},
			{61, 8, 30, 3, "wants 3"},
		}},
		{"a dip does not flap", window, []step{
			{0, 5, 50, 5, ""},
			{20, 5, 0, 5, "held"},
			{40, 5, 50, 5, ""},
			{70, 5, 0, 5, "held"}, // 50 was wanted at 40 s
			{101, 5, 0, 0, ""},
		}},
		{"goes down to the highest of the window, not all the way", window, []step{
			{0, 9, 90, 9, ""},
			{30, 9, 40, 9, ""},
			{61, 9, 10, 4, "held at 4"},
			{91, 4, 10, 1, ""},
		}},
		{"to zero and back", window, []step{
			{0, 1, 0, 1, "held"},
			{61, 1, 0, 0, "wants 0"},
			{62, 0, 3, 1, "wants 1"},
		}},
		{"scale-down step limit", Policy{Max: 10, Target: 10, MaxStepDown: 3}, []step{
			{0, 10, 0, 7, "down by at most 3"},
			{1, 7, 0, 4, ""},
			{2, 4, 0, 1, ""},
			{3, 1, 0, 1, ""},
		}},
		{"a lowered max applies at once, window or not", Policy{Max: 2, Target: 10, ScaleDownWindow: time.Hour}, []step{
			{0, 6, 100, 2, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Scaler
			start := time.Unix(1_000_000, 0)
			for _, st := range tt.steps {
				d := s.Next(tt.p, start.Add(time.Duration(st.at)*time.Second), st.current, Load{Backlog: st.backlog, BusyKnown: true})
				if d.Replicas != st.want || !strings.Contains(d.Reason, st.reason) {
					t.Fatalf("at %ds (current %d, backlog %d): %d (%s), want %d (reason with %q)",
						st.at, st.current, st.backlog, d.Replicas, d.Reason, st.want, st.reason)
				}
			}
		})
	}
}

// TestScalerKeepsBusyWorkers: a scale-down stops at the workers running
// tasks, and waits while they are not known.
func TestScalerKeepsBusyWorkers(t *testing.T) {
	p := Policy{Max: 10, Target: 10, ScaleToZero: true}
	tests := []struct {
		name          string
		current, want int32
		load          Load
		reason        string
	}{
		{"empty queues, two busy of five", 5, 2, Load{Busy: 2, BusyKnown: true}, "held at 2: 2 workers are running tasks"},
		{"busy above the backlog's count", 5, 3, Load{Backlog: 15, Busy: 3, BusyKnown: true}, "held at 3"},
		{"the backlog wants more than the busy", 5, 4, Load{Backlog: 35, Busy: 1, BusyKnown: true}, "wants 4"},
		{"all idle: all go", 5, 0, Load{BusyKnown: true}, "wants 0"},
		{"heartbeats unknown: no scale-down", 5, 5, Load{}, "held until the workers' heartbeats"},
		{"heartbeats unknown: scale-up still", 1, 3, Load{Backlog: 30}, "wants 3"},
		{"a lowered max wins over busy workers", 5, 10, Load{Backlog: 500, Busy: 5, BusyKnown: true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Scaler
			d := s.Next(p, time.Unix(1_000_000, 0), tt.current, tt.load)
			if d.Replicas != tt.want || !strings.Contains(d.Reason, tt.reason) {
				t.Fatalf("%d (%s), want %d (reason with %q)", d.Replicas, d.Reason, tt.want, tt.reason)
			}
		})
	}
	low := Policy{Max: 2, Target: 10}
	var s Scaler
	if d := s.Next(low, time.Unix(1_000_000, 0), 5, Load{Busy: 5, BusyKnown: true}); d.Replicas != 2 {
		t.Errorf("max 2 with 5 busy: %d, want 2 (the user's bound applies at once)", d.Replicas)
	}
}
