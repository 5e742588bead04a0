package agent

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	// renewed is when this agent last wrote the Lease successfully (unix
	// nanoseconds), kept by trackingLock.
	renewed atomic.Int64
	// nudged is the free Lease's version a restart was made for.
	nudged string
	leases coordinationv1client.CoordinationV1Interface
}

func newCandidate(a *Agent) (*candidate, error) {
	// Only the Leases' client: the agent's memory is counted per pod.
	leases, err := coordinationv1client.NewForConfig(a.rest)
	if err != nil {
		return nil, fmt.Errorf("lease client: %w", err)
	}
	return &candidate{a: a, leases: leases}, nil
}

// verify reads the Lease while leading and fences at once when another
// holder has it, or when it was not renewed for the renew deadline.
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
	}
	c.expired()
}

// expired fences when the last renewal read is older than the renew
// deadline. The watchdog calls it five times a second while leading, so
// the fence does not wait for the next step.
func (c *candidate) expired() {
	if r := c.renewed.Load(); r != 0 && time.Since(time.Unix(0, r)) > c.a.cfg.RenewDeadline {
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

// watchdog checks the renewal's age while leading; it reads no API.
func (c *candidate) watchdog(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for c.leading() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.expired()
		}
	}
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
	c.renewed.Store(0)
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
	lock := &trackingLock{c: c, LeaseLock: &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: a.cfg.Namespace, Name: LeaseName(a.cfg.Cluster)},
		Client:     c.leases,
		LockConfig: resourcelock.ResourceLockConfig{Identity: a.cfg.Instance},
	}}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   a.cfg.LeaseDuration,
		RenewDeadline:   a.cfg.RenewDeadline,
		RetryPeriod:     a.cfg.RetryPeriod,
		ReleaseOnCancel: true,
		Name:            LeaseName(a.cfg.Cluster),
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				c.lead.Store(true)
				go c.watchdog(ctx)
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

// trackingLock is client-go's Lease lock that remembers when its holder's
// last write (acquisition or renewal) succeeded, for the watchdog: the
// elector keeps that to itself.
type trackingLock struct {
	*resourcelock.LeaseLock
	c *candidate
	// holder is the holder the last Get read.
	holder string
}

func (l *trackingLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	r, raw, err := l.LeaseLock.Get(ctx)
	if err == nil {
		l.holder = r.HolderIdentity
	}
	return r, raw, err
}

func (l *trackingLock) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	err := l.LeaseLock.Create(ctx, r)
	if err == nil {
		l.c.renewed.Store(r.RenewTime.UnixNano())
	}
	return err
}

func (l *trackingLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	if r.HolderIdentity == "" && l.holder != l.c.a.cfg.Instance {
		// A release of a Lease someone else holds now. client-go's
		// elector releases on cancel by what it last saw itself, not by
		// the Get it just made: a primary fenced because another holds
		// the Lease would empty that holder's Lease, which then fences
		// itself too (its own check sees it no longer holds it).
		return nil
	}
	err := l.LeaseLock.Update(ctx, r)
	if err == nil && r.HolderIdentity == l.c.a.cfg.Instance {
		l.c.renewed.Store(r.RenewTime.UnixNano())
	}
	return err
}
