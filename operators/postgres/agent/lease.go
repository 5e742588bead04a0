package agent

import (
	"context"
	"sync"
	"sync/atomic"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
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
}

func newCandidate(a *Agent) *candidate { return &candidate{a: a} }

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
	cs, err := kubernetes.NewForConfig(a.rest)
	if err != nil {
		a.log.Error(err, "lease client")
		return
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: a.cfg.Namespace, Name: LeaseName(a.cfg.Cluster)},
		Client:     cs.CoordinationV1(),
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
