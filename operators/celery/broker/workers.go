package broker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Worker is one Celery worker as its last heartbeat described it. Every
// worker sends a worker-heartbeat event every 2 s (Celery's default, even
// without -E) over the broker's celeryev exchange, with the number of
// tasks it is running: the only place a task acknowledged early (Celery's
// default) is still visible while it runs.
type Worker struct {
	// Hostname is the worker's node name (celery worker --hostname).
	Hostname string
	// Active is the number of tasks it is running.
	Active int
	// Processed is the number of tasks it has taken since it started.
	Processed int64
	// Seen is when its last heartbeat arrived.
	Seen time.Time
	// Silent is true once its heartbeats stopped (2.5 intervals, at
	// least 6 s) without a worker-offline event: it died, or its pool
	// cannot send them while it works (--pool solo runs a task in the
	// thread that sends them). Its Active is then the last one heard.
	// A silent worker is forgotten after silentRetention.
	Silent bool
	// Version is the Celery version it runs (its heartbeats' sw_ver).
	Version string
}

// ErrHeartbeatsUnknown is returned by Workers while the list of workers
// may be incomplete: listening for less than a few heartbeat intervals,
// or not at all.
var ErrHeartbeatsUnknown = errors.New("worker heartbeats not heard yet")

// Heartbeats are how long a listener must have listened before it knows
// every worker, and how long a worker stays known after its last
// heartbeat (2.5 of its intervals, as Celery's own event state, at
// least workerExpiry).
const (
	heartbeatSettle = 5 * time.Second
	workerExpiry    = 6 * time.Second
	silentRetention = 10 * time.Minute
)

// heartbeats follows the workers of one broker, from a listener started
// at the first call of Workers and stopped by stop.
type heartbeats struct {
	listen func(ctx context.Context, h *heartbeats)
	now    func() time.Time

	start  sync.Once
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	workers map[string]worker
	since   time.Time // listening since, zero while not
	lastErr error
}

type worker struct {
	Worker
	expires time.Time
}

func newHeartbeats(listen func(context.Context, *heartbeats)) *heartbeats {
	return &heartbeats{listen: listen, now: time.Now, workers: map[string]worker{}}
}

// Workers returns the workers heard from, sorted by host name, or
// ErrHeartbeatsUnknown (wrapped with the reason) when some may be missing.
func (h *heartbeats) Workers() ([]Worker, error) {
	h.start.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		h.cancel, h.done = cancel, make(chan struct{})
		go func() {
			defer close(h.done)
			h.listen(ctx, h)
		}()
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	switch {
	case h.since.IsZero() && h.lastErr != nil:
		return nil, fmt.Errorf("%w: %w", ErrHeartbeatsUnknown, h.lastErr)
	case h.since.IsZero() || now.Sub(h.since) < heartbeatSettle:
		return nil, fmt.Errorf("%w: listening for less than %s", ErrHeartbeatsUnknown, heartbeatSettle)
	}
	out := make([]Worker, 0, len(h.workers))
	for name, w := range h.workers {
		switch {
		case now.Sub(w.Seen) > silentRetention:
			delete(h.workers, name)
			continue
		case now.After(w.expires):
			w.Silent = true
		}
		out = append(out, w.Worker)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hostname < out[j].Hostname })
	return out, nil
}

func (h *heartbeats) stop() {
	if h.cancel != nil {
		h.cancel()
		<-h.done
	}
}

// up says the listener now receives every event sent from here on.
func (h *heartbeats) up() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.since.IsZero() {
		h.since = h.now()
	}
	h.lastErr = nil
}

// down says the listener lost its subscription: events may be missed
// until it is back.
func (h *heartbeats) down(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.since, h.lastErr = time.Time{}, err
}

// event records one Celery event (JSON): worker-heartbeat and
// worker-online add or refresh a worker, worker-offline removes it.
func (h *heartbeats) event(body []byte) {
	var e struct {
		Type      string  `json:"type"`
		Hostname  string  `json:"hostname"`
		Active    int     `json:"active"`
		Processed int64   `json:"processed"`
		Freq      float64 `json:"freq"`
		Version   string  `json:"sw_ver"`
	}
	if json.Unmarshal(body, &e) != nil || e.Hostname == "" || !strings.HasPrefix(e.Type, "worker-") {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if e.Type == "worker-offline" {
		delete(h.workers, e.Hostname)
		return
	}
	now := h.now()
	life := max(time.Duration(e.Freq*2.5*float64(time.Second)), workerExpiry)
	h.workers[e.Hostname] = worker{Worker{Hostname: e.Hostname, Active: e.Active, Processed: e.Processed, Seen: now, Version: e.Version}, now.Add(life)}
}

// kombuBody is the payload of a message kombu's virtual transports
// (Redis) publish: an envelope whose body is base64 when it says so.
func kombuBody(payload []byte) []byte {
	var env struct {
		Body       string `json:"body"`
		Properties struct {
			BodyEncoding string `json:"body_encoding"`
		} `json:"properties"`
	}
	if json.Unmarshal(payload, &env) != nil {
		return nil
	}
	if env.Properties.BodyEncoding == "base64" {
		b, err := base64.StdEncoding.DecodeString(env.Body)
		if err != nil {
			return nil
		}
		return b
	}
	return []byte(env.Body)
}

// retryDelay is how long a listener waits before subscribing again.
const retryDelay = time.Second

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
