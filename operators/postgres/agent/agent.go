package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
)

// Config is what the pod tells its agent (flags and environment).
type Config struct {
	Cluster, Namespace, Instance string
	// DataDir is PGDATA, inside the instance's volume.
	DataDir string
	// RunDir holds the unix socket and the password file.
	RunDir string
	// HTTPAddr serves /healthz, /readyz and /status.
	HTTPAddr string
	// Database and Owner are made by the first primary.
	Database, Owner string
	// Lease timings of the primary Lease.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Interval between two looks at postgres and the cluster.
	Interval time.Duration
	Log      logr.Logger
}

// Lease timings: the primary renews every RetryPeriod (one write), stops
// postgres when it could not renew for RenewDeadline, and another
// instance may take the Lease LeaseDuration after it last saw it renewed,
// so the old primary has stopped LeaseDuration-RenewDeadline before.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 5 * time.Second
)

// Binary is the agent's file name, in Setpoint's image (at its root) and
// in the directory an instance pod's init container copies it to.
const Binary = "setpoint-postgres-agent"

// Agent manages one instance.
type Agent struct {
	cfg   Config
	cr    credentials
	c     client.Client
	rest  *rest.Config
	log   logr.Logger
	pg    *server
	lease *candidate

	// mu is held by a step; report is the step's working copy, pub what
	// the endpoints serve.
	mu     sync.Mutex
	report Report
	pub    atomic.Pointer[Report]

	clusterMu sync.Mutex
	cluster   *v1alpha1.PostgresCluster
	wake      chan struct{}
	// notStreamingSince is when a replica's WAL receiver was first seen down.
	notStreamingSince time.Time
	// failedStarts counts standby starts since postgres last answered;
	// rewoundWithoutStart: a rewind was made since, so the next remedy
	// is a new clone.
	failedStarts        int
	rewoundWithoutStart bool
}

// Report is what /status answers.
type Report struct {
	Instance string `json:"instance"`
	// Role: primary, replica, or down (postgres not running).
	Role           string   `json:"role"`
	Leader         bool     `json:"leader"`
	Ready          bool     `json:"ready"`
	Timeline       int64    `json:"timeline,omitempty"`
	ReceivedLSN    string   `json:"receivedLSN,omitempty"`
	ReplayedLSN    string   `json:"replayedLSN,omitempty"`
	Streaming      bool     `json:"streaming,omitempty"`
	Standbys       []string `json:"standbys,omitempty"`
	PendingRestart []string `json:"pendingRestart,omitempty"`
	// Recloned counts the times the data was thrown away and cloned
	// again because a rewind failed.
	Recloned int32 `json:"recloned,omitempty"`
	// DiskFull: the data volume has less room than PostgreSQL needs to
	// go on (FreeBytes left).
	DiskFull  bool   `json:"diskFull,omitempty"`
	FreeBytes int64  `json:"freeBytes,omitempty"`
	Message   string `json:"message,omitempty"`
	// Time is when the report was made.
	Time time.Time `json:"time"`
}

// Run runs the agent until ctx ends, then stops postgres (fast).
func Run(ctx context.Context, cfg Config, rc *rest.Config, c client.Client) error {
	cr := credentials{superuser: os.Getenv("SUPERUSER_PASSWORD"), replication: os.Getenv("REPLICATION_PASSWORD"), app: os.Getenv("APP_PASSWORD")}
	if cr.superuser == "" || cr.replication == "" {
		return errors.New("SUPERUSER_PASSWORD and REPLICATION_PASSWORD must be set (from the cluster's Secrets)")
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = DefaultLeaseDuration, DefaultRenewDeadline, DefaultRetryPeriod
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Second
	}
	pg, err := newServer(cfg.DataDir, cfg.RunDir, os.Stderr)
	if err != nil {
		return err
	}
	a := &Agent{cfg: cfg, cr: cr, c: c, rest: rc, log: cfg.Log, pg: pg, wake: make(chan struct{}, 1),
		report: Report{Instance: cfg.Instance, Role: "down"}}
	if err := pg.own(cfg.RunDir, 0o700); err != nil {
		return fmt.Errorf("run dir: %w", err)
	}
	if err := pg.writeFile(filepath.Join(cfg.RunDir, "pgpass"), pgpass(cr), 0o600); err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	if a.lease, err = newCandidate(a); err != nil {
		return err
	}
	a.publish()
	srv := &http.Server{Addr: cfg.HTTPAddr, Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error(err, "status endpoint")
		}
	}()
	defer srv.Close()
	go a.watchCluster(ctx)
	err = a.loop(ctx)
	a.shutdown()
	return err
}

// shutdown stops postgres fast and gives the Lease up, so a successor
// need not wait for it to expire.
func (a *Agent) shutdown() {
	a.mu.Lock()
	a.pg.stop(stopFast, 20*time.Second)
	a.mu.Unlock()
	a.lease.stop()
}

func (a *Agent) loop(ctx context.Context) error {
	t := time.NewTicker(a.cfg.Interval)
	defer t.Stop()
	var last string
	for {
		if c := a.currentCluster(); c != nil {
			err := a.step(ctx, c)
			if err != nil && ctx.Err() == nil {
				a.setMessage(err.Error())
				// Once per new trouble, not once a second.
				if err.Error() != last {
					a.log.Error(err, "step", "instance", a.cfg.Instance)
				}
			}
			last = ""
			if err != nil {
				last = err.Error()
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-a.wake:
		}
	}
}

func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

func (a *Agent) currentCluster() *v1alpha1.PostgresCluster {
	a.clusterMu.Lock()
	defer a.clusterMu.Unlock()
	return a.cluster
}

func (a *Agent) setMessage(msg string) {
	a.mu.Lock()
	a.report.Message = msg
	a.report.Ready = false
	a.publish()
	a.mu.Unlock()
}

// step does what the cluster's status asks of this instance now.
func (a *Agent) step(ctx context.Context, c *v1alpha1.PostgresCluster) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer a.publish()
	me := a.cfg.Instance
	target := c.Status.TargetPrimary
	a.checkVolume()
	if !a.pg.hasData() {
		if err := a.makeData(ctx, c); err != nil {
			return err
		}
	}
	if !a.pg.running() {
		if err := a.pg.compatible(); err != nil {
			a.report.Role, a.report.Ready = "down", false
			return err
		}
	}
	if err := a.configure(ctx, c, nil); err != nil {
		return err
	}
	if target == me {
		a.lease.want(true)
		return a.asPrimary(ctx, c)
	}
	return a.asReplica(ctx, c)
}

// checkVolume reports the data volume's free space, and says once when
// it becomes full.
func (a *Agent) checkVolume() {
	free, err := volumeFree(a.pg.data)
	if err != nil {
		return
	}
	full := free < minFree
	if full && !a.report.DiskFull {
		a.log.Error(nil, "the data volume is full: postgres cannot write", "instance", a.cfg.Instance, "freeBytes", free)
	}
	a.report.DiskFull, a.report.FreeBytes = full, int64(free)
}

// makeData makes the data directory: initdb for the first primary of a
// new cluster, otherwise a clone of the current primary.
func (a *Agent) makeData(ctx context.Context, c *v1alpha1.PostgresCluster) error {
	me := a.cfg.Instance
	switch {
	case c.Status.TargetPrimary == me && !c.Status.Initialized:
		a.log.Info("initdb", "instance", me)
		if err := a.pg.initdb(ctx); err != nil {
			return err
		}
		return appendInclude(a.pg)
	case c.Status.CurrentPrimary != "" && c.Status.CurrentPrimary != me:
		a.log.Info("cloning the primary", "instance", me, "primary", c.Status.CurrentPrimary)
		if err := a.pg.basebackup(ctx, c.Name+"-rw"); err != nil {
			return fmt.Errorf("clone from %s: %w", c.Status.CurrentPrimary, err)
		}
		return a.pg.setStandby(true)
	default:
		return fmt.Errorf("empty data directory and no primary to clone from yet")
	}
}

func appendInclude(s *server) error {
	p := filepath.Join(s.data, "postgresql.conf")
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if strings.Contains(string(b), "include_if_exists = 'setpoint.conf'") {
		return nil
	}
	return s.writeFile(p, string(b)+"\ninclude_if_exists = 'setpoint.conf'\n", 0o600)
}

// configure writes setpoint.conf and pg_hba.conf and reloads postgres
// when they changed.
func (a *Agent) configure(ctx context.Context, c *v1alpha1.PostgresCluster, streaming []string) error {
	changed := false
	for name, content := range map[string]string{
		"setpoint.conf": postgresqlConf(c, a.cfg.Instance, a.cfg.RunDir, streaming),
		"pg_hba.conf":   hbaConf,
	} {
		p := filepath.Join(a.pg.data, name)
		if old, err := os.ReadFile(p); err == nil && string(old) == content {
			continue
		}
		if err := a.pg.writeFile(p, content, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		changed = true
	}
	if changed && a.pg.running() {
		return a.pg.reload(ctx)
	}
	return nil
}
