package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
)

func newRunCommand() *cobra.Command {
	var (
		o           hostOptions
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
	fs.StringVar(&o.leaderElectNS, "leader-election-namespace", "", "namespace of the leader-election Lease (default: the pod's namespace)")
	fs.BoolVar(&o.installCRDs, "install-crds", false, "apply Setpoint's CRDs before starting (needs permission to write CRDs)")
	o.register(fs, ":8080", ":8081", 50, 100)
	return cmd
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
