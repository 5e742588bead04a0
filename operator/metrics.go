package operator

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Prometheus metrics per handler, served on the manager's /metrics next to
// controller-runtime's own (work queue depth, reconcile times, ...).
var (
	handlerCalls = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "setpoint_handler_calls_total",
		Help: "Handler invocations, by kind, handler and result (success, retry, failure).",
	}, []string{"operator", "kind", "handler", "result"})
	handlerErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "setpoint_handler_errors_total",
		Help: "Handler invocations that returned an error or panicked.",
	}, []string{"operator", "kind", "handler"})
	handlerRetries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "setpoint_handler_retries_total",
		Help: "Retries scheduled for handlers.",
	}, []string{"operator", "kind", "handler"})
	handlerDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "setpoint_handler_duration_seconds",
		Help:    "Time spent in handlers.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	}, []string{"operator", "kind", "handler"})
)

func init() {
	metrics.Registry.MustRegister(handlerCalls, handlerErrors, handlerRetries, handlerDuration)
}
