package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/setpoint-dev/setpoint/controlplane/processnode"
)

// newProcessNodesCommand is what a plane started by an ordinary user runs
// in a user namespace of its own (processnode.InUserNamespace): the
// process nodes' runtime, until SIGTERM. Not for users: hidden.
func newProcessNodesCommand() *cobra.Command {
	var o processnode.Options
	var kubeconfig string
	cmd := &cobra.Command{
		Use:    "process-nodes",
		Short:  "Run the process nodes of a local control plane (started by setpoint dev and the test kit)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return fmt.Errorf("--kubeconfig: %w", err)
			}
			cfg.QPS, cfg.Burst = 1000, 2000
			o.Config = cfg
			rt, err := processnode.Start(cmd.Context(), o)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ready")
			<-cmd.Context().Done()
			return rt.Stop()
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&kubeconfig, "kubeconfig", "", "admin kubeconfig of the plane")
	fs.IntVar(&o.Nodes, "nodes", 1, "number of process nodes")
	fs.StringVar(&o.Dir, "dir", "", "state directory")
	fs.StringVar(&o.APIServer, "apiserver", "", "host:port of the API server on loopback")
	fs.StringVar(&o.Kubelet.ClientCAFile, "client-ca", "", "CA of the API server's kubelet client certificate")
	fs.StringVar(&o.Setpoint, "setpoint", "", "setpoint binary bound at /setpoint in pods")
	fs.StringArrayVar(&o.ImageFiles, "image-file", nil, "more files of Setpoint's image, bound at /<base name> in pods (repeat)")
	fs.DurationVar(&o.RestartBackoff, "restart-backoff", 10*time.Second, "first delay of a crashed container's restart")
	return cmd
}
