// Command setpoint runs Setpoint's built-in operators: on a local control
// plane it starts itself (`setpoint dev`) or against any cluster
// (`setpoint run`).
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
	// The first SIGINT or SIGTERM cancels the context and everything winds
	// down in order; NotifyContext then restores the default action, so a
	// second Ctrl-C ends the process at once (children die with it through
	// their parent-death signal).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "setpoint",
		Short:         "Kubernetes operators made easy: run Setpoint's operators locally or on a cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var lf logging.Flags
	lf.Register(root.PersistentFlags())
	root.PersistentPreRunE = func(*cobra.Command, []string) error { return lf.Setup() }
	root.AddCommand(newDevCommand(), newRunCommand(), newGenerateCommand(), newVersionCommand(), newProcessNodesCommand())
	return root
}
