package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/setpoint-dev/setpoint/controlplane/processnode"
)

// Options chooses which parts of the control plane run and where their
// state lives. The zero value runs etcd and kube-apiserver in a temporary
// directory, which is what most library tests need.
type Options struct {
	// Dir keeps etcd data, certificates, the kubeconfig and logs. When empty
	// a temporary directory is made and Stop removes it; when set it is kept,
	// so a later Start with the same Dir finds the same cluster.
	Dir string

	// ControllerManager runs kube-controller-manager (garbage collection,
	// Deployments and ReplicaSets, namespaces, service accounts, ...).
	ControllerManager bool
	// Scheduler runs kube-scheduler, which places pods on nodes.
	Scheduler bool
	// Nodes, when above zero, runs kwok and registers that many simulated
	// nodes that report Ready and run every pod bound to them.
	Nodes int
	// ProcessNodes, when above zero, registers that many process nodes:
	// pods that tolerate their taint and select their label run as real
	// processes (package processnode). Needs root; see processnode.Check.
	ProcessNodes int
	// SetpointBinary is bound at /setpoint in every process pod, so pods of
	// Setpoint's own image run it (default: bin/setpoint when found).
	SetpointBinary string
	// RestartBackoff is the first delay before a process pod's crashed
	// container restarts (default 10 s, the kubelet's).
	RestartBackoff time.Duration

	// APIServerPort is the kube-apiserver's port on 127.0.0.1; 0 picks a
	// free one.
	APIServerPort int
	// UnsafeNoFsync makes etcd skip fsync: much faster, and fine for tests
	// whose data is thrown away. Never set it for state that must survive.
	UnsafeNoFsync bool
	// APIServerArgs are extra kube-apiserver flags, appended last.
	APIServerArgs []string

	// StartTimeout bounds each component's wait for readiness (default 60s).
	StartTimeout time.Duration
	// Progress, when set, receives a line per start-up step.
	Progress io.Writer
}

// Full returns Options for a whole cluster: controller-manager, scheduler
// and n kwok nodes.
func Full(nodes int) Options {
	return Options{ControllerManager: true, Scheduler: true, Nodes: nodes}
}

// ControlPlane is a running local control plane. Use Start to make one.
type ControlPlane struct {
	opts   Options
	dir    string
	ownDir bool
	pki    *pki

	// KubeconfigPath is an admin kubeconfig (group system:masters).
	KubeconfigPath string
	// Config is a rest.Config for the same identity, with client-side
	// throttling set high enough never to be the bottleneck.
	Config *rest.Config
	// APIServerURL and EtcdURL are the loopback endpoints.
	APIServerURL string
	EtcdURL      string

	mu       sync.Mutex
	procs    []*process
	nodes    *processnode.Runtime
	failures chan error
	stopOnce sync.Once
	stopErr  error
}

// Start brings up the control plane and returns once every requested part
// is ready: etcd healthy, kube-apiserver /readyz, the other components
// healthy, and all simulated nodes Ready with no not-ready taint. On error
// everything already started is stopped again.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}
	bins, err := findBinaries(opts)
	if err != nil {
		return nil, err
	}
	c := &ControlPlane{opts: opts, dir: opts.Dir, failures: make(chan error, 8)}
	if c.dir == "" {
		c.dir, err = os.MkdirTemp("", "setpoint-controlplane-")
		if err != nil {
			return nil, fmt.Errorf("create control plane dir: %w", err)
		}
		c.ownDir = true
	}
	if err := c.start(ctx, bins); err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	return c, nil
}

func findBinaries(opts Options) (map[string]string, error) {
	names := []string{Etcd, KubeAPIServer}
	if opts.ControllerManager {
		names = append(names, ControllerManager)
	}
	if opts.Scheduler {
		names = append(names, Scheduler)
	}
	if opts.Nodes > 0 {
		names = append(names, Kwok, KwokStagesFile)
	}
	bins := map[string]string{}
	var errs []error
	for _, n := range names {
		p, err := FindBinary(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		bins[n] = p
	}
	return bins, errors.Join(errs...)
}

func (c *ControlPlane) progress(format string, args ...any) {
	if c.opts.Progress != nil {
		fmt.Fprintf(c.opts.Progress, format+"\n", args...)
	}
}

func (c *ControlPlane) start(ctx context.Context, bins map[string]string) error {
	logDir := filepath.Join(c.dir, "logs")
	for _, d := range []string{logDir, filepath.Join(c.dir, "etcd")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	c.pki = newPKI(filepath.Join(c.dir, "pki"))
	if err := c.pki.ensure(); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}

	// etcd
	clientPort, peerPort := FreePort(), FreePort()
	if clientPort == 0 || peerPort == 0 {
		return errors.New("no free loopback port for etcd")
	}
	c.EtcdURL = "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	etcdArgs := []string{
		"--name=setpoint",
		"--data-dir=" + filepath.Join(c.dir, "etcd"),
		"--listen-client-urls=" + c.EtcdURL,
		"--advertise-client-urls=" + c.EtcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=setpoint=" + peerURL,
		"--listen-metrics-urls=",
		"--log-level=warn",
		// etcd's largest recommended size, not its 2 GiB default: a
		// cluster of big Secrets (BenchmarkNeighbours holds 1 GiB of
		// them) would otherwise stop taking writes ("database space
		// exceeded").
		"--quota-backend-bytes=8589934592",
	}
	if c.opts.UnsafeNoFsync {
		etcdArgs = append(etcdArgs, "--unsafe-no-fsync")
	}
	c.progress("starting etcd on %s", c.EtcdURL)
	etcd, err := c.run(Etcd, bins[Etcd], etcdArgs, nil, logDir)
	if err != nil {
		return err
	}
	plain := &http.Client{Timeout: 2 * time.Second}
	if err := c.waitFor(ctx, etcd, "etcd /health", func() error { return httpOK(plain, c.EtcdURL+"/health") }); err != nil {
		return err
	}

	// kube-apiserver
	port := c.opts.APIServerPort
	if port == 0 {
		port = FreePort()
	}
	c.APIServerURL = "https://127.0.0.1:" + strconv.Itoa(port)
	apiArgs := []string{
		"--etcd-servers=" + c.EtcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The endpoint reconciler refuses a loopback address; nothing in
		// a simulated pod would dial the API server through a Service anyway.
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(c.dir, "apiserver"),
		"--tls-cert-file=" + c.pki.ServingCert,
		"--tls-private-key-file=" + c.pki.ServingKey,
		"--client-ca-file=" + c.pki.CACert,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + c.pki.ServiceAccountPubKey,
		"--service-account-signing-key-file=" + c.pki.ServiceAccountKey,
		"--service-cluster-ip-range=10.0.0.0/16",
		"--authorization-mode=RBAC",
		"--allow-privileged=true",
		"--profiling=false",
		// Benchmarks push thousands of objects through; the defaults (400
		// and 200) would make the API server, not the code under test, the
		// limit.
		"--max-requests-inflight=3000",
		"--max-mutating-requests-inflight=1000",
		// Logs, exec and port-forward of process pods: the kubelet API
		// trusts clients signed by the plane's CA.
		"--kubelet-client-certificate=" + c.pki.AdminCert,
		"--kubelet-client-key=" + c.pki.AdminKey,
	}
	if !c.opts.ControllerManager {
		// Without the controller-manager no "default" ServiceAccount is ever
		// created, and that admission plugin would refuse every pod; and no
		// node-lifecycle controller removes the not-ready taint that
		// TaintNodesByCondition puts on every new Node.
		apiArgs = append(apiArgs, "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition")
	}
	if c.opts.ProcessNodes > 0 {
		// A namespace's annotations can then send all its pods to the
		// process nodes (processnode.NamespaceOnProcessNodes), whatever
		// operator makes them.
		apiArgs = append(apiArgs, "--enable-admission-plugins=PodNodeSelector,PodTolerationRestriction")
		egress, err := c.egressConfig()
		if err != nil {
			return err
		}
		apiArgs = append(apiArgs, "--egress-selector-config-file="+egress)
	}
	apiArgs = append(apiArgs, c.opts.APIServerArgs...)
	c.progress("starting kube-apiserver on %s", c.APIServerURL)
	api, err := c.run(KubeAPIServer, bins[KubeAPIServer], apiArgs, nil, logDir)
	if err != nil {
		return err
	}
	c.KubeconfigPath = filepath.Join(c.dir, "kubeconfig")
	if c.Config, err = writeKubeconfig(c.KubeconfigPath, c.APIServerURL, c.pki); err != nil {
		return err
	}
	admin, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		return fmt.Errorf("admin http client: %w", err)
	}
	admin.Timeout = 5 * time.Second
	if err := c.waitFor(ctx, api, "kube-apiserver /readyz", func() error { return httpOK(admin, c.APIServerURL+"/readyz") }); err != nil {
		return err
	}

	// Health endpoints of the other components serve self-signed certs on
	// loopback; nothing secret is sent, so verification is not needed.
	local := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback health probe
	kubeClientArgs := []string{
		"--kubeconfig=" + c.KubeconfigPath,
		"--authentication-kubeconfig=" + c.KubeconfigPath,
		"--authorization-kubeconfig=" + c.KubeconfigPath,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		// Client throttling of the defaults (QPS 20) makes 1,000 Deployments
		// take minutes; see DESIGN.md.
		"--kube-api-qps=1000",
		"--kube-api-burst=2000",
	}
	if c.opts.ControllerManager {
		kcmPort := FreePort()
		args := append(append([]string{}, kubeClientArgs...),
			"--secure-port="+strconv.Itoa(kcmPort),
			"--cert-dir="+filepath.Join(c.dir, "controller-manager"),
			"--service-account-private-key-file="+c.pki.ServiceAccountKey,
			"--root-ca-file="+c.pki.CACert,
			"--cluster-signing-cert-file="+c.pki.CACert,
			"--cluster-signing-key-file="+c.pki.CAKey,
			"--concurrent-deployment-syncs=50",
			"--concurrent-replicaset-syncs=50",
			"--concurrent-gc-syncs=50",
			"--concurrent-service-endpoint-syncs=20",
			"--concurrent-namespace-syncs=20",
			"--concurrent-horizontal-pod-autoscaler-syncs=20",
			// The default 15 s makes a test (or a user trying autoscaling
			// on `setpoint dev`) wait a long time for each autoscaler step.
			"--horizontal-pod-autoscaler-sync-period=2s",
		)
		c.progress("starting kube-controller-manager")
		kcm, err := c.run(ControllerManager, bins[ControllerManager], args, nil, logDir)
		if err != nil {
			return err
		}
		url := "https://127.0.0.1:" + strconv.Itoa(kcmPort) + "/healthz"
		if err := c.waitFor(ctx, kcm, "kube-controller-manager /healthz", func() error { return httpOK(local, url) }); err != nil {
			return err
		}
	}
	if c.opts.Scheduler {
		schedPort := FreePort()
		args := append(append([]string{}, kubeClientArgs...),
			"--secure-port="+strconv.Itoa(schedPort),
			"--cert-dir="+filepath.Join(c.dir, "scheduler"),
		)
		c.progress("starting kube-scheduler")
		sched, err := c.run(Scheduler, bins[Scheduler], args, nil, logDir)
		if err != nil {
			return err
		}
		url := "https://127.0.0.1:" + strconv.Itoa(schedPort) + "/healthz"
		if err := c.waitFor(ctx, sched, "kube-scheduler /healthz", func() error { return httpOK(local, url) }); err != nil {
			return err
		}
	}
	if c.opts.Nodes > 0 {
		kwokPort := FreePort()
		args := []string{
			"--kubeconfig=" + c.KubeconfigPath,
			"--config=" + bins[KwokStagesFile],
			"--manage-all-nodes=false",
			"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=fake",
			"--node-lease-duration-seconds=40",
			"--server-address=127.0.0.1:" + strconv.Itoa(kwokPort),
			// The lower half of 10.244.0.0/16; process pods get the upper.
			"--cidr=10.244.0.1/17",
			"--node-ip=127.0.0.1",
		}
		c.progress("starting kwok with %d simulated node(s)", c.opts.Nodes)
		kw, err := c.run(Kwok, bins[Kwok], args, nil, logDir)
		if err != nil {
			return err
		}
		url := "http://127.0.0.1:" + strconv.Itoa(kwokPort) + "/healthz"
		if err := c.waitFor(ctx, kw, "kwok /healthz", func() error { return httpOK(plain, url) }); err != nil {
			return err
		}
		if err := c.registerNodes(ctx, kw); err != nil {
			return err
		}
	}
	if c.opts.ProcessNodes > 0 {
		return c.startProcessNodes(ctx, port)
	}
	return nil
}

// egressConfig writes the API server's egress selector configuration:
// its traffic to pods, kubelets and webhooks goes through the process
// nodes' proxy, which can reach the plane's network.
func (c *ControlPlane) egressConfig() (string, error) {
	socket := filepath.Join(c.dir, "process-nodes", processnode.EgressSocket)
	// sun_path holds 108 bytes with its NUL.
	if len(socket) > 107 {
		return "", fmt.Errorf("process nodes: the plane's directory %s is too long for a Unix socket path (%s, at most 107 bytes)", c.dir, socket)
	}
	if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(c.dir, "egress-selector.yaml")
	if err := os.WriteFile(path, []byte(processnode.EgressConfig(socket)), 0o644); err != nil {
		return "", fmt.Errorf("egress selector config: %w", err)
	}
	return path, nil
}

func (c *ControlPlane) startProcessNodes(ctx context.Context, apiPort int) error {
	bin := c.opts.SetpointBinary
	if bin == "" {
		bin, _ = FindBinary("setpoint")
	}
	c.progress("starting %d process node(s)", c.opts.ProcessNodes)
	var imageFiles []string
	if agent, err := FindBinary(PostgresAgent); err == nil {
		imageFiles = append(imageFiles, agent)
	} else {
		c.progress("PostgresCluster pods will not start on process nodes: %v (make build makes it)", err)
	}
	o := processnode.Options{
		Config:         c.Config,
		Nodes:          c.opts.ProcessNodes,
		Dir:            filepath.Join(c.dir, "process-nodes"),
		APIServer:      "127.0.0.1:" + strconv.Itoa(apiPort),
		Kubelet:        processnode.KubeletTLS{ClientCAFile: c.pki.CACert},
		Setpoint:       bin,
		ImageFiles:     imageFiles,
		RestartBackoff: c.opts.RestartBackoff,
	}
	if processnode.Rootless() {
		return c.startRootlessNodes(ctx, o)
	}
	rt, err := processnode.Start(ctx, o)
	if err != nil {
		return fmt.Errorf("process nodes: %w", err)
	}
	c.mu.Lock()
	c.nodes = rt
	c.mu.Unlock()
	return nil
}

func (c *ControlPlane) run(name, bin string, args, env []string, logDir string) (*process, error) {
	p, err := startProcess(name, bin, args, env, logDir)
	if err != nil {
		return nil, err
	}
	c.track(p)
	return p, nil
}

// track makes p a component: stopped by Stop, its unasked-for exit
// reported on Err.
func (c *ControlPlane) track(p *process) {
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	c.watch(p)
}

// watch reports p's exit on Err unless it was asked for.
func (c *ControlPlane) watch(p *process) {
	go func() {
		<-p.done
		if !p.stopping() {
			select {
			case c.failures <- p.exitError():
			default:
			}
		}
	}()
}

// waitFor polls check until it succeeds, the process exits (reported with
// its log), the context ends or StartTimeout passes.
func (c *ControlPlane) waitFor(ctx context.Context, p *process, what string, check func() error) error {
	p.mu.Lock()
	p.ready = check
	p.mu.Unlock()
	deadline := time.NewTimer(c.opts.StartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return p.exitError()
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-deadline.C:
			return fmt.Errorf("wait for %s: not ready after %s: %v; last lines of %s:\n%s",
				what, c.opts.StartTimeout, err, p.logPath, tail(p.logPath, 20))
		case <-tick.C:
		}
	}
}

// Err delivers an error when a component exits while the control plane is
// meant to be running. The error carries the tail of that component's log.
func (c *ControlPlane) Err() <-chan error { return c.failures }

// Dir is the directory that holds the control plane's state and logs.
func (c *ControlPlane) Dir() string { return c.dir }

// LogPath is the log file of one component (e.g. KubeAPIServer).
func (c *ControlPlane) LogPath(component string) string {
	return filepath.Join(c.dir, "logs", component+".log")
}

// Pids returns the process ids of the running components.
func (c *ControlPlane) Pids() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	pids := make([]int, 0, len(c.procs))
	for _, p := range c.procs {
		pids = append(pids, p.Pid())
	}
	return pids
}

// Pid is the process id of the running component name (Etcd,
// KubeAPIServer, …), for tests that freeze or signal one of them.
func (c *ControlPlane) Pid(name string) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.name == name {
			return p.Pid(), true
		}
	}
	return 0, false
}

// Restart SIGKILLs the component name (Etcd, KubeAPIServer, …) with its
// process group, as a crash would, starts it again with the same command
// line, and returns once it is ready again (the check it passed at
// Start). For the chaos tests: this exit is not reported on Err.
func (c *ControlPlane) Restart(ctx context.Context, name string) error {
	c.mu.Lock()
	i := slices.IndexFunc(c.procs, func(p *process) bool { return p.name == name })
	if i < 0 {
		c.mu.Unlock()
		return fmt.Errorf("restart %s: no such component", name)
	}
	old := c.procs[i]
	c.mu.Unlock()
	old.mu.Lock()
	old.stop = true
	ready := old.ready
	old.mu.Unlock()
	_ = syscall.Kill(-old.Pid(), syscall.SIGKILL)
	select {
	case <-old.done:
	case <-time.After(10 * time.Second):
		return fmt.Errorf("restart %s: pid %d did not exit after SIGKILL", name, old.Pid())
	}
	p, err := startProcessAttr(name, old.cmd.Path, old.cmd.Args[1:], old.env, filepath.Dir(old.logPath), old.cmd.SysProcAttr)
	if err != nil {
		return fmt.Errorf("restart %s: %w", name, err)
	}
	c.mu.Lock()
	c.procs[i] = p
	c.mu.Unlock()
	c.watch(p)
	if ready == nil {
		return nil
	}
	return c.waitFor(ctx, p, name+" after a restart", ready)
}

// Stop ends every component, newest first so that clients go before the
// API server and the API server before etcd, and removes the directory if
// Start made it. It is safe to call more than once.
func (c *ControlPlane) Stop() error {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		procs := append([]*process(nil), c.procs...)
		nodes := c.nodes
		c.mu.Unlock()
		var errs []error
		// Pods' processes end first, while the API server still answers.
		if nodes != nil {
			errs = append(errs, nodes.Stop())
		}
		for i := len(procs) - 1; i >= 0; i-- {
			if err := procs[i].terminate(15 * time.Second); err != nil {
				errs = append(errs, err)
			}
		}
		if c.ownDir {
			if err := os.RemoveAll(c.dir); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", c.dir, err))
			}
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

func httpOK(client *http.Client, url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", url, resp.Status, body)
	}
	return nil
}

// FreePort finds a free loopback port for a component to listen on. It
// picks below Linux's ephemeral range (32768 and up by default), because
// the kernel hands ports from that range to outgoing connections: with
// several control planes busy on one machine, a port found free there was
// sometimes taken by a client socket before etcd could bind it.
func FreePort() int {
	for range 100 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startRootlessNodes runs the process nodes as `setpoint process-nodes`,
// root of a user namespace of its own: an ordinary user may make network
// and mount namespaces there. It is a component like the others: stopped
// with them, its exit reported.
func (c *ControlPlane) startRootlessNodes(ctx context.Context, o processnode.Options) error {
	if o.Setpoint == "" {
		return fmt.Errorf("process nodes as an ordinary user run the setpoint binary: %w", ErrMissingBinary)
	}
	if o.RestartBackoff == 0 {
		o.RestartBackoff = 10 * time.Second
	}
	args := []string{"process-nodes", "--kubeconfig", c.KubeconfigPath, "--nodes", strconv.Itoa(o.Nodes),
		"--dir", o.Dir, "--apiserver", o.APIServer, "--client-ca", o.Kubelet.ClientCAFile,
		"--setpoint", o.Setpoint, "--restart-backoff", o.RestartBackoff.String()}
	for _, f := range o.ImageFiles {
		args = append(args, "--image-file", f)
	}
	p, err := startProcessAttr(processNodes, o.Setpoint, args, nil, filepath.Join(c.dir, "logs"), processnode.InUserNamespace())
	if err != nil {
		return err
	}
	c.track(p)
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	return c.waitFor(ctx, p, "process nodes Ready", func() error {
		for i := range o.Nodes {
			n, err := cs.CoreV1().Nodes().Get(ctx, processnode.NodeName(i), metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !nodeReady(n) {
				return fmt.Errorf("node %s not Ready yet", n.Name)
			}
		}
		return nil
	})
}
