package operator

import (
	"context"
	"reflect"
	"runtime"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Reason is why a handler runs.
type Reason string

// The reasons of change-triggered handlers.
const (
	Create Reason = "create"
	Update Reason = "update"
	Delete Reason = "delete"
	Resume Reason = "resume"
)

// Cause is what a handler receives: the object and why it is called.
type Cause[T client.Object] struct {
	Reason Reason
	// Object is the object as it is now.
	Object T
	// Old and New are, for a field handler, the field's values before and
	// after; for an update handler, the whole essence (everything but
	// status and system metadata) before and after. Nil when absent.
	Old, New any
	// Diff lists the changes: for a field handler, relative to the field.
	Diff Diff
	// Retry counts earlier failed attempts of this handler in this flow.
	Retry int
	// Started is when this handler was first attempted in this flow.
	Started time.Time
	// Log is bound to the object; its Info and Error lines are also posted
	// as Events on the object (see Options.EventLevel).
	Log logr.Logger
}

// HandlerFunc handles a change. Return nil on success, Temporary(err, d)
// to retry after d, Permanent(err) to give up, or any error to retry with
// backoff. A panic is recovered and treated as an error.
type HandlerFunc[T client.Object] func(ctx context.Context, c *Cause[T]) error

// TimerFunc runs periodically for each object.
type TimerFunc[T client.Object] func(ctx context.Context, obj T, log logr.Logger) error

// DaemonFunc runs in its own goroutine for each object until ctx ends
// (object deleted, operator stopping) or it returns. Returning an error
// restarts it after a backoff; returning nil ends it for good.
type DaemonFunc[T client.Object] func(ctx context.Context, obj T, log logr.Logger) error

// EventType is the type of a raw watch event.
type EventType string

// Raw watch event types.
const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
)

// Event is a raw watch event, delivered to OnEvent handlers.
type Event[T client.Object] struct {
	Type   EventType
	Object T
	Log    logr.Logger
}

// BackoffPolicy is a capped exponential backoff: Initial, doubled on every
// retry, at most Max.
type BackoffPolicy struct {
	Initial time.Duration
	Max     time.Duration
}

// DefaultBackoff is used by handlers that set none.
var DefaultBackoff = BackoffPolicy{Initial: time.Second, Max: 5 * time.Minute}

// MinRetryDelay is the shortest wait before a retry, whatever a backoff
// policy or Temporary asks for: a retry costs at least one write of the
// progress, and a delay of 0 would make that a write every millisecond.
const MinRetryDelay = 100 * time.Millisecond

// Delay returns the wait before retry number n (n >= 1), at least
// MinRetryDelay.
func (b BackoffPolicy) Delay(n int) time.Duration {
	d := max(b.Initial, MinRetryDelay)
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return max(min(d, b.Max), MinRetryDelay)
}

// handlerConfig holds a handler's options.
type handlerConfig struct {
	id           string
	retries      int // 0: unlimited
	timeout      time.Duration
	backoff      BackoffPolicy
	optional     bool
	initialDelay time.Duration
	idle         time.Duration
	stopTimeout  time.Duration
}

// HandlerOption configures one handler, timer or daemon.
type HandlerOption func(*handlerConfig)

// ID sets the handler's id (default: the function's name). Progress is
// kept under it, so renaming a handler restarts its bookkeeping.
func ID(id string) HandlerOption { return func(c *handlerConfig) { c.id = id } }

// Retries limits failed attempts before the handler is marked failed.
func Retries(n int) HandlerOption { return func(c *handlerConfig) { c.retries = n } }

// Timeout limits the total time of a handler in a flow, retries included;
// each attempt's context ends at that deadline too.
func Timeout(d time.Duration) HandlerOption { return func(c *handlerConfig) { c.timeout = d } }

// Backoff sets the retry delays of plain errors.
func Backoff(b BackoffPolicy) HandlerOption { return func(c *handlerConfig) { c.backoff = b } }

// Optional marks a delete handler that must not block deletion: it adds no
// finalizer and runs, best effort, when the deletion is seen.
func Optional() HandlerOption { return func(c *handlerConfig) { c.optional = true } }

// InitialDelay delays a timer's first run or a daemon's start.
func InitialDelay(d time.Duration) HandlerOption {
	return func(c *handlerConfig) { c.initialDelay = d }
}

// Idle makes a timer run only once the object has been unchanged that long.
func Idle(d time.Duration) HandlerOption { return func(c *handlerConfig) { c.idle = d } }

// StopTimeout is how long a stopping daemon may take to return after its
// context is cancelled before it is abandoned with a warning (default 10s).
func StopTimeout(d time.Duration) HandlerOption { return func(c *handlerConfig) { c.stopTimeout = d } }

func newConfig(fn any, opts []HandlerOption) handlerConfig {
	c := handlerConfig{id: funcName(fn), backoff: DefaultBackoff, stopTimeout: 10 * time.Second}
	for _, o := range opts {
		o(&c)
	}
	return c
}

// funcName is a function's name without its package: "createThing", a
// method value "Thing.create" (also for pointer receivers); a closure
// gets its compiler name ("register.func1"), so give closures an ID.
func funcName(fn any) string {
	name := runtime.FuncForPC(reflect.ValueOf(fn).Pointer()).Name()
	name = strings.TrimSuffix(name, "-fm")
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.Index(name, "."); i >= 0 {
		name = name[i+1:]
	}
	return strings.NewReplacer("(*", "", ")", "").Replace(name)
}
