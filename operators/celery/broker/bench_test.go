package broker_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/setpoint-dev/setpoint/operators/celery/broker"
	"github.com/setpoint-dev/setpoint/testkit"
	"github.com/setpoint-dev/setpoint/testkit/brokers"
)

// BenchmarkRedisUnacked10k: what one backlog read costs Redis with
// 10,000 messages reserved by a real worker (acks_late, prefetch 10,000):
// the unacked hash counted in a script (the prober) against HVALS, which
// copied every message body to the operator (the prober before). Redis
// CPU and bytes sent per read, from INFO.
func BenchmarkRedisUnacked10k(b *testing.B) {
	const n = 10_000
	ctx := context.Background()
	c := redisClient(b)
	p := open(b, redis.URL, broker.Options{})
	if got, _ := p.Backlog(ctx, []string{"bench10k"}); got["bench10k"].Unacked < n {
		if err := brokers.SendTasks(redis.URL, "bench10k", "tasks.sleep", n, -1, 3600); err != nil {
			b.Fatal(err)
		}
		// Threads: a solo worker's running task would stop it reserving.
		w, err := brokers.StartWorkerWith(b.TempDir(), redis.URL, "bench10k", brokers.WorkerOptions{Prefetch: n, Pool: "threads"})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(w.Stop)
		testkit.Eventually(b, 2*time.Minute, func() error {
			got, err := p.Backlog(ctx, []string{"bench10k"})
			if err != nil {
				return err
			}
			if got["bench10k"].Unacked != n {
				return fmt.Errorf("%d reserved", got["bench10k"].Unacked)
			}
			return nil
		})
	}
	hvals := func() error {
		vals, err := c.HVals(ctx, broker.DefaultUnackedKey).Result()
		if err == nil && len(vals) != n {
			err = fmt.Errorf("%d values", len(vals))
		}
		return err
	}
	read := func(p broker.Prober) error {
		got, err := p.Backlog(ctx, []string{"bench10k"})
		if err == nil && got["bench10k"].Unacked != n {
			err = fmt.Errorf("%+v", got["bench10k"])
		}
		return err
	}
	// A new prober counts the hash at its first read; one kept reuses its
	// count while the hash's length is the same (up to 10 s).
	counted := func() error {
		fresh, err := broker.Open(redis.URL, broker.Options{})
		if err != nil {
			return err
		}
		defer fresh.Close()
		return read(fresh)
	}
	steady := func() error { return read(p) }
	for _, m := range []struct {
		name string
		read func() error
	}{{"hvals-before", hvals}, {"counted-each-read", counted}, {"steady-reads", steady}} {
		b.Run(m.name, func(b *testing.B) {
			cpu0, out0 := redisInfo(b, c)
			for b.Loop() {
				if err := m.read(); err != nil {
					b.Fatal(err)
				}
			}
			cpu1, out1 := redisInfo(b, c)
			b.ReportMetric((cpu1-cpu0)*1000/float64(b.N), "redis-cpu-ms/op")
			b.ReportMetric(float64(out1-out0)/float64(b.N), "redis-bytes-out/op")
		})
	}
}

// redisInfo is the server's CPU seconds (user and system) and the bytes
// it has sent.
func redisInfo(b *testing.B, c *goredis.Client) (cpu float64, out int64) {
	info, err := c.Info(context.Background(), "cpu", "stats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		switch k {
		case "used_cpu_user", "used_cpu_sys":
			f, _ := strconv.ParseFloat(v, 64)
			cpu += f
		case "total_net_output_bytes":
			out, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return cpu, out
}
