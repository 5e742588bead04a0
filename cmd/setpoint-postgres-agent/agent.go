package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	postgresv1alpha1 "github.com/setpoint-dev/setpoint/api/postgres/v1alpha1"
	"github.com/setpoint-dev/setpoint/operators/postgres/agent"
)

// newRunCommand runs the agent: postgres as its child, as the cluster's
// status says.
func newRunCommand() *cobra.Command {
	cfg := agent.Config{}
	run := &cobra.Command{
		Use:   "run",
		Short: "Run postgres in this pod as the cluster's status says",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env := func(name string) string { return os.Getenv(name) }
			cfg.Cluster, cfg.Instance, cfg.Namespace = env("CLUSTER_NAME"), env("POD_NAME"), env("NAMESPACE")
			cfg.DataDir, cfg.Database, cfg.Owner = env("PGDATA"), env("APP_DATABASE"), env("APP_OWNER")
			if cfg.Cluster == "" || cfg.Instance == "" || cfg.Namespace == "" || cfg.DataDir == "" {
				return fmt.Errorf("CLUSTER_NAME, POD_NAME, NAMESPACE and PGDATA must be set")
			}
			cfg.Log = ctrllog.Log.WithName("postgres-agent")
			rc, err := rest.InClusterConfig()
			if err != nil {
				return fmt.Errorf("in-cluster config: %w", err)
			}
			// The agent's client reads its PostgresCluster only: a scheme
			// of every built-in kind would be memory in every pod.
			scheme := runtime.NewScheme()
			if err := postgresv1alpha1.AddToScheme(scheme); err != nil {
				return err
			}
			c, err := client.NewWithWatch(rc, client.Options{Scheme: scheme})
			if err != nil {
				return fmt.Errorf("client: %w", err)
			}
			return agent.Run(cmd.Context(), cfg, rc, c)
		},
	}
	fs := run.Flags()
	fs.StringVar(&cfg.RunDir, "run-dir", "/controller/run", "directory of the unix socket and the password file")
	fs.StringVar(&cfg.HTTPAddr, "http-address", ":8000", "address of /healthz, /readyz and /status")
	fs.DurationVar(&cfg.LeaseDuration, "lease-duration", agent.DefaultLeaseDuration, "duration of the primary Lease")
	fs.DurationVar(&cfg.RenewDeadline, "renew-deadline", agent.DefaultRenewDeadline, "a primary that cannot renew its Lease for this long stops postgres")
	fs.DurationVar(&cfg.RetryPeriod, "retry-period", agent.DefaultRetryPeriod, "how often the Lease is renewed or tried")
	fs.DurationVar(&cfg.Interval, "interval", time.Second, "how often the agent looks at postgres and the cluster")
	return run
}

// newInstallCommand is the init container of an instance pod.
func newInstallCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "install DIR",
		Short: "Copy this binary to DIR/" + agent.Binary + " (the init container of an instance pod)",
		Args:  cobra.ExactArgs(1),
		RunE:  func(_ *cobra.Command, args []string) error { return installSelf(args[0]) },
	}
}

// installSelf copies the running binary into dir, for a container of
// another image (PostgreSQL's) to run.
func installSelf(dir string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(self)
	if err != nil {
		return err
	}
	defer in.Close()
	dst := filepath.Join(dir, agent.Binary)
	out, err := os.OpenFile(dst+".tmp", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return fmt.Errorf("install the agent: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("install the agent: %w", err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}
