package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Celery's Redis transport (kombu) keeps the messages of priority p > 0
// of queue q in the list q + prioritySep + p, and the messages reserved
// by workers in one hash for all queues (DefaultUnackedKey, unless the
// app's broker_transport_options say otherwise).
const (
	prioritySep       = "\x06\x16"
	DefaultUnackedKey = "unacked"
)

// go-redis logs dial failures through the standard logger on its own;
// Setpoint reports them once, as errors, with the password hidden.
func init() { redis.SetLogger(quiet{}) }

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

type redisProber struct {
	c    *redis.Client
	u    *url.URL
	db   int
	opts Options
	*heartbeats

	// The last count of the unacked hash by queue, reused while the
	// hash's length and the queues asked for are the same, for at most
	// unackedRecount: counting costs Redis about as much CPU as HVALS
	// (6 ms per 1,000 entries), a length nothing.
	mu      sync.Mutex
	counted struct {
		length int64
		queues string
		at     time.Time
		counts []int64
	}
}

// unackedRecount bounds how long a count of the unacked hash is reused
// while its length stays the same (an entry acknowledged and another
// reserved in between moves a message between queues unseen).
const unackedRecount = 10 * time.Second

func openRedis(u *url.URL, o Options) (*redisProber, error) {
	opts, err := redis.ParseURL(u.String())
	if err != nil {
		return nil, fmt.Errorf("broker URL %s: %w", redacted(u), redactErr(err, u))
	}
	// Calls end at their context's deadline, not only at the client's
	// read timeout.
	opts.ContextTimeoutEnabled = true
	// RESP2: go-redis's RESP3 push handling reads a subscription with no
	// deadline (v9.23), so a quiet one could neither be pinged nor
	// closed.
	opts.Protocol = 2
	if o.UnackedKey == "" {
		o.UnackedKey = DefaultUnackedKey
	}
	r := &redisProber{c: redis.NewClient(opts), u: u, db: opts.DB, opts: o}
	r.heartbeats = newHeartbeats(r.listen)
	return r, nil
}

func (r *redisProber) Close() error {
	r.heartbeats.stop()
	return r.c.Close()
}

// countUnacked counts the entries of kombu's unacked hash by queue inside
// Redis, so no message body crosses the network: an entry is the JSON
// [message, exchange, routing_key], and Celery routes a task to queue q
// with routing key q, so the queue is the last JSON string of the entry.
// Only an entry's tail is looked at (a routing key is at most 255 bytes),
// and the hash is walked with HSCAN, a page at a time.
var countUnacked = redis.NewScript(`
local want = {}
for i, q in ipairs(ARGV) do want[q] = 0 end
local cursor = "0"
repeat
  local page = redis.call("HSCAN", KEYS[1], cursor, "COUNT", 1000)
  cursor = page[1]
  local kv = page[2]
  for i = 2, #kv, 2 do
    local key = string.match(kv[i], ', "([^"]*)"%]$', -300)
    if key and want[key] then want[key] = want[key] + 1 end
  end
until cursor == "0"
local out = {}
for i, q in ipairs(ARGV) do out[i] = want[q] end
return out
`)

// Backlog reads every list length and the unacked hash's length in one
// pipeline, then counts the hash by queue if it changed. A key of the
// wrong type (or any other error of one queue's commands) is that
// queue's error; only a broker that does not answer is an error of the
// whole call.
func (r *redisProber) Backlog(ctx context.Context, queues []string) (map[string]Backlog, error) {
	pipe := r.c.Pipeline()
	lens := make(map[string][]*redis.IntCmd, len(queues))
	for _, q := range queues {
		cmds := []*redis.IntCmd{pipe.LLen(ctx, r.opts.KeyPrefix+q)}
		for p := 1; p <= 9; p++ {
			cmds = append(cmds, pipe.LLen(ctx, r.opts.KeyPrefix+q+prioritySep+strconv.Itoa(p)))
		}
		lens[q] = cmds
	}
	hlen := pipe.HLen(ctx, r.opts.KeyPrefix+r.opts.UnackedKey)
	if _, err := pipe.Exec(ctx); err != nil && !isReply(err) {
		return nil, fmt.Errorf("read backlog from %s: %w", redacted(r.u), redactErr(err, r.u))
	}
	counts, uerr := r.unacked(ctx, queues, hlen)
	out := make(map[string]Backlog, len(queues))
	for i, q := range queues {
		b := Backlog{UnackedKnown: uerr == nil}
		for _, c := range lens[q] {
			if err := c.Err(); err != nil {
				b.Err = fmt.Errorf("queue %s: %s: %w", q, c.Args()[1], err)
				break
			}
			b.Ready += c.Val()
		}
		switch {
		case b.Err != nil:
		case uerr != nil:
			b.Err = fmt.Errorf("queue %s: unacked hash %s: %w", q, r.opts.KeyPrefix+r.opts.UnackedKey, uerr)
		case i < len(counts):
			b.Unacked = counts[i]
		}
		out[q] = b
	}
	return out, nil
}

// unacked counts the unacked hash by queue, or reuses the last count.
func (r *redisProber) unacked(ctx context.Context, queues []string, hlen *redis.IntCmd) ([]int64, error) {
	if err := hlen.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	key := strings.Join(queues, "\x00")
	last := &r.counted
	now := time.Now()
	if last.counts != nil && last.length == hlen.Val() && last.queues == key && now.Sub(last.at) < unackedRecount {
		return last.counts, nil
	}
	if hlen.Val() == 0 {
		last.counts = make([]int64, len(queues))
	} else {
		counts, err := countUnacked.Run(ctx, r.c, []string{r.opts.KeyPrefix + r.opts.UnackedKey}, jsonInner(queues)...).Int64Slice()
		if err != nil {
			return nil, err
		}
		last.counts = counts
	}
	last.length, last.queues, last.at = hlen.Val(), key, now
	return last.counts, nil
}

// isReply is an error Redis answered with (WRONGTYPE, NOSCRIPT, ...), as
// opposed to a connection that failed.
func isReply(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && err != redis.Nil
}

// jsonInner is each name as it appears between the quotes of a JSON
// string, the form the unacked entries store it in.
func jsonInner(names []string) []any {
	out := make([]any, len(names))
	for i, n := range names {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // Python's json.dumps leaves <, > and & alone
		_ = enc.Encode(n)
		out[i] = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(b.String()), `"`), `"`)
	}
	return out
}

// listen follows the workers' events. kombu publishes a fanout message
// of exchange e with routing key k on the channel
// <global_keyprefix>/<db>.e/k (fanout_prefix and fanout_patterns, on by
// default since Celery 4); Celery's events go to the exchange celeryev.
func (r *redisProber) listen(ctx context.Context, h *heartbeats) {
	prefix := fmt.Sprintf("%s/%d.celeryev/", r.opts.KeyPrefix, r.db)
	channels := []string{prefix + "worker.heartbeat", prefix + "worker.online", prefix + "worker.offline"}
	for ctx.Err() == nil {
		ps := r.c.Subscribe(ctx, channels...)
		stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
		err := r.receive(ctx, ps, h, len(channels))
		stop()
		_ = ps.Close()
		if ctx.Err() != nil {
			return
		}
		h.down(fmt.Errorf("subscribe to worker events on %s: %w", redacted(r.u), redactErr(err, r.u)))
		sleepCtx(ctx, retryDelay)
	}
}

// receive reads events until the subscription fails; a quiet one is
// pinged, so a dead connection is found within seconds.
func (r *redisProber) receive(ctx context.Context, ps *redis.PubSub, h *heartbeats, channels int) error {
	for {
		m, err := ps.ReceiveTimeout(ctx, 3*time.Second)
		var ne net.Error
		switch {
		case err != nil && errors.As(err, &ne) && ne.Timeout():
			if err := ps.Ping(ctx); err != nil {
				return err
			}
			continue
		case err != nil:
			return err
		}
		switch m := m.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Count == channels {
				h.up()
			}
		case *redis.Message:
			h.event(kombuBody([]byte(m.Payload)))
		}
	}
}
