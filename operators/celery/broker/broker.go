package broker

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Backlog is the work waiting in one queue.
type Backlog struct {
	// Ready messages wait for a worker.
	Ready int64
	// Unacked messages were delivered to a worker that has not
	// acknowledged them (prefetched, or running with acks_late).
	Unacked int64
	// UnackedKnown is false when the broker mode cannot see Unacked
	// (RabbitMQ without a management API URL).
	UnackedKnown bool
	// Err is an error of this queue alone (a Redis key of the wrong
	// type, a queue the broker refused): its pool keeps its count, the
	// others go on.
	Err error
}

// Total is all the work in the queue: what the autoscaler scales on.
func (b Backlog) Total() int64 { return b.Ready + b.Unacked }

// Prober reads backlogs from one broker. It is safe for concurrent use.
type Prober interface {
	// Backlog returns the backlog of each queue.
	// An error is the broker's (it did not answer); an error of one
	// queue is in its Backlog.
	Backlog(ctx context.Context, queues []string) (map[string]Backlog, error)
	// Workers returns the workers heard from, listening for their
	// heartbeats from the first call on; ErrHeartbeatsUnknown (wrapped)
	// while some may be missing.
	Workers() ([]Worker, error)
	Close() error
}

// Options tune a Prober.
type Options struct {
	// ManagementURL is RabbitMQ's management API
	// (http://user:pass@host:15672), for unacknowledged counts.
	ManagementURL string
	// KeyPrefix and UnackedKey are kombu's global_keyprefix and
	// unacked_key (Redis broker_transport_options); they must be the
	// app's, or queues read as empty.
	KeyPrefix, UnackedKey string
}

// Open returns the Prober for a Celery broker URL.
func Open(brokerURL string, opts Options) (Prober, error) {
	u, err := Parse(brokerURL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "redis", "rediss":
		return openRedis(u, opts)
	default:
		return openAMQP(u, opts.ManagementURL)
	}
}

// Parse checks a Celery broker URL without connecting: a URL with a host
// and a scheme this package reads. The URL comes from a Secret, so its
// errors say what is wrong with its shape and never repeat any of it
// (not even the scheme: "token:abc" parses as scheme "token").
func Parse(brokerURL string) (*url.URL, error) {
	u, err := url.Parse(brokerURL)
	if err != nil {
		// url's error repeats the input, password and all.
		return nil, fmt.Errorf("broker URL is not a URL")
	}
	switch u.Scheme {
	case "redis", "rediss", "amqp", "amqps", "pyamqp":
	case "":
		return nil, fmt.Errorf("broker URL has no scheme: want redis://, rediss://, amqp:// or amqps://")
	default:
		return nil, fmt.Errorf("broker URL has a scheme the autoscaler cannot read: want redis, rediss, amqp or amqps")
	}
	if u.Host == "" {
		return nil, fmt.Errorf("broker URL has no host")
	}
	if u.Scheme == "redis" || u.Scheme == "rediss" {
		// What the autoscaler's client refuses (an option it does not
		// know) is refused here, at admission, not found by every poll.
		if _, err := redis.ParseURL(brokerURL); err != nil {
			return nil, fmt.Errorf("broker URL: the Redis client cannot read it: %w", redactErr(err, u))
		}
	}
	return u, nil
}

// ParseManagement checks a RabbitMQ management API URL without
// connecting; like Parse, its errors repeat nothing of the URL.
func ParseManagement(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("management URL is not a URL")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("management URL is not of the form http(s)://user:password@host:port")
	}
	return nil
}

// Redact returns a URL with its user name and password replaced, for
// errors, logs, status and Events.
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparseable URL>"
	}
	return redacted(u)
}

// redacted is u with its user information and the values of its query
// replaced: a user name can be a token as much as a password can
// (redis://TOKEN@host), and clients take passwords as query parameters
// too (?password=...).
func redacted(u *url.URL) string {
	c := *u
	if c.User != nil {
		name := c.User.Username()
		if name != "" {
			name = "xxxxx"
		}
		if _, ok := c.User.Password(); ok {
			c.User = url.UserPassword(name, "xxxxx")
		} else {
			c.User = url.User(name)
		}
	}
	if c.RawQuery != "" {
		q := c.Query()
		for k := range q {
			q[k] = []string{"xxxxx"}
		}
		c.RawQuery = q.Encode()
	}
	c.Fragment, c.RawFragment = "", ""
	return c.String()
}

// secretParts are the parts of u that may be secret: user name,
// password, query values and fragment.
func secretParts(u *url.URL) []string {
	var out []string
	if name := u.User.Username(); name != "" {
		out = append(out, name)
	}
	if p, ok := u.User.Password(); ok && p != "" {
		out = append(out, p)
	}
	for _, vs := range u.Query() {
		for _, v := range vs {
			if v != "" {
				out = append(out, v, url.QueryEscape(v))
			}
		}
	}
	if u.Fragment != "" {
		out = append(out, u.Fragment)
	}
	return out
}

// redactErr replaces the secret parts of the broker URL wherever a
// client library repeated them in an error.
func redactErr(err error, u *url.URL) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range secretParts(u) {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	if msg == err.Error() {
		return err
	}
	return fmt.Errorf("%s", msg)
}
