package agent

import (
	"testing"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
)

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

func TestReplicaReady(t *testing.T) {
	cluster := func(primaryTimeline int64) *v1alpha1.PostgresCluster {
		return &v1alpha1.PostgresCluster{Status: v1alpha1.PostgresClusterStatus{CurrentPrimary: "pg-2", Instances: []v1alpha1.InstanceStatus{
			{Name: "pg-1", Role: "replica", Timeline: 1}, {Name: "pg-2", Role: "primary", Timeline: primaryTimeline}}}}
	}
	for _, tc := range []struct {
		name      string
		report    Report
		primaryTL int64
		want      bool
	}{
		{"streaming on the primary's timeline", Report{Timeline: 2, Streaming: true}, 2, true},
		{"between two connections, same timeline", Report{Timeline: 2}, 2, true},
		{"streaming, still on the old timeline until its next restartpoint", Report{Timeline: 1, Streaming: true}, 2, true},
		{"an old primary not streaming on the old timeline", Report{Timeline: 1}, 2, false},
		{"primary unknown", Report{Timeline: 1}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, why := replicaReady(tc.report, cluster(tc.primaryTL)); got != tc.want {
				t.Errorf("ready %v (%s), want %v", got, why, tc.want)
			}
		})
	}
}
