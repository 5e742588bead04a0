package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	celeryv1alpha1 "github.com/setpoint-dev/setpoint/api/celery/v1alpha1"
	crdmanifests "github.com/setpoint-dev/setpoint/config/crd"
	"github.com/setpoint-dev/setpoint/operator/crd"
	"github.com/setpoint-dev/setpoint/testkit"
	"github.com/setpoint-dev/setpoint/testkit/brokers"
)

var celeryTrials = flag.Int("celery-trials", 20, "scale-ups BenchmarkCelery times per broker")

type celeryBroker struct {
	Broker    string  `json:"broker"`
	Trials    int     `json:"trials"`
	P50Millis float64 `json:"p50Millis"`
	P99Millis float64 `json:"p99Millis"`
	MaxMillis float64 `json:"maxMillis"`
	// With 100 pools (5 clusters of 20, one queue each) polled at the
	// default interval: Redis commands per second (a cluster's poll is
	// one pipeline), or RabbitMQ channels opened per second (one passive
	// declare each).
	Load100Pools string `json:"load100Pools"`
}

// BenchmarkCelery measures, for Redis and RabbitMQ, the reaction time
// from a backlog appearing (the real Celery client has sent 10 tasks and
// exited) to the pool's Deployment getting more replicas, with the
// operator's default settings (backlog read every second), and the load
// the operator puts on each broker with 100 pools.
func BenchmarkCelery(b *testing.B) {
	env := testkit.Env(b)
	if err := crd.Install(b.Context(), env.Config, time.Minute, crdmanifests.MustGet(celeryv1alpha1.GroupVersion.Group, "celeryclusters")); err != nil {
		b.Fatal(err)
	}
	redis, err := brokers.StartRedis(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(redis.Stop)
	rabbit, err := brokers.StartRabbitMQ()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(rabbit.Stop)
	for range b.N {
		var results []celeryBroker
		for _, br := range []struct{ name, url string }{{"redis", redis.URL}, {"rabbitmq", rabbit.URL}} {
			ns := env.Namespace(b)
			op := startOperator(b, "setpoint", []string{"run", "--log-level", "error", "--operators", "celery"}, ns, clientQPS, clientBurst, workers)
			lat := celeryReactions(b, ns, br.url, *celeryTrials)
			r := celeryBroker{Broker: br.name, Trials: len(lat), P50Millis: percentile(lat, 0.5), P99Millis: percentile(lat, 0.99), MaxMillis: percentile(lat, 1)}
			if br.name == "redis" {
				r.Load100Pools = redisLoad(b, ns, redis.URL)
			} else {
				r.Load100Pools = rabbitLoad(b, ns, rabbit)
			}
			op.stop()
			results = append(results, r)
			b.ReportMetric(r.P99Millis, "p99-ms-"+br.name)
		}
		reportCelery(b, results)
	}
}

func celeryCluster(ns, name string, pools int) *celeryv1alpha1.CeleryCluster {
	cc := &celeryv1alpha1.CeleryCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: celeryv1alpha1.CeleryClusterSpec{
			Image: "example/tasks:1", App: "tasks",
			Broker: celeryv1alpha1.Broker{URLSecretRef: corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "broker"}, Key: "url"}},
		},
	}
	for i := range pools {
		cc.Spec.Pools = append(cc.Spec.Pools, celeryv1alpha1.Pool{
			Name: fmt.Sprintf("p%d", i), Queues: []string{fmt.Sprintf("%s-q%d", name, i)},
			MaxReplicas: 10, TargetBacklog: 5,
			// The benchmark times scale-ups; no window keeps trials short.
			ScaleDownWindow: &metav1.Duration{},
		})
	}
	return cc
}

// celeryReactions times trials scale-ups of one pool from 1 to 2 workers.
func celeryReactions(b *testing.B, ns, brokerURL string, trials int) []time.Duration {
	b.Helper()
	env := testkit.Env(b)
	if err := env.Client.Create(b.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "broker"},
		StringData: map[string]string{"url": brokerURL}}); err != nil {
		b.Fatal(err)
	}
	cc := celeryCluster(ns, "react", 1)
	if err := env.Client.Create(b.Context(), cc); err != nil {
		b.Fatal(err)
	}
	queue := cc.Spec.Pools[0].Queues[0]
	t := trackDeployments(b, ns, func(d *appsv1.Deployment) (string, string) {
		return d.Name, strconv.Itoa(int(*d.Spec.Replicas))
	})
	waitReplicas(b, ns, "react-p0", 1)
	var lat []time.Duration
	for range trials {
		if err := brokers.SendTasks(brokerURL, queue, "tasks.sleep", 10, -1, 1); err != nil {
			b.Fatal(err)
		}
		t.sent("react-p0", "2") // ceil(10 / 5)
		lat = append(lat, t.wait(b, time.Minute)...)
		purge(b, brokerURL, queue)
		waitReplicas(b, ns, "react-p0", 1)
	}
	return lat
}

func waitReplicas(b *testing.B, ns, name string, want int32) {
	b.Helper()
	testkit.Eventually(b, time.Minute, func() error {
		d := &appsv1.Deployment{}
		if err := testkit.Env(b).Client.Get(b.Context(), client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
			return err
		}
		if *d.Spec.Replicas != want {
			return fmt.Errorf("%s has %d replicas, want %d", name, *d.Spec.Replicas, want)
		}
		return nil
	})
}

// purge empties a queue.
func purge(b *testing.B, brokerURL, queue string) {
	b.Helper()
	if strings.HasPrefix(brokerURL, "redis") {
		if _, err := redisCommand(brokerURL, "DEL", queue); err != nil {
			b.Fatal(err)
		}
		return
	}
	conn, err := amqp.Dial(brokerURL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ch.QueuePurge(queue, false); err != nil {
		b.Fatal(err)
	}
}

// redisCommand sends one inline command and returns the reply's first line
// (and, for a bulk reply, its body).
func redisCommand(url string, args ...string) (string, error) {
	addr := strings.TrimPrefix(strings.Split(url, "/0")[0], "redis://")
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "%s\r\n", strings.Join(args, " ")); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "$") {
		return line, err
	}
	n, _ := strconv.Atoi(strings.TrimSpace(line[1:]))
	buf := make([]byte, n+2)
	_, err = io.ReadFull(r, buf)
	return string(buf), err
}

func redisStat(b *testing.B, url, field string) float64 {
	b.Helper()
	info, err := redisCommand(url, "INFO", "stats")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	b.Fatalf("redis INFO has no %s", field)
	return 0
}

// load100 creates 5 clusters of 20 pools in ns and waits until all are
// polled, then measures over 10 s.
func load100(b *testing.B, ns string, measure func() float64) float64 {
	b.Helper()
	env := testkit.Env(b)
	for i := range 5 {
		if err := env.Client.Create(b.Context(), celeryCluster(ns, fmt.Sprintf("load%d", i), 20)); err != nil {
			b.Fatal(err)
		}
	}
	testkit.Eventually(b, 2*time.Minute, func() error {
		var list celeryv1alpha1.CeleryClusterList
		if err := env.Client.List(b.Context(), &list, client.InNamespace(ns)); err != nil {
			return err
		}
		polled := 0
		for _, cc := range list.Items {
			polled += len(cc.Status.Pools)
		}
		if polled < 100 {
			return fmt.Errorf("%d of 100 pools polled", polled)
		}
		return nil
	})
	before, start := measure(), time.Now()
	<-time.After(10 * time.Second) // the measuring period itself, not synchronisation
	return (measure() - before) / time.Since(start).Seconds()
}

func redisLoad(b *testing.B, ns, url string) string {
	calls := load100(b, ns, func() float64 { return redisStat(b, url, "total_commands_processed") })
	return fmt.Sprintf("%.0f commands/s", calls)
}

func rabbitLoad(b *testing.B, ns string, r *brokers.RabbitMQ) string {
	channels := load100(b, ns, func() float64 {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, strings.Replace(r.ManagementURL, "guest:guest@", "", 1)+"/api/overview", nil)
		req.SetBasicAuth("guest", "guest")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		var o struct {
			Churn struct {
				Created float64 `json:"channel_created"`
			} `json:"churn_rates"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
			b.Fatal(err)
		}
		return o.Churn.Created
	})
	return fmt.Sprintf("%.0f channels (passive declares)/s on one connection per cluster", channels)
}

func reportCelery(b *testing.B, rs []celeryBroker) {
	var t strings.Builder
	fmt.Fprintf(&t, "CeleryCluster reaction time, backlog to more replicas (default poll 1 s)\n")
	fmt.Fprintf(&t, "  %-9s %7s %8s %8s %8s  %s\n", "broker", "trials", "p50 ms", "p99 ms", "max ms", "load with 100 pools")
	for _, r := range rs {
		fmt.Fprintf(&t, "  %-9s %7d %8.0f %8.0f %8.0f  %s\n", r.Broker, r.Trials, r.P50Millis, r.P99Millis, r.MaxMillis, r.Load100Pools)
	}
	fmt.Println(t.String())
	writeResult(b, "celery.json", rs)
}
