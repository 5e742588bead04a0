// Command setpoint-postgres-agent is the agent of PostgresCluster instance
// pods (package operators/postgres/agent): each pod's init container
// copies it from Setpoint's image, and it runs as the pod's PID 1. It is a
// binary of its own, not a command of setpoint, because it runs in every
// database pod: without the operators, their schemes and the library it
// takes about a third less memory (docs/benchmarks.md, agent RSS).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/setpoint-dev/setpoint/internal/logging"
)

func main() {
	// SIGTERM (the kubelet stopping the pod) cancels the context: the
	// agent then stops postgres fast and exits.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "setpoint-postgres-agent",
		Short:         "The instance manager of PostgresCluster pods (run by the operator's pods, not by hand)",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var lf logging.Flags
	lf.Register(root.PersistentFlags())
	root.PersistentPreRunE = func(*cobra.Command, []string) error { return lf.Setup() }
	root.AddCommand(newRunCommand(), newInstallCommand())
	return root
}
