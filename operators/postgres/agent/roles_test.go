package agent

import "testing"

func TestTargetPrimaryStart(t *testing.T) {
	for _, tc := range []struct {
		name                            string
		running, standbySignal, leading bool
		want                            startAction
	}{
		{"a standby waiting for the Lease keeps streaming", true, true, false, keepRunning},
		{"a primary without the Lease stops at once", true, false, false, stopAtOnce},
		{"a primary with the Lease runs on", true, false, true, keepRunning},
		{"a standby with the Lease runs on (and is promoted)", true, true, true, keepRunning},
		{"a stopped standby with the Lease starts as a standby, to be promoted onto a new timeline", false, true, true, startStandby},
		{"a stopped standby without the Lease starts as a standby", false, true, false, startStandby},
		{"a stopped primary with the Lease starts as primary", false, false, true, startPrimary},
		{"a stopped primary without the Lease stays down", false, false, false, staysDown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := targetPrimaryStart(tc.running, tc.standbySignal, tc.leading); got != tc.want {
				t.Errorf("got %d, want %d", got, tc.want)
			}
		})
	}
}
