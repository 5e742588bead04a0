package broker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/setpoint-dev/setpoint/operators/celery/broker"
	"github.com/setpoint-dev/setpoint/testkit"
	"github.com/setpoint-dev/setpoint/testkit/brokers"
)

// TestRedisWrongTypeIsolatesItsQueue: a queue whose key holds a string
// is that queue's error; the other queues are still read.
func TestRedisWrongTypeIsolatesItsQueue(t *testing.T) {
	c := redisClient(t)
	broken, fine := queue("broken"), queue("fine")
	if err := c.Set(context.Background(), broken, "not a list", 0).Err(); err != nil {
		t.Fatal(err)
	}
	send(t, redis.URL, fine, 3, -1, 1)
	p := open(t, redis.URL, broker.Options{})
	got, err := p.Backlog(context.Background(), []string{broken, fine})
	if err != nil {
		t.Fatalf("a bad key failed the whole read: %v", err)
	}
	if e := got[broken].Err; e == nil || !strings.Contains(e.Error(), "WRONGTYPE") || !strings.Contains(e.Error(), broken) {
		t.Errorf("broken: %+v, want its WRONGTYPE error", got[broken])
	}
	if b := got[fine]; b.Err != nil || b.Ready != 3 || !b.UnackedKnown {
		t.Errorf("fine: %+v, want 3 ready", b)
	}
}

// TestRedisKeyPrefixAndUnackedKey: with kombu's global_keyprefix and a
// custom unacked key, the queues and reserved messages are found only
// where the options say (without them, everything reads as 0: scale to
// zero while work waits).
func TestRedisKeyPrefixAndUnackedKey(t *testing.T) {
	transport := map[string]any{"global_keyprefix": "tenant1:", "unacked_key": "tenant-unacked"}
	prefixed := queue("prefixed")
	w, err := brokers.StartWorkerWith(t.TempDir(), redis.URL, prefixed, brokers.WorkerOptions{Prefetch: 4, Transport: transport})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	if err := brokers.SendTasksWith(transport, redis.URL, prefixed, "tasks.sleep", 10, -1, 60); err != nil {
		t.Fatal(err)
	}
	p := open(t, redis.URL, broker.Options{KeyPrefix: "tenant1:", UnackedKey: "tenant-unacked"})
	waitBacklog(t, p, prefixed, func(b broker.Backlog) error {
		if b.Unacked == 0 || b.Total() != 10 {
			return fmt.Errorf("want 10 in all with some reserved by the worker")
		}
		return nil
	})
	plain := open(t, redis.URL, broker.Options{})
	got, err := plain.Backlog(context.Background(), []string{prefixed})
	if err != nil {
		t.Fatal(err)
	}
	if got[prefixed].Total() != 0 {
		t.Errorf("without the options the queue reads %+v: the test would not tell them apart", got[prefixed])
	}
}

// TestWorkersFromHeartbeats: a real worker's heartbeats give its running
// task count, on Redis and RabbitMQ; a worker killed goes silent, one
// stopped by its warm shutdown is gone.
func TestWorkersFromHeartbeats(t *testing.T) {
	for _, b := range []struct{ name, url, queue string }{{"redis", redis.URL, "hb"}, {"rabbitmq", rabbit.URL, "ahb"}} {
		t.Run(b.name, func(t *testing.T) {
			version, err := brokers.CeleryVersion()
			if err != nil {
				t.Fatal(err)
			}
			p := open(t, b.url, broker.Options{})
			if _, err := p.Workers(); !errors.Is(err, broker.ErrHeartbeatsUnknown) {
				t.Fatalf("first call: %v, want ErrHeartbeatsUnknown (nothing heard yet)", err)
			}
			start := func(host, queue string) *brokers.Worker {
				w, err := brokers.StartWorkerWith(t.TempDir(), b.url, queue, brokers.WorkerOptions{
					Prefetch: 1, Heartbeat: true, Hostname: host, Pool: "threads", Concurrency: 2})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(w.Stop)
				return w
			}
			q := queue(b.queue)
			host := "pool@" + b.name + "-1"
			w := start(host, q)
			waitWorker(t, p, host, func(w *broker.Worker) error {
				if w == nil || w.Active != 0 || w.Silent {
					return fmt.Errorf("want it idle")
				}
				if w.Version != version {
					return fmt.Errorf("version %q, want %q", w.Version, version)
				}
				return nil
			})
			send(t, b.url, q, 1, -1, 60)
			waitWorker(t, p, host, func(w *broker.Worker) error {
				if w == nil || w.Active != 1 || w.Silent {
					return fmt.Errorf("want one task running")
				}
				return nil
			})
			w.Stop()
			waitWorker(t, p, host, func(w *broker.Worker) error {
				if w == nil || !w.Silent {
					return fmt.Errorf("want it silent after it was killed")
				}
				return nil
			})
			host2 := "pool@" + b.name + "-2"
			// Another queue: RabbitMQ gives the killed worker's task
			// (acks_late) back, and a warm shutdown would wait for it.
			w2 := start(host2, q+"-2")
			waitWorker(t, p, host2, func(w *broker.Worker) error {
				if w == nil || w.Silent {
					return fmt.Errorf("want it heard")
				}
				return nil
			})
			w2.Shutdown()
			waitWorker(t, p, host2, func(w *broker.Worker) error {
				if w != nil {
					return fmt.Errorf("want it gone after its warm shutdown")
				}
				return nil
			})
		})
	}
}

func waitWorker(t *testing.T, p broker.Prober, host string, ok func(*broker.Worker) error) {
	t.Helper()
	testkit.Eventually(t, 60*time.Second, func() error {
		ws, err := p.Workers()
		if err != nil {
			return err
		}
		var found *broker.Worker
		for i := range ws {
			if ws[i].Hostname == host {
				found = &ws[i]
			}
		}
		if err := ok(found); err != nil {
			return fmt.Errorf("%s: %+v: %w (all: %+v)", host, found, err, ws)
		}
		return nil
	})
}

// TestAHungBrokerMeetsTheDeadline: a broker that stops answering (its
// connection frozen mid-stream) fails the read at the caller's deadline,
// rather than stalling the autoscaler; the next read reconnects.
func TestAHungBrokerMeetsTheDeadline(t *testing.T) {
	for _, b := range []struct{ name, url string }{{"redis", redis.URL}, {"rabbitmq", rabbit.URL}} {
		t.Run(b.name, func(t *testing.T) {
			proxy := newFreezer(t, b.url)
			p := open(t, proxy.url, broker.Options{})
			if _, err := p.Backlog(context.Background(), []string{"q1"}); err != nil {
				t.Fatal(err)
			}
			proxy.freeze(true)
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			done := make(chan error, 1)
			go func() {
				_, err := p.Backlog(ctx, []string{"q1"})
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("a frozen broker answered")
				}
				// Well before go-redis's own 3 s read timeout: the deadline
				// ended it, not the client's default.
				if took := time.Since(start); took > 2500*time.Millisecond {
					t.Errorf("failed only after %s, past its 500 ms deadline: %v", took, err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Backlog ignored its deadline: still blocked after 30 s")
			}
			proxy.freeze(false)
			testkit.Eventually(t, 30*time.Second, func() error {
				_, err := p.Backlog(context.Background(), []string{"q1"})
				return err
			})
		})
	}
}

func redisClient(t testing.TB) *goredis.Client {
	t.Helper()
	opts, err := goredis.ParseURL(redis.URL)
	if err != nil {
		t.Fatal(err)
	}
	c := goredis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// freezer is a TCP proxy to a real broker that can stop passing bytes,
// as a broker that hangs does.
type freezer struct {
	url    string
	frozen atomic.Bool
	mu     sync.Mutex
	thaw   chan struct{}
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	upstream := u.Host
	u.Host = l.Addr().String()
	f := &freezer{url: u.String(), thaw: make(chan struct{})}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go f.pipe(c, u)
			go f.pipe(u, c)
		}
	}()
	return f
}

func (f *freezer) freeze(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen.Store(on)
	if !on {
		close(f.thaw)
		f.thaw = make(chan struct{})
	}
}

func (f *freezer) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for f.frozen.Load() {
			f.mu.Lock()
			thaw := f.thaw
			f.mu.Unlock()
			if !f.frozen.Load() {
				break
			}
			<-thaw
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed connection
		}
	}
}
