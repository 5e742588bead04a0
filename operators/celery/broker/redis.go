package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Celery's Redis transport (kombu) keeps the messages of priority p > 0
// of queue q in the list q + prioritySep + p, and the messages reserved
// by workers in one hash for all queues.
const (
	prioritySep = "\x06\x16"
	unackedKey  = "unacked"
)

// go-redis logs dial failures through the standard logger on its own;
// Setpoint reports them once, as errors, with the password hidden.
func init() { redis.SetLogger(quiet{}) }

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

type redisProber struct {
	c *redis.Client
	u *url.URL
}

func openRedis(u *url.URL) (*redisProber, error) {
	opts, err := redis.ParseURL(u.String())
	if err != nil {
		return nil, fmt.Errorf("broker URL %s: %w", redacted(u), redactErr(err, u))
	}
	return &redisProber{c: redis.NewClient(opts), u: u}, nil
}

func (r *redisProber) Close() error { return r.c.Close() }

// Backlog reads every list length in one pipeline, then counts the
// unacked hash's entries by queue.
func (r *redisProber) Backlog(ctx context.Context, queues []string) (map[string]Backlog, error) {
	pipe := r.c.Pipeline()
	lens := make(map[string][]*redis.IntCmd, len(queues))
	for _, q := range queues {
		cmds := []*redis.IntCmd{pipe.LLen(ctx, q)}
		for p := 1; p <= 9; p++ {
			cmds = append(cmds, pipe.LLen(ctx, q+prioritySep+strconv.Itoa(p)))
		}
		lens[q] = cmds
	}
	unacked := pipe.HVals(ctx, unackedKey)
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("read backlog from %s: %w", redacted(r.u), redactErr(err, r.u))
	}
	out := make(map[string]Backlog, len(queues))
	for q, cmds := range lens {
		b := Backlog{UnackedKnown: true}
		for _, c := range cmds {
			b.Ready += c.Val()
		}
		out[q] = b
	}
	for _, v := range unacked.Val() {
		q, ok := unackedQueue(v)
		if !ok {
			continue
		}
		if b, ok := out[q]; ok {
			b.Unacked++
			out[q] = b
		}
	}
	return out, nil
}

// unackedQueue is the queue of an entry of the unacked hash: kombu stores
// [message, exchange, routing_key], and Celery routes a task to queue q
// with routing key q.
func unackedQueue(v string) (string, bool) {
	var entry []json.RawMessage
	if err := json.Unmarshal([]byte(v), &entry); err != nil || len(entry) < 3 {
		return "", false
	}
	var key string
	if err := json.Unmarshal(entry[2], &key); err != nil {
		return "", false
	}
	return key, true
}
