package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
)

// handler serves the agent's endpoints. They read the last published
// report, never wait for a step (a clone may take minutes).
func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		r := a.published()
		if !r.Ready {
			http.Error(w, "not ready: "+r.Role+" "+r.Message, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a.published())
	})
	return mux
}

// published is the report as of the end of the last step; Ready and
// Leader are re-checked against the Lease now, so a fenced primary is
// unready at once.
func (a *Agent) published() Report {
	r := *a.pub.Load()
	r.Leader = a.lease.leading()
	if r.Role == "primary" && !r.Leader {
		r.Ready = false
	}
	return r
}

func (a *Agent) publish() {
	r := a.report
	a.pub.Store(&r)
}

// watchCluster keeps the agent's copy of its PostgresCluster, through a
// watch of that one object (the agent may read no other).
func (a *Agent) watchCluster(ctx context.Context) {
	wc, ok := a.c.(client.WithWatch)
	if !ok {
		a.log.Error(nil, "the client cannot watch")
		return
	}
	sel := fields.OneTermEqualSelector("metadata.name", a.cfg.Cluster)
	for ctx.Err() == nil {
		list := &v1alpha1.PostgresClusterList{}
		if err := wc.List(ctx, list, client.InNamespace(a.cfg.Namespace), client.MatchingFieldsSelector{Selector: sel}); err != nil {
			a.log.Error(err, "list the cluster")
			sleep(ctx, 2*time.Second)
			continue
		}
		if len(list.Items) == 1 {
			a.setCluster(&list.Items[0])
		}
		w, err := wc.Watch(ctx, &v1alpha1.PostgresClusterList{}, client.InNamespace(a.cfg.Namespace),
			client.MatchingFieldsSelector{Selector: sel})
		if err != nil {
			sleep(ctx, 2*time.Second)
			continue
		}
		a.follow(ctx, w)
	}
}

func (a *Agent) follow(ctx context.Context, w watch.Interface) {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok {
				return
			}
			if c, isCluster := ev.Object.(*v1alpha1.PostgresCluster); isCluster && (ev.Type == watch.Added || ev.Type == watch.Modified) {
				a.setCluster(c)
			}
		}
	}
}

func (a *Agent) setCluster(c *v1alpha1.PostgresCluster) {
	a.clusterMu.Lock()
	a.cluster = c
	a.clusterMu.Unlock()
	a.poke()
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

var _ runtime.Object = (*v1alpha1.PostgresCluster)(nil)
