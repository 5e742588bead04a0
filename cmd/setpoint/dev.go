package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/controlplane/processnode"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/operator/crd"
)

type devOptions struct {
	host         hostOptions
	nodes        int
	processNodes int
	dataDir      string
	port         int
}

func newDevCommand() *cobra.Command {
	var o devOptions
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Start a local control plane with simulated nodes and run the operators on it",
		Long: `dev starts a real local Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler and kwok, which simulates nodes that
run every pod scheduled on them), installs Setpoint's CRDs and runs the
built-in operators in this process. It prints a kubeconfig to use with
kubectl. Ctrl-C stops everything.

Process nodes (--process-nodes) run the pods that tolerate the taint
setpoint.dev/process-node=true:NoSchedule and select the label
setpoint.dev/process-node=true as real processes on this machine: their
command is run (no image is pulled), with their volumes, their own address,
Services, DNS, logs, exec and port-forward. They need root or, as an
ordinary user, unprivileged user namespaces; elsewhere dev says what is
missing and starts without them.

Without --data-dir the cluster lives in a temporary directory and is gone
when dev stops; with it, the cluster's state, certificates and kubeconfig
are kept and the next dev with the same --data-dir carries on from them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDev(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&o.nodes, "nodes", 1, "number of simulated (kwok) nodes")
	fs.IntVar(&o.processNodes, "process-nodes", 1, "number of process nodes, which run chosen pods as real processes (0: none)")
	fs.StringVar(&o.dataDir, "data-dir", "", "directory that keeps the cluster across restarts (default: a temporary one, removed on exit)")
	fs.IntVar(&o.port, "port", 0, "kube-apiserver port on 127.0.0.1 (default: the one used last time with --data-dir, else a free one)")
	// The local plane is ours alone: no reason to throttle the operators.
	o.host.register(fs, "0", "0", 1000, 2000)
	return cmd
}

func runDev(ctx context.Context, o devOptions, out, errOut io.Writer) error {
	ops, err := enabled(o.host.operators)
	if err != nil {
		return err
	}
	if o.nodes < 0 || o.processNodes < 0 {
		return fmt.Errorf("--nodes and --process-nodes must be 0 or more, got %d and %d", o.nodes, o.processNodes)
	}
	if o.processNodes > 0 {
		if err := processnode.Check(); err != nil {
			fmt.Fprintf(errOut, "Starting without process nodes: %v\n", err)
			o.processNodes = 0
		}
	}
	opts := controlplane.Full(o.nodes)
	opts.ProcessNodes = o.processNodes
	// Pods of Setpoint's own image run this very binary.
	opts.SetpointBinary, _ = os.Executable()
	opts.APIServerPort = o.port
	opts.Progress = errOut
	if o.dataDir != "" {
		dir, err := filepath.Abs(o.dataDir)
		if err != nil {
			return fmt.Errorf("--data-dir: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("--data-dir: %w", err)
		}
		opts.Dir = dir
		if opts.APIServerPort == 0 {
			opts.APIServerPort = previousPort(filepath.Join(dir, "kubeconfig"))
		}
	}

	fmt.Fprintln(errOut, "Starting a local control plane...")
	cp, err := controlplane.Start(ctx, opts)
	if err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	defer func() {
		fmt.Fprintln(errOut, "Stopping the control plane...")
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(errOut, "Error:", err)
		}
	}()
	if err := crd.Install(ctx, cp.Config, time.Minute, crdsOf(builtins)...); err != nil {
		return fmt.Errorf("install CRDs: %w", err)
	}
	printDevBanner(out, cp, o, ops)
	if len(ops) == 0 {
		// --operators '': a plane and nothing else.
		select {
		case err := <-cp.Err():
			return fmt.Errorf("control plane: %w", err)
		case <-ctx.Done():
			return nil
		}
	}

	// The operators stop before the control plane does (deferred above), so
	// they never see their API server vanish under them.
	opCtx, stopOperators := context.WithCancel(ctx)
	defer stopOperators()
	// The API server calls the admission webhooks on loopback, with a CA
	// the operators make in memory.
	port := controlplane.FreePort()
	if port == 0 {
		return errors.New("no free loopback port for the admission webhooks")
	}
	o.host.webhooks = &operator.Webhooks{Host: "127.0.0.1", Port: port, URL: "https://127.0.0.1:" + strconv.Itoa(port)}
	opErr := make(chan error, 1)
	go func() { opErr <- runOperators(opCtx, cp.Config, o.host) }()
	var result error
	select {
	case err := <-opErr:
		// The operators end on their own only on error.
		return err
	case err := <-cp.Err():
		result = fmt.Errorf("control plane: %w", err)
	case <-ctx.Done():
		fmt.Fprintln(errOut, "Signal received; stopping the operators...")
	}
	stopOperators()
	if err := <-opErr; err != nil && result == nil {
		result = err
	}
	return result
}

func printDevBanner(out io.Writer, cp *controlplane.ControlPlane, o devOptions, enabled []builtin) {
	var names []string
	for _, b := range enabled {
		names = append(names, b.name)
	}
	ops := "none"
	if len(names) > 0 {
		ops = strings.Join(names, ", ")
	}
	nodes := fmt.Sprintf("%d simulated (kwok)", o.nodes)
	if o.processNodes > 0 {
		nodes += fmt.Sprintf(", %d process node(s) (pods that tolerate %s run as real processes)", o.processNodes, processnode.ProcessNodeLabel)
	}
	keep := "temporary: removed when dev stops (use --data-dir to keep it)"
	if o.dataDir != "" {
		keep = "kept in " + cp.Dir()
	}
	fmt.Fprintf(out, `
Setpoint is running on a local control plane.
  API server:  %s
  nodes:       %s
  operators:   %s
  state:       %s
  kubeconfig:  %s

In another terminal:

export KUBECONFIG=%s

  kubectl get nodes
  kubectl get pods -A

Press Ctrl-C to stop.
`, cp.APIServerURL, nodes, ops, keep, cp.KubeconfigPath, cp.KubeconfigPath)
}

// previousPort returns the API server port of an existing kubeconfig when
// that port is free again, so a restarted dev keeps the address kubectl
// already uses; 0 otherwise.
func previousPort(kubeconfig string) int {
	cfg, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		return 0
	}
	cl, ok := cfg.Clusters[controlplane.ContextName]
	if !ok {
		return 0
	}
	u, err := url.Parse(cl.Server)
	if err != nil {
		return 0
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return 0
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", u.Port()))
	if err != nil {
		return 0
	}
	l.Close()
	return port
}
