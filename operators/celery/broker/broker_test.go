package broker_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/setpoint-dev/setpoint/operators/celery/broker"
	"github.com/setpoint-dev/setpoint/testkit"
	"github.com/setpoint-dev/setpoint/testkit/brokers"
)

// One real redis-server and one real rabbitmq-server for the package.
var (
	redis  *brokers.Redis
	rabbit *brokers.RabbitMQ
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "setpoint-brokers-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if redis, err = brokers.StartRedis(dir); err != nil {
		fmt.Fprintln(os.Stderr, "redis:", err)
		return 1
	}
	defer redis.Stop()
	if rabbit, err = brokers.StartRabbitMQ(); err != nil {
		fmt.Fprintln(os.Stderr, "rabbitmq:", err)
		return 1
	}
	defer rabbit.Stop()
	return m.Run()
}

func open(t testing.TB, url string, opts broker.Options) broker.Prober {
	t.Helper()
	p, err := broker.Open(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// queueSeq numbers the queues the tests use: the brokers live as long
// as the test binary, so under go test -count=N a fixed name would meet
// what an earlier run left in it (messages sent, a killed worker's task
// given back).
var queueSeq atomic.Int64

// queue is a name for a queue of this test only, from base.
func queue(base string) string { return fmt.Sprintf("%s-%d", base, queueSeq.Add(1)) }

func send(t *testing.T, url, queue string, n, priority int, args ...any) {
	t.Helper()
	if err := brokers.SendTasks(url, queue, "tasks.sleep", n, priority, args...); err != nil {
		t.Fatal(err)
	}
}

// waitBacklog polls until the queue's backlog satisfies ok.
func waitBacklog(t *testing.T, p broker.Prober, queue string, ok func(broker.Backlog) error) broker.Backlog {
	t.Helper()
	var last broker.Backlog
	testkit.Eventually(t, 60*time.Second, func() error {
		got, err := p.Backlog(context.Background(), []string{queue})
		if err != nil {
			return err
		}
		last = got[queue]
		if err := ok(last); err != nil {
			return fmt.Errorf("%s: %+v: %w", queue, last, err)
		}
		return nil
	})
	return last
}

func TestRedisCountsEveryPriorityList(t *testing.T) {
	p := open(t, redis.URL, broker.Options{})
	plain, other, unused := queue("plain"), queue("other"), queue("never-used")
	send(t, redis.URL, plain, 5, -1, 1)
	send(t, redis.URL, plain, 3, 5, 1) // kombu puts priority 5 in its own list
	send(t, redis.URL, plain, 2, 9, 1)
	send(t, redis.URL, other, 2, -1, 1)
	got, err := p.Backlog(context.Background(), []string{plain, other, unused})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]broker.Backlog{
		plain:  {Ready: 10, UnackedKnown: true},
		other:  {Ready: 2, UnackedKnown: true},
		unused: {UnackedKnown: true},
	}
	for q, w := range want {
		if got[q] != w {
			t.Errorf("%s: %+v, want %+v", q, got[q], w)
		}
	}
}

// TestRedisCountsReservedMessages: a worker with acks_late and prefetch
// takes messages out of the list; they still count, from kombu's unacked
// hash.
func TestRedisCountsReservedMessages(t *testing.T) {
	p := open(t, redis.URL, broker.Options{})
	busy := queue("busy")
	w, err := brokers.StartWorker(t.TempDir(), redis.URL, busy, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	send(t, redis.URL, busy, 10, -1, 60)
	waitBacklog(t, p, busy, func(b broker.Backlog) error {
		if b.Unacked == 0 || b.Total() != 10 {
			return fmt.Errorf("want 10 in all with some reserved by the worker")
		}
		return nil
	})
}

func TestRabbitMQReadyCount(t *testing.T) {
	p := open(t, rabbit.URL, broker.Options{})
	plain, undeclared := queue("aplain"), queue("never-declared")
	send(t, rabbit.URL, plain, 7, -1, 1)
	got, err := p.Backlog(context.Background(), []string{plain, undeclared})
	if err != nil {
		t.Fatal(err)
	}
	if got[plain] != (broker.Backlog{Ready: 7}) || got[undeclared] != (broker.Backlog{}) {
		t.Errorf("backlog %+v, want aplain 7 ready (unacked unknown) and never-declared empty", got)
	}
}

// TestRabbitMQUnackedFromManagement: AMQP alone sees only ready
// messages; the management API adds those a prefetching worker holds.
func TestRabbitMQUnackedFromManagement(t *testing.T) {
	amqpOnly := open(t, rabbit.URL, broker.Options{})
	withAPI := open(t, rabbit.URL, broker.Options{ManagementURL: rabbit.ManagementURL})
	busy := queue("abusy")
	w, err := brokers.StartWorker(t.TempDir(), rabbit.URL, busy, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	send(t, rabbit.URL, busy, 10, -1, 60)
	// The management API's statistics lag by up to 5 s.
	waitBacklog(t, withAPI, busy, func(b broker.Backlog) error {
		if !b.UnackedKnown || b.Unacked == 0 || b.Total() != 10 {
			return fmt.Errorf("want 10 in all with some unacknowledged")
		}
		return nil
	})
	b := waitBacklog(t, amqpOnly, busy, func(b broker.Backlog) error {
		if b.UnackedKnown || b.Ready >= 10 {
			return fmt.Errorf("want only the ready messages, unacked unknown")
		}
		return nil
	})
	if b.Ready == 0 {
		t.Errorf("no ready messages seen over AMQP: %+v", b)
	}
}

// TestErrorsHideThePassword: the errors of real clients that cannot
// connect name the broker but not its password.
func TestErrorsHideThePassword(t *testing.T) {
	for _, url := range []string{
		"redis://user:s3cret-pw@127.0.0.1:1/0",
		"amqp://user:s3cret-pw@127.0.0.1:1//",
		"kafka://user:s3cret-pw@127.0.0.1:1",
	} {
		p, err := broker.Open(url, broker.Options{})
		if err == nil {
			_, err = p.Backlog(context.Background(), []string{"q"})
			_ = p.Close()
		}
		if err == nil {
			t.Errorf("%s: no error from a broker that is not there", broker.Redact(url))
			continue
		}
		if strings.Contains(err.Error(), "s3cret-pw") {
			t.Errorf("error shows the password: %v", err)
		}
		// A URL the autoscaler can read is named, without its user
		// information; one it cannot read is not repeated at all.
		if strings.HasPrefix(url, "kafka:") {
			if strings.Contains(err.Error(), "kafka") || strings.Contains(err.Error(), "127.0.0.1") {
				t.Errorf("error repeats the URL it cannot read: %v", err)
			}
		} else if !strings.Contains(err.Error(), "127.0.0.1") {
			t.Errorf("error does not say which broker: %v", err)
		}
	}
}
