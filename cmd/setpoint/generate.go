package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/setpoint-dev/setpoint/manifests"
)

func newGenerateCommand() *cobra.Command {
	var (
		o   manifests.Options
		dir string
	)
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Write the install YAML of an operator built with Setpoint, from its code",
		Long: `generate writes what installs an operator built with the Setpoint library:
CRDs from the Go types in --paths, a ClusterRole from their
+kubebuilder:rbac markers, the permissions the library itself needs (Events,
the leader-election Lease, the webhook certificate and configurations), a
ServiceAccount bound to them, and a hardened Deployment with Services for
metrics (and webhooks, with --webhook-port).

It prints a YAML stream for kubectl apply -f -, or with --output-dir writes
a kustomize directory (kubectl apply -k DIR).

  setpoint generate --name greeter --image example.com/greeter:1 --paths ./examples/greeter | kubectl apply -f -`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			objs, err := manifests.Generate(o)
			if err != nil {
				return err
			}
			if dir != "" {
				if err := manifests.WriteDir(dir, objs); err != nil {
					return fmt.Errorf("write %s: %w", dir, err)
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "Wrote %d objects to %s: kubectl apply -k %s\n", len(objs), dir, dir)
				return nil
			}
			return manifests.Write(cmd.OutOrStdout(), objs)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Name, "name", "", "the operator's name: its ServiceAccount, roles and Deployment (required)")
	fs.StringVar(&o.Image, "image", "", "the operator's container image (required)")
	fs.StringVarP(&o.Namespace, "namespace", "n", "", "namespace the operator runs in (default <name>-system)")
	fs.StringSliceVar(&o.Paths, "paths", []string{"./..."}, "Go packages with the API types and +kubebuilder:rbac markers")
	fs.StringArrayVar(&o.Args, "arg", nil, "an argument of the operator's binary (repeatable)")
	fs.Int32Var(&o.Replicas, "replicas", 1, "replicas of the Deployment (more than one needs leader election in the operator)")
	fs.Int32Var(&o.MetricsPort, "metrics-port", 8080, "port of the binary's /metrics (operator.Options.MetricsAddr)")
	fs.Int32Var(&o.ProbePort, "probe-port", 8081, "port of the binary's /healthz and /readyz (operator.Options.ProbeAddr)")
	fs.Int32Var(&o.WebhookPort, "webhook-port", 0, "port of the binary's admission webhooks (operator.Options.Webhooks.Port); 0: none")
	fs.StringArrayVar(&o.WatchNamespaces, "watch-namespace", nil, "a namespace the operator acts in (repeatable): its rules on namespaced resources become Roles there, and only cluster-scoped rules stay a ClusterRole (pass the binary's own flag with --arg); default: cluster-wide")
	fs.StringVarP(&dir, "output-dir", "o", "", "write a kustomize directory here instead of printing")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("image")
	return cmd
}
