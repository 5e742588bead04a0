package operator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// defaultLeaseDuration is client-go's, used when LeaderElection sets none.
const defaultLeaseDuration = 15 * time.Second

// checkLeaseFree, with LeaderElection.FailIfHeld, refuses to start while
// another process holds the operator's Lease.
func (op *Operator) checkLeaseFree(ctx context.Context) error {
	le := op.opts.LeaderElection
	if le == nil || !le.FailIfHeld {
		return nil
	}
	key := types.NamespacedName{Namespace: le.Namespace, Name: op.opts.Name}
	lease := &coordinationv1.Lease{}
	err := op.mgr.GetAPIReader().Get(ctx, key, lease)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("read Lease %s: %w", key, err)
	}
	if msg := leaseHeld(lease, time.Now(), le.LeaseDuration); msg != "" {
		return fmt.Errorf("another instance named %q is active: %s; give this one another name, or run every instance with leader election", op.opts.Name, msg)
	}
	return nil
}

// leaseHeld says who holds the Lease and since when it was renewed, or
// "" when nobody does: no holder, or a renewal older than its duration.
func leaseHeld(l *coordinationv1.Lease, now time.Time, fallback time.Duration) string {
	s := l.Spec
	if s.HolderIdentity == nil || *s.HolderIdentity == "" || s.RenewTime == nil {
		return ""
	}
	d := fallback
	if s.LeaseDurationSeconds != nil {
		d = time.Duration(*s.LeaseDurationSeconds) * time.Second
	}
	if d == 0 {
		d = defaultLeaseDuration
	}
	age := now.Sub(s.RenewTime.Time)
	if age > d {
		return ""
	}
	return fmt.Sprintf("Lease %s/%s is held by %s, renewed %s ago (if that was this program before a crash, it expires in %s)",
		l.Namespace, l.Name, *s.HolderIdentity, age.Round(time.Second), (d - age).Round(time.Second))
}

// holdLease holds the operator's Lease while it runs, for FailIfHeld:
// the handlers do not wait for it (this process is the only one of its
// name), but a second one started later finds it held. It is released
// on stop.
func (op *Operator) holdLease(ctx context.Context) error {
	le := op.opts.LeaderElection
	cs, err := kubernetes.NewForConfig(op.mgr.GetConfig())
	if err != nil {
		return fmt.Errorf("hold Lease: %w", err)
	}
	host, _ := os.Hostname()
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: op.opts.Name},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: host + "_" + hex.EncodeToString(suffix)},
	}
	or := func(d, def time.Duration) time.Duration {
		if d > 0 {
			return d
		}
		return def
	}
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            op.opts.Name,
		LeaseDuration:   or(le.LeaseDuration, defaultLeaseDuration),
		RenewDeadline:   or(le.RenewDeadline, 10*time.Second),
		RetryPeriod:     or(le.RetryPeriod, 2*time.Second),
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) {},
			OnStoppedLeading: func() {
				if ctx.Err() == nil {
					op.log.Error(errors.New("Lease not renewed in time"), "This instance lost its Lease; it takes it again when it can", "lease", le.Namespace+"/"+op.opts.Name)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("hold Lease: %w", err)
	}
	for ctx.Err() == nil {
		elector.Run(ctx)
	}
	return nil
}
