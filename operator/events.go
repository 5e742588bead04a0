package operator

import (
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	"golang.org/x/time/rate"
)

// Event reasons Setpoint posts.
const (
	ReasonSucceeded    = "HandlerSucceeded"
	ReasonRetrying     = "HandlerRetrying"
	ReasonFailed       = "HandlerFailed"
	ReasonLogging      = "Logging"
	ReasonDecodeFailed = "DecodeFailed"
	ReasonTimerFailed  = "TimerFailed"
	ReasonDaemonFailed = "DaemonFailed"
)

// eventPoster posts Events about objects, with a token bucket per object
// so a chatty handler cannot flood the API server: a burst of 10, then one
// every 5 seconds. Outcome events (success, failure) bypass the bucket:
// there is at most one per handler attempt, and retries are backed off.
type eventPoster struct {
	rec   recorder.EventRecorder
	level int

	mu      sync.Mutex
	buckets map[types.UID]*rate.Limiter
}

func newEventPoster(rec recorder.EventRecorder, level int) *eventPoster {
	return &eventPoster{rec: rec, level: level, buckets: map[types.UID]*rate.Limiter{}}
}

func (p *eventPoster) post(obj runtime.Object, typ, reason, msg string) {
	if len(msg) > 1000 {
		msg = msg[:1000] + "..."
	}
	p.rec.Eventf(obj, nil, typ, reason, action(reason, msg), "%s", msg)
}

// action names what an Event reports. The events API folds Events that
// share object, type, reason and action into one series that keeps the
// first message, so the action carries a digest of the message: repeats
// of one line still fold, different lines stay apart.
func action(reason, msg string) string {
	h := fnv.New32a()
	h.Write([]byte(msg))
	return fmt.Sprintf("%s%08X", reason, h.Sum32())
}

func (p *eventPoster) allow(uid types.UID) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	b, ok := p.buckets[uid]
	if !ok {
		b = rate.NewLimiter(rate.Every(5*time.Second), 10)
		p.buckets[uid] = b
	}
	return b.Allow()
}

func (p *eventPoster) forget(uid types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.buckets, uid)
}

// logger returns base extended so that its lines about obj are posted as
// Events too: Info up to the configured verbosity as Normal, Error as
// Warning. Key/value pairs go to the log only; the Event carries the
// message and, for errors, the error text.
func (p *eventPoster) logger(base logr.Logger, obj client.Object) logr.Logger {
	return logr.New(&eventSink{sink: base.GetSink(), poster: p, obj: obj})
}

type eventSink struct {
	sink   logr.LogSink
	poster *eventPoster
	obj    client.Object
}

var _ logr.LogSink = (*eventSink)(nil)

func (s *eventSink) Init(info logr.RuntimeInfo) {
	if s.sink != nil {
		s.sink.Init(logr.RuntimeInfo{CallDepth: info.CallDepth + 1})
	}
}

func (s *eventSink) Enabled(level int) bool {
	return level <= s.poster.level || (s.sink != nil && s.sink.Enabled(level))
}

func (s *eventSink) Info(level int, msg string, kv ...any) {
	if s.sink != nil && s.sink.Enabled(level) {
		s.sink.Info(level, msg, kv...)
	}
	if level <= s.poster.level && s.poster.allow(s.obj.GetUID()) {
		s.poster.post(s.obj, corev1.EventTypeNormal, ReasonLogging, msg)
	}
}

func (s *eventSink) Error(err error, msg string, kv ...any) {
	if s.sink != nil {
		s.sink.Error(err, msg, kv...)
	}
	if s.poster.allow(s.obj.GetUID()) {
		text := msg
		if err != nil {
			text = strings.TrimSpace(fmt.Sprintf("%s: %v", msg, err))
		}
		s.poster.post(s.obj, corev1.EventTypeWarning, ReasonLogging, text)
	}
}

func (s *eventSink) WithValues(kv ...any) logr.LogSink {
	c := *s
	if s.sink != nil {
		c.sink = s.sink.WithValues(kv...)
	}
	return &c
}

func (s *eventSink) WithName(name string) logr.LogSink {
	c := *s
	if s.sink != nil {
		c.sink = s.sink.WithName(name)
	}
	return &c
}
