package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/controlplane"
	"github.com/setpoint-dev/setpoint/controlplane/processnode"
	"github.com/setpoint-dev/setpoint/operator"
)

// Environment is the shared control plane of a test binary and clients for
// its admin identity.
type Environment struct {
	ControlPlane *controlplane.ControlPlane
	Config       *rest.Config
	Scheme       *runtime.Scheme
	Client       client.Client
	Clientset    kubernetes.Interface

	mu      sync.Mutex
	failure error // first unexpected exit of a control plane component
}

// Option configures Run.
type Option func(*settings)

type settings struct {
	cp     controlplane.Options
	scheme *runtime.Scheme
}

// WithControlPlane chooses which components run (default: etcd and
// kube-apiserver only). Use controlplane.Full(n) for controllers, scheduler
// and n simulated nodes.
func WithControlPlane(o controlplane.Options) Option {
	return func(s *settings) { s.cp = o }
}

// NewScheme returns a scheme with client-go's types and those of adders
// (for example a CRD package's AddToScheme). It panics on an error, which
// is a programming mistake.
func NewScheme(adders ...func(*runtime.Scheme) error) *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range append([]func(*runtime.Scheme) error{clientgoscheme.AddToScheme}, adders...) {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}

// WithScheme sets the scheme of Environment.Client (default: client-go's
// built-in types).
func WithScheme(scheme *runtime.Scheme) Option {
	return func(s *settings) { s.scheme = scheme }
}

var current *Environment

// Run starts the control plane, runs the package's tests and stops it. Use
// it from TestMain: os.Exit(testkit.Run(m)).
func Run(m *testing.M, opts ...Option) int {
	s := settings{scheme: clientgoscheme.Scheme}
	for _, o := range opts {
		o(&s)
	}
	setLogger()
	defer removeSetpoint()
	// Test data is thrown away, so etcd need not fsync.
	s.cp.UnsafeNoFsync = true
	if d := os.Getenv(DirEnv); d != "" {
		dir, err := os.MkdirTemp(d, "controlplane-")
		if err != nil {
			fmt.Fprintf(os.Stderr, "testkit: %s: %v\n", DirEnv, err)
			return 1
		}
		s.cp.Dir = dir
		fmt.Fprintf(os.Stderr, "testkit: the control plane and its logs are in %s\n", dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cp, err := controlplane.Start(ctx, s.cp)
	if err != nil {
		if errors.Is(err, controlplane.ErrMissingBinary) {
			fmt.Fprintf(os.Stderr, "testkit: the control plane binaries are missing; run `make tools` first.\n%v\n", err)
		} else {
			fmt.Fprintf(os.Stderr, "testkit: start control plane: %v\n", err)
		}
		return 1
	}
	env, err := newEnvironment(cp, s.scheme)
	if err != nil {
		fmt.Fprintf(os.Stderr, "testkit: %v\n", err)
		_ = cp.Stop()
		return 1
	}
	current = env
	go env.watch()

	code := m.Run()

	current = nil
	if err := cp.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testkit: stop control plane: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// DirEnv names the environment variable that keeps each package's control
// plane (etcd data, kubeconfig and every component's log) in a new
// directory under the one it holds, for reading after a failure.
const DirEnv = "SETPOINT_TEST_DIR"

// LogEnv names the environment variable that makes tests print the logs
// of the operators they run (controller-runtime's logger), at the slog
// level it holds: "debug", "info" (also "1") or "error".
const LogEnv = "SETPOINT_TEST_LOG"

func setLogger() {
	level := slog.LevelInfo
	switch os.Getenv(LogEnv) {
	case "":
		ctrl.SetLogger(logr.Discard())
		return
	case "debug":
		level = slog.LevelDebug
	case "error":
		level = slog.LevelError
	}
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
}

func newEnvironment(cp *controlplane.ControlPlane, scheme *runtime.Scheme) (*Environment, error) {
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		return nil, fmt.Errorf("clientset: %w", err)
	}
	return &Environment{ControlPlane: cp, Config: rest.CopyConfig(cp.Config), Scheme: scheme, Client: c, Clientset: cs}, nil
}

// watch records the first component that dies, and says so at once: the
// tests that then time out would otherwise hide the cause.
func (e *Environment) watch() {
	err, ok := <-e.ControlPlane.Err()
	if !ok {
		return
	}
	e.mu.Lock()
	e.failure = err
	e.mu.Unlock()
	fmt.Fprintf(os.Stderr, "testkit: control plane component failed: %v\n", err)
}

// Failure is the first unexpected exit of a control plane component, if any.
func (e *Environment) Failure() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.failure
}

// Env returns the environment started by Run, failing the test when there
// is none or when the control plane has failed.
func Env(t testing.TB) *Environment {
	t.Helper()
	if current == nil {
		t.Fatal("testkit: no control plane; call os.Exit(testkit.Run(m)) from TestMain")
	}
	if err := current.Failure(); err != nil {
		t.Fatalf("testkit: control plane failed earlier: %v", err)
	}
	return current
}

var unsafeName = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a namespace for this test, named after it, and deletes
// it when the test ends.
func (e *Environment) Namespace(t testing.TB) string {
	t.Helper()
	return e.namespace(t, nil)
}

// ProcessNamespace is Namespace on a plane with process nodes: every pod
// of the namespace, whoever makes it, runs on them
// (processnode.NamespaceOnProcessNodes).
func (e *Environment) ProcessNamespace(t testing.TB) string {
	t.Helper()
	return e.namespace(t, processnode.NamespaceOnProcessNodes)
}

func (e *Environment) namespace(t testing.TB, mutate func(*corev1.Namespace)) string {
	t.Helper()
	base := strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	// 40 + "-" + 6 leaves 16 characters for a prefix: tests name their
	// operators "<prefix>-<namespace>", which must fit a label value (63).
	if len(base) > 40 {
		base = strings.TrimRight(base[:40], "-")
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	name := base + "-" + hex.EncodeToString(suffix)
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if mutate != nil {
		mutate(ns)
	}
	_, err := e.Clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		// Not awaited: namespace deletion finishes in the background (or,
		// without a controller-manager, never), and the name is unique.
		_ = e.Clientset.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}

// Eventually polls cond every 100ms until it returns nil, and fails the
// test if it has not by the timeout, with the last error cond returned.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := Poll(context.Background(), timeout, cond); err != nil {
		if current != nil && current.Failure() != nil {
			t.Fatalf("%v (control plane failed: %v)", err, current.Failure())
		}
		t.Fatal(err)
	}
}

// EventuallyLogged is Eventually that also logs, with its time, each
// reason cond gives that differs from the one before: for long waits
// (a chaos test's reconvergence), whose log then shows what took the
// time.
func EventuallyLogged(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	last := ""
	Eventually(t, timeout, func() error {
		err := cond()
		if err != nil && err.Error() != last {
			last = err.Error()
			t.Logf("%s waiting: %v", time.Now().Format("15:04:05.000"), err)
		}
		return err
	})
}

// Poll is Eventually for code without a testing.TB: it returns the last
// error of cond when the timeout or the context ends first.
func Poll(ctx context.Context, timeout time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if last = cond(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("condition not met within %s: %w", timeout, last)
		case <-tick.C:
		}
	}
}

// FreeAddr returns a free loopback address ("127.0.0.1:port") for a server
// a test starts, such as an operator's metrics or probe endpoint.
func FreeAddr(t testing.TB) string {
	t.Helper()
	port := controlplane.FreePort()
	if port == 0 {
		t.Fatal("no free loopback port")
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// HTTPGet fetches url and returns its body, or an error naming the status
// when it is not 200 OK: for polling an operator's probe and metrics
// endpoints with Eventually.
func HTTPGet(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), nil
}

// EventuallyGone waits until obj (of any kind the client knows) no longer
// exists: for deletions that finalizers or the garbage collector complete.
func EventuallyGone(t testing.TB, c client.Client, obj client.Object, timeout time.Duration) {
	t.Helper()
	key := client.ObjectKeyFromObject(obj)
	Eventually(t, timeout, func() error {
		err := c.Get(context.Background(), key, obj.DeepCopyObject().(client.Object))
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("%T %s still exists (%v)", obj, key, err)
	})
}

// Events lists "Type Reason: message" of the Events about obj (found by
// its UID), oldest first as the API server returns them.
func Events(t testing.TB, obj client.Object) []string {
	t.Helper()
	list, err := Env(t).Clientset.CoreV1().Events(obj.GetNamespace()).List(context.Background(),
		metav1.ListOptions{FieldSelector: "involvedObject.uid=" + string(obj.GetUID())})
	if err != nil {
		t.Fatalf("list events: %v", err)
	}
	var out []string
	for _, e := range list.Items {
		out = append(out, e.Type+" "+e.Reason+": "+e.Message)
	}
	return out
}

// WaitEvent waits until obj has an Event whose "Type Reason: message"
// contains substr.
func WaitEvent(t testing.TB, obj client.Object, substr string, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() error {
		evs := Events(t, obj)
		for _, e := range evs {
			if strings.Contains(e, substr) {
				return nil
			}
		}
		return fmt.Errorf("no event with %q among %v", substr, evs)
	})
}

// Webhooks returns admission webhook settings for an operator a test
// runs in its own process: the server listens on a free loopback port and
// the API server calls it there, with a CA made in memory.
func Webhooks(t testing.TB) *operator.Webhooks {
	t.Helper()
	port := controlplane.FreePort()
	if port == 0 {
		t.Fatal("no free loopback port")
	}
	return &operator.Webhooks{Host: "127.0.0.1", Port: port, URL: "https://127.0.0.1:" + strconv.Itoa(port)}
}

// Create creates each object with the environment's client, failing the
// test at the first that the API server refuses.
func Create(t testing.TB, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := Env(t).Client.Create(t.Context(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

// EnvCount is the positive number in the environment variable name, or
// def when it is unset: how long suites (make chaos) size the short
// versions make test runs.
func EnvCount(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}
