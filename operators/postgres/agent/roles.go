package agent

import (
	"context"
	"fmt"
	"time"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
)

// asPrimary: this instance is the target primary. It runs as primary only
// while it holds the Lease; until then a standby keeps streaming (ready
// to be promoted the moment the Lease is taken).
func (a *Agent) asPrimary(ctx context.Context, c *v1alpha1.PostgresCluster) error {
	a.lease.verify(ctx)
	a.lease.nudge(ctx)
	switch targetPrimaryStart(a.pg.running(), a.pg.standby(), a.lease.leading()) {
	case stopAtOnce:
		// A primary without the Lease (lost between two steps): the
		// fence did or will stop it.
		a.log.Info("a primary without the Lease: stopping postgres (immediate)", "instance", a.cfg.Instance)
		a.pg.stop(stopImmediate, 5*time.Second)
		return a.awaitLease(ctx)
	case startStandby:
		a.log.Info("starting as a standby", "instance", a.cfg.Instance, "leading", a.lease.leading())
		if err := a.pg.start(); err != nil {
			return err
		}
	case startPrimary:
		a.log.Info("starting as primary", "instance", a.cfg.Instance)
		if err := a.pg.start(); err != nil {
			return err
		}
	}
	if !a.lease.leading() {
		return a.awaitLease(ctx)
	}
	if !a.observe(ctx) {
		return nil // still starting
	}
	if a.report.isReplica() {
		a.log.Info("promoting", "instance", a.cfg.Instance, "receivedLSN", a.report.ReceivedLSN)
		if err := a.pg.promote(ctx); err != nil {
			return err
		}
		if err := a.pg.setStandby(false); err != nil {
			return err
		}
		if !a.observe(ctx) {
			return nil
		}
	}
	return a.serveAsPrimary(ctx, c)
}

// What the target primary does with postgres before anything else.
type startAction int

const (
	keepRunning  startAction = iota
	stopAtOnce               // a primary without the Lease
	startStandby             // a standby's data, promoted once the Lease is held
	startPrimary             // a primary's data, with the Lease
	staysDown                // a primary's data, without the Lease
)

// targetPrimaryStart decides from the data directory's standby.signal,
// never from what postgres answers: a standby too busy to answer is
// still a standby, and stopping it would only delay the failover. A
// standby's data always starts as a standby and is promoted: started as a
// primary it would stay on its timeline, and the old primary's WAL past
// that point could no longer be told from the new one's (pg_rewind
// would see no fork).
func targetPrimaryStart(running, standbySignal, leading bool) startAction {
	switch {
	case running && !standbySignal && !leading:
		return stopAtOnce
	case running:
		return keepRunning
	case standbySignal:
		return startStandby
	case leading:
		return startPrimary
	}
	return staysDown
}

// serveAsPrimary: the Lease is held and postgres runs as primary.
func (a *Agent) serveAsPrimary(ctx context.Context, c *v1alpha1.PostgresCluster) error {
	if err := a.configure(ctx, c, a.report.Standbys); err != nil {
		return err
	}
	var replicas []string
	for _, n := range InstanceNames(c) {
		if n != a.cfg.Instance {
			replicas = append(replicas, slotName(n))
		}
	}
	if err := a.pg.slots(ctx, replicas); err != nil {
		return err
	}
	if err := a.bootstrap(ctx, c); err != nil {
		return err
	}
	if len(a.report.PendingRestart) > 0 && c.Spec.Instances == 1 {
		// Alone, the primary can only restart (a short outage); with
		// replicas the operator switches over to one that restarted.
		a.log.Info("restarting for parameters that need it", "instance", a.cfg.Instance, "parameters", a.report.PendingRestart)
		a.pg.stop(stopFast, 30*time.Second)
		a.report.Ready = false
		return a.pg.start()
	}
	a.report.Ready, a.report.Message = true, ""
	return nil
}

// awaitLease: the target primary without the Lease yet keeps streaming
// as a standby, so it can promote the moment it has it, and never serves
// as a primary.
func (a *Agent) awaitLease(ctx context.Context) error {
	if a.pg.running() {
		a.observe(ctx)
		return nil
	}
	a.report.Role, a.report.Ready = "down", false
	a.report.Message = "waiting for the primary Lease"
	return nil
}

// bootstrap sets the roles and passwords once per start as primary.
func (a *Agent) bootstrap(ctx context.Context, c *v1alpha1.PostgresCluster) error {
	if a.report.Ready && a.report.Role == "primary" {
		return nil
	}
	return a.pg.bootstrap(ctx, a.cr, a.cfg.Database, a.cfg.Owner)
}

// asReplica: another instance is (or will be) primary. A primary here
// stops fast and rejoins: pg_rewind onto the new timeline, or a fresh
// clone when that fails.
func (a *Agent) asReplica(ctx context.Context, c *v1alpha1.PostgresCluster) error {
	if a.pg.running() {
		if !a.observe(ctx) {
			return nil
		}
		if !a.report.isReplica() {
			// In this order: a fast stop sends the standbys every record
			// up to the shutdown checkpoint, and waits for them to flush
			// it, before the Lease lets one of them promote.
			a.log.Info("no longer the target primary: stopping to rejoin as a replica", "instance", a.cfg.Instance, "target", c.Status.TargetPrimary)
			a.pg.stop(stopFast, 30*time.Second)
			a.lease.stop()
			return a.rejoin(ctx, c)
		}
		a.lease.stop()
		a.failedStarts, a.rewoundWithoutStart = 0, false
		if a.diverged(c) {
			a.log.Info("replica cannot follow the primary's timeline: rewinding", "instance", a.cfg.Instance)
			a.pg.stop(stopFast, 10*time.Second)
			return a.rejoin(ctx, c)
		}
		if len(a.report.PendingRestart) > 0 {
			a.log.Info("restarting for parameters that need it", "instance", a.cfg.Instance, "parameters", a.report.PendingRestart)
			a.pg.stop(stopFast, 10*time.Second)
			return a.pg.start()
		}
		a.report.Ready, a.report.Message = replicaReady(a.report, c)
		return nil
	}
	a.lease.stop()
	if !a.pg.standby() {
		return a.rejoin(ctx, c)
	}
	if a.failedStarts >= 3 {
		a.failedStarts = 0
		if a.rewoundWithoutStart {
			// pg_rewind found nothing to do, yet the standby still
			// cannot start: its WAL went past the fork on an old
			// timeline (a replica ahead of the one promoted), which a
			// rewind from a standby's last checkpoint does not see.
			a.log.Info("the standby does not start even after a rewind: cloning the primary again", "instance", a.cfg.Instance)
			return a.reclone(ctx, c)
		}
		// A standby that cannot start, say on a timeline the primary's
		// history does not continue: rewind it (or clone again).
		a.log.Info("the standby does not start: rewinding", "instance", a.cfg.Instance)
		return a.rejoin(ctx, c)
	}
	a.failedStarts++
	return a.pg.start()
}

// diverged: the replica has not streamed for a while although the primary
// runs on a later timeline: its WAL went past the fork (an asynchronous
// replica ahead of the one promoted).
func (a *Agent) diverged(c *v1alpha1.PostgresCluster) bool {
	if a.report.Streaming {
		a.notStreamingSince = time.Time{}
		return false
	}
	if a.notStreamingSince.IsZero() {
		a.notStreamingSince = time.Now()
		return false
	}
	return time.Since(a.notStreamingSince) > 15*time.Second && primaryTimeline(c) > a.report.Timeline && c.Status.CurrentPrimary == c.Status.TargetPrimary
}

// replicaReady: a replica serves reads unless it stays on a timeline the
// primary left without streaming from it: its data may then hold commits
// the new primary never had (an old primary that has not rewound yet).
func replicaReady(r Report, c *v1alpha1.PostgresCluster) (bool, string) {
	if tl := primaryTimeline(c); !r.Streaming && tl > r.Timeline {
		return false, fmt.Sprintf("not streaming, on timeline %d while the primary is on %d", r.Timeline, tl)
	}
	return true, ""
}

// primaryTimeline is the current primary's timeline as the operator last
// wrote it (0 when unknown).
func primaryTimeline(c *v1alpha1.PostgresCluster) int64 {
	for _, in := range c.Status.Instances {
		if in.Name == c.Status.CurrentPrimary && in.Role == "primary" {
			return in.Timeline
		}
	}
	return 0
}

// rejoin makes a stopped former primary (or a standby that cannot
// follow) a replica of the current primary: pg_rewind, or a new clone
// when that fails.
func (a *Agent) rejoin(ctx context.Context, c *v1alpha1.PostgresCluster) error {
	return a.joinPrimary(ctx, c, false)
}

// reclone throws the data away and clones the current primary.
func (a *Agent) reclone(ctx context.Context, c *v1alpha1.PostgresCluster) error {
	return a.joinPrimary(ctx, c, true)
}

func (a *Agent) joinPrimary(ctx context.Context, c *v1alpha1.PostgresCluster, clone bool) error {
	a.notStreamingSince = time.Time{}
	if c.Status.CurrentPrimary == "" || c.Status.CurrentPrimary == a.cfg.Instance || c.Status.CurrentPrimary != c.Status.TargetPrimary {
		a.report.Role, a.report.Ready, a.report.Message = "down", false, "waiting for the new primary before rejoining"
		return nil
	}
	host := c.Name + "-rw"
	// A rewind or clone that cannot reach the primary would fail for
	// that alone; wait for it rather than throw the data away.
	if err := primaryAt(ctx, host, a.cr, !clone); err != nil {
		a.report.Role, a.report.Ready = "down", false
		return err
	}
	a.rewoundWithoutStart = false
	if !clone {
		out, err := a.pg.rewind(ctx, host)
		if err == nil {
			a.log.Info("pg_rewind", "instance", a.cfg.Instance, "output", out)
		}
		if err != nil {
			a.log.Info("pg_rewind failed: cloning the primary again", "instance", a.cfg.Instance, "error", err.Error())
		}
		clone, a.rewoundWithoutStart = err != nil, err == nil
	}
	if clone {
		a.report.Recloned++
		if err := a.pg.basebackup(ctx, host); err != nil {
			return fmt.Errorf("clone the primary again: %w", err)
		}
	}
	if err := a.configure(ctx, c, nil); err != nil {
		return err
	}
	if err := a.pg.setStandby(true); err != nil {
		return err
	}
	return a.pg.start()
}

// observe refreshes the report from postgres; false when postgres does
// not answer yet.
func (a *Agent) observe(ctx context.Context) bool {
	o, err := a.pg.observe(ctx)
	r := &a.report
	r.Time = time.Now()
	r.Leader = a.lease.leading()
	if err != nil {
		r.Role, r.Ready, r.Message = "down", false, "postgres does not answer yet"
		return false
	}
	r.Role = "primary"
	if o.InRecovery {
		r.Role = "replica"
	}
	r.Timeline, r.ReceivedLSN, r.ReplayedLSN, r.Streaming = o.Timeline, o.ReceivedLSN, o.ReplayedLSN, o.Streaming
	r.Standbys, r.PendingRestart = o.Standbys, o.PendingRestart
	return true
}

func (r Report) isReplica() bool { return r.Role == "replica" }
