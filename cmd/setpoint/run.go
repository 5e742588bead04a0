package main

import (
	"errors"
	"fmt"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/setpoint-dev/setpoint/operator"
)

func newRunCommand() *cobra.Command {
	var (
		o           hostOptions
		w           webhookFlags
		kubeconfig  string
		kubecontext string
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the operators against the current cluster",
		Long: `run starts the built-in operators against the cluster of the current
kubeconfig (--kubeconfig, $KUBECONFIG or ~/.kube/config), or the in-cluster
configuration when run in a pod. It watches all namespaces unless
--namespace is given (repeatable). Run more than one replica with
--leader-elect: only the holder of the Lease handles objects.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Flags first: a bad one is reported whatever the cluster.
			var err error
			if o.webhooks, err = w.options(); err != nil {
				return err
			}
			cfg, err := loadConfig(kubeconfig, kubecontext)
			if err != nil {
				return err
			}
			return runOperators(cmd.Context(), cfg, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&kubeconfig, "kubeconfig", "", "path to a kubeconfig (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
	fs.StringVar(&kubecontext, "context", "", "kubeconfig context to use")
	fs.BoolVar(&o.leaderElect, "leader-elect", false, "elect a leader through a Lease, for running more than one replica")
	fs.StringVar(&o.leaderElectNS, "leader-election-namespace", "", "namespace of the install's Lease and digest key (default: the pod's namespace; outside a pod setpoint-system, created if missing, which is the kustomize install's: a stray run beside it is refused)")
	fs.DurationVar(&o.lease.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long a standby waits, after the leader's last renewal, before it takes the Lease")
	fs.DurationVar(&o.lease.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader tries to renew before it gives up leading (and stops writing)")
	fs.DurationVar(&o.lease.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "how often candidates try to take or renew the Lease")
	fs.BoolVar(&o.installCRDs, "install-crds", false, "apply Setpoint's CRDs before starting (needs permission to write CRDs)")
	fs.StringVar(&w.service, "webhook-service", "", "namespace/name of the Service in front of the operators' pods: serves the admission webhooks of App and CeleryCluster through it (default: no webhooks)")
	fs.IntVar(&w.port, "webhook-port", 9443, "port the admission webhook server listens on")
	fs.StringVar(&w.failurePolicy, "webhook-failure-policy", "Fail", "what the API server does when no replica answers: Fail (refuse the request, so nothing the checks would refuse gets in) or Ignore (let it through unchecked)")
	fs.StringVar(&w.certSecret, "webhook-cert-secret", "", "namespace/name of the Secret that keeps the webhooks' CA and serving certificate, shared by replicas (default: <service name>-cert in the Service's namespace)")
	o.register(fs, ":8080", ":8081", 50, 100)
	return cmd
}

// webhookFlags are run's admission webhook settings.
type webhookFlags struct {
	service, certSecret, failurePolicy string
	port                               int
}

func (w webhookFlags) options() (*operator.Webhooks, error) {
	if w.service == "" {
		if w.certSecret != "" {
			return nil, errors.New("--webhook-cert-secret needs --webhook-service")
		}
		return nil, nil
	}
	svc, err := namespacedName("--webhook-service", w.service)
	if err != nil {
		return nil, err
	}
	secret := types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name + "-cert"}
	if w.certSecret != "" {
		if secret, err = namespacedName("--webhook-cert-secret", w.certSecret); err != nil {
			return nil, err
		}
	}
	policy := admissionregistrationv1.FailurePolicyType(w.failurePolicy)
	if policy != admissionregistrationv1.Fail && policy != admissionregistrationv1.Ignore {
		return nil, fmt.Errorf("--webhook-failure-policy %q: want Fail or Ignore", w.failurePolicy)
	}
	return &operator.Webhooks{
		FailurePolicy: policy,
		Port:          w.port,
		Service:       &operator.WebhookService{Namespace: svc.Namespace, Name: svc.Name},
		CertSecret:    secret,
	}, nil
}

func namespacedName(flag, v string) (types.NamespacedName, error) {
	ns, name, ok := strings.Cut(v, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return types.NamespacedName{}, fmt.Errorf("%s %q: want namespace/name", flag, v)
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

func loadConfig(path, context string) (*rest.Config, error) {
	if path == "" {
		cfg, err := config.GetConfigWithContext(context)
		if err != nil {
			return nil, fmt.Errorf("find cluster configuration: %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: path},
		&clientcmd.ConfigOverrides{CurrentContext: context},
	).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}
