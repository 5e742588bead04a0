package agent

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseName is the cluster's primary Lease.
func LeaseName(cluster string) string { return cluster + "-primary" }

// candidate takes part in the election of the primary Lease while the
// instance is the target primary (want(true)), with client-go's leader
// election; want(false) gives the Lease up.
type candidate struct {
	a *Agent

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	lead   atomic.Bool
	// renewed is the Lease's renewTime as last read while leading.
	renewed time.Time
	// nudged is the free Lease's version a restart was made for.
	nudged string
	leases coordinationv1client.CoordinationV1Interface
}

func newCandidate(a *Agent) (*candidate, error) {
	cs, err := kubernetes.NewForConfig(a.rest)
	if err != nil {
		return nil, fmt.Errorf("lease client: %w", err)
	}
	return &candidate{a: a, leases: cs.CoordinationV1()}, nil
}

// verify reads the Lease while leading and fences at once when another
// holder has it, or when it was not renewed for the renew deadline (by
// the last renewTime read, if the API server does not answer now).
// client-go's elector alone gives up only after a retry period plus the
// renew deadline, and keeps the Lease for that long when a renewal fails
// because someone else holds it.
func (c *candidate) verify(ctx context.Context) {
	if !c.leading() {
		return
	}
	a := c.a
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	l, err := c.leases.Leases(a.cfg.Namespace).Get(ctx, LeaseName(a.cfg.Cluster), metav1.GetOptions{})
	switch {
	case err == nil && (l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity != a.cfg.Instance):
		c.fence("the primary Lease has another holder")
		return
	case err == nil && l.Spec.RenewTime != nil:
		c.renewed = l.Spec.RenewTime.Time
	}
	if !c.renewed.IsZero() && time.Since(c.renewed) > a.cfg.RenewDeadline {
		c.fence("the primary Lease was not renewed within the renew deadline")
	}
}

// nudge makes a candidate that waits for the Lease try again at once when
// the Lease is free (released by a primary that stepped down, deleted by
// the operator for one known stopped): client-go's elector would try
// only after its retry period, with jitter, up to twice that.
func (c *candidate) nudge(ctx context.Context) {
	c.mu.Lock()
	waiting := c.done != nil && !c.leading()
	c.mu.Unlock()
	if !waiting {
		return
	}
	a := c.a
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	l, err := c.leases.Leases(a.cfg.Namespace).Get(ctx, LeaseName(a.cfg.Cluster), metav1.GetOptions{})
	free := apierrors.IsNotFound(err) || err == nil && (l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "")
	if !free {
		return
	}
	if err == nil && l.ResourceVersion == c.nudged {
		return // nudged for this version already
	}
	if err == nil {
		c.nudged = l.ResourceVersion
	}
	c.stop()
	c.want(true)
}

// fence stops postgres at once and gives up leading; the elector is
// restarted by the next want(true) and waits for the Lease like any
// candidate.
func (c *candidate) fence(why string) {
	if !c.lead.Swap(false) {
		return
	}
	c.a.pg.signal(stopImmediate)
	c.a.log.Info("fenced: postgres stopped (immediate)", "instance", c.a.cfg.Instance, "why", why)
	c.renewed = time.Time{}
	c.stop()
}

func (c *candidate) leading() bool { return c.lead.Load() }

func (c *candidate) want(on bool) {
	if !on {
		c.stop()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		select {
		case <-c.done: // lost the Lease: stand again
		default:
			return
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan struct{})
	go c.run(ctx, c.done)
}

// stop leaves the election, releasing the Lease if held.
func (c *candidate) stop() {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	c.cancel, c.done = nil, nil
	c.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func (c *candidate) run(ctx context.Context, done chan struct{}) {
	defer close(done)
	a := c.a
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: a.cfg.Namespace, Name: LeaseName(a.cfg.Cluster)},
		Client:     c.leases,
		LockConfig: resourcelock.ResourceLockConfig{Identity: a.cfg.Instance},
	}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   a.cfg.LeaseDuration,
		RenewDeadline:   a.cfg.RenewDeadline,
		RetryPeriod:     a.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            LeaseName(a.cfg.Cluster),
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) {
				c.lead.Store(true)
				a.log.Info("holding the primary Lease", "instance", a.cfg.Instance)
				a.poke()
			},
			OnStoppedLeading: func() {
				if c.lead.Swap(false) {
					// Fence first, talk later: a primary that cannot
					// prove it holds the Lease must take no commit.
					a.pg.signal(stopImmediate)
					a.log.Info("lost the primary Lease: postgres stopped (immediate)", "instance", a.cfg.Instance)
					a.poke()
				}
			},
		},
	})
	if err != nil {
		a.log.Error(err, "leader election")
		return
	}
	le.Run(ctx)
}
