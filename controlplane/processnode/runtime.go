package processnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
)

// Options configures Start.
type Options struct {
	// Config is an admin identity of the API server.
	Config *rest.Config
	// Nodes is how many process nodes to register (NodeName(0), ...).
	Nodes int
	// Dir keeps pods' directories (logs, emptyDirs) and, under volumes/,
	// the directories of provisioned PersistentVolumes.
	Dir string
	// APIServer is the host:port of the API server on the host's loopback,
	// where the `kubernetes` Service leads.
	APIServer string
	// Kubelet is the TLS setup of the kubelet API the API server calls.
	Kubelet KubeletTLS
	// Setpoint is a setpoint binary bound at /setpoint in every pod, so that
	// pods of Setpoint's own image run it (optional).
	Setpoint string
	// ImageFiles are more files of Setpoint's image, each bound read-only
	// at /<its base name> in every pod, as the image holds them: the
	// PostgreSQL agent, setpoint-postgres-agent (optional).
	ImageFiles []string
	// RestartBackoff is the first delay of a crashed container's restart,
	// doubling up to 5 minutes (default 10 s, the kubelet's).
	RestartBackoff time.Duration
}

// Runtime is the running process nodes. Stop ends every pod's processes.
type Runtime struct {
	cs             kubernetes.Interface
	dir            string
	net            *network
	nsenter        string
	setpoint       string
	imageFiles     []string
	hostMounts     []string
	restartBackoff time.Duration
	recorder       record.EventRecorder
	broadcaster    record.EventBroadcaster
	svcLister      func() []*corev1.Service

	mu      sync.Mutex
	workers map[types.UID]*podWorker

	stopCtx  context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
	closers  []func()
}

// Check says what this machine lacks for process nodes, or nil. As an
// ordinary user they need unprivileged user namespaces (Rootless).
func Check() error {
	var missing []string
	if os.Geteuid() != 0 {
		if out, err := exec.Command("unshare", "--user", "--map-root-user", "true").CombinedOutput(); err != nil {
			missing = append(missing, fmt.Sprintf("root, or unprivileged user namespaces (unshare --user: %v %s; see sysctl kernel.unprivileged_userns_clone and user.max_user_namespaces)", err, strings.TrimSpace(string(out))))
		}
	}
	for _, c := range []string{"nsenter", "ip", "setpriv", "mount", "chroot", "sleep", "sh"} {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c+" (Debian: util-linux, iproute2, coreutils)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("process nodes need: %v", missing)
	}
	return nil
}

// Start registers the process nodes and runs their pods until Stop.
func Start(ctx context.Context, o Options) (*Runtime, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	if o.RestartBackoff == 0 {
		o.RestartBackoff = 10 * time.Second
	}
	cs, err := kubernetes.NewForConfig(o.Config)
	if err != nil {
		return nil, fmt.Errorf("clientset: %w", err)
	}
	nsenter, _ := exec.LookPath("nsenter")
	rt := &Runtime{
		cs: cs, dir: o.Dir, nsenter: nsenter, setpoint: o.Setpoint, imageFiles: o.ImageFiles, hostMounts: hostMounts(),
		restartBackoff: o.RestartBackoff, workers: map[types.UID]*podWorker{},
	}
	rt.stopCtx, rt.cancel = context.WithCancel(context.Background())
	if err := rt.start(ctx, o); err != nil {
		return nil, errors.Join(err, rt.Stop())
	}
	return rt, nil
}

func (rt *Runtime) start(ctx context.Context, o Options) error {
	if err := os.MkdirAll(filepath.Join(rt.dir, "pods"), 0o755); err != nil {
		return err
	}
	var err error
	if rt.net, err = newNetwork(); err != nil {
		return err
	}
	rt.closers = append(rt.closers, rt.net.close)
	closeEgress, err := serveEgress(rt.net, filepath.Join(rt.dir, EgressSocket))
	if err != nil {
		return err
	}
	rt.closers = append(rt.closers, closeEgress)
	rt.broadcaster = record.NewBroadcaster()
	rt.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: rt.cs.CoreV1().Events("")})
	rt.recorder = rt.broadcaster.NewRecorder(clientScheme(), corev1.EventSource{Component: "setpoint-process-node"})
	rt.closers = append(rt.closers, rt.broadcaster.Shutdown)

	factory := informers.NewSharedInformerFactory(rt.cs, 0)
	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	rt.svcLister = func() []*corev1.Service {
		l, _ := svcInf.Lister().List(everything())
		return l
	}
	px := newProxy(rt.net, o.APIServer, svcInf.Lister(), sliceInf.Lister())
	svcInf.Informer().AddEventHandler(px.handler())
	sliceInf.Informer().AddEventHandler(px.handler())
	if err := startProvisioner(rt.stopCtx, rt.cs, factory, filepath.Join(rt.dir, "volumes")); err != nil {
		return err
	}
	factory.Start(rt.stopCtx.Done())
	factory.WaitForCacheSync(ctx.Done())
	if err := px.start(); err != nil {
		return err
	}
	rt.closers = append(rt.closers, px.close)
	dns, err := startDNS(rt.net, svcInf.Lister(), sliceInf.Lister())
	if err != nil {
		return err
	}
	rt.closers = append(rt.closers, dns.close)
	if err := ensureDNSService(ctx, rt.cs); err != nil {
		return err
	}
	port, closeKubelet, err := serveKubelet(rt, o.Kubelet)
	if err != nil {
		return err
	}
	rt.closers = append(rt.closers, closeKubelet)
	for i := range o.Nodes {
		if err := rt.startNode(ctx, NodeName(i), port); err != nil {
			return err
		}
	}
	return nil
}

func (rt *Runtime) startNode(ctx context.Context, name string, kubeletPort int) error {
	if err := registerNode(ctx, rt.cs, name, kubeletPort); err != nil {
		return err
	}
	rt.wg.Add(1)
	go func() { defer rt.wg.Done(); heartbeat(rt.stopCtx, rt.cs, name, kubeletPort) }()
	factory := informers.NewSharedInformerFactoryWithOptions(rt.cs, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = "spec.nodeName=" + name
	}))
	inf := factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { rt.sync(obj.(*corev1.Pod)) },
		UpdateFunc: func(_, obj any) { rt.sync(obj.(*corev1.Pod)) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				rt.gone(pod)
			}
		},
	})
	if err != nil {
		return err
	}
	factory.Start(rt.stopCtx.Done())
	return nil
}

// sync starts a worker for a pod it has not seen, or hands it the update.
func (rt *Runtime) sync(pod *corev1.Pod) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.stopCtx.Err() != nil {
		return
	}
	if w, ok := rt.workers[pod.UID]; ok {
		w.update(pod)
		return
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		if pod.DeletionTimestamp != nil {
			go rt.forget(pod)
		}
		return
	}
	w := newPodWorker(rt, pod)
	rt.workers[pod.UID] = w
	w.update(pod)
	rt.wg.Add(1)
	go func() { defer rt.wg.Done(); w.run(rt.stopCtx) }()
}

// gone handles a pod removed from the API without our final delete (a
// force deletion): its processes end at once.
func (rt *Runtime) gone(pod *corev1.Pod) {
	rt.mu.Lock()
	w, ok := rt.workers[pod.UID]
	rt.mu.Unlock()
	if ok {
		p := pod.DeepCopy()
		p.DeletionGracePeriodSeconds = ptr.To[int64](0)
		if p.DeletionTimestamp == nil {
			now := metav1.Now()
			p.DeletionTimestamp = &now
		}
		w.update(p)
	}
}

// forget removes a pod whose processes have ended: from the API (the
// kubelet's final delete, guarded by the UID) and from disk.
func (rt *Runtime) forget(pod *corev1.Pod) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := rt.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		rt.event(pod, corev1.EventTypeWarning, "FailedDelete", err.Error())
	}
	rt.mu.Lock()
	w := rt.workers[pod.UID]
	delete(rt.workers, pod.UID)
	rt.mu.Unlock()
	if w != nil {
		w.removeDir()
	}
}

func (rt *Runtime) worker(ns, name string) *podWorker {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, w := range rt.workers {
		p := w.current()
		if p.Namespace == ns && p.Name == name {
			return w
		}
	}
	return nil
}

func (rt *Runtime) services() []*corev1.Service {
	if rt.svcLister == nil {
		return nil
	}
	return rt.svcLister()
}

func (rt *Runtime) event(pod *corev1.Pod, typ, reason, msg string) {
	if rt.recorder != nil {
		rt.recorder.Event(pod, typ, reason, trimMsg(msg))
	}
}

// Stop ends every pod's processes and sandbox (pods stay in the API, as
// after a node's reboot) and everything the runtime runs. It is safe to
// call more than once.
func (rt *Runtime) Stop() error {
	rt.stopOnce.Do(func() {
		rt.cancel()
		rt.wg.Wait()
		for i := len(rt.closers) - 1; i >= 0; i-- {
			rt.closers[i]()
		}
	})
	return nil
}

// Rootless reports whether this process must run process nodes in a user
// namespace of their own (it is not root): see InUserNamespace.
func Rootless() bool { return os.Geteuid() != 0 }

// InUserNamespace is the process attributes that start a program as root
// of a new user namespace mapped to this process's user, in this network
// namespace (so it still reaches the API server on loopback). A runtime
// started there owns every namespace it makes, as root would.
func InUserNamespace() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{
		Cloneflags:                 syscall.CLONE_NEWUSER,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		GidMappingsEnableSetgroups: false,
		Setpgid:                    true,
		Pdeathsig:                  syscall.SIGKILL,
	}
}
