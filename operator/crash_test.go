package operator_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// The helper process: this test binary started again with these
// variables set runs an operator on one namespace whose create handler
// kills the process for the Widget named "poison".
const (
	crashHelperEnv     = "SETPOINT_CRASH_HELPER_NAMESPACE"
	crashKubeconfigEnv = "SETPOINT_CRASH_HELPER_KUBECONFIG"
	crashCallsEnv      = "SETPOINT_CRASH_HELPER_CALLS"
)

func runCrashHelper() int {
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv(crashKubeconfigEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ns := os.Getenv(crashHelperEnv)
	scheme := widgetScheme(&testing.T{})
	op, err := operator.New(cfg, operator.Options{Name: "crash-" + ns, Namespaces: []string{ns}, Scheme: scheme, MetricsAddr: "0", ProbeAddr: "0"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	operator.Watch[*Widget](op).OnCreate(func(ctx context.Context, cs *operator.Cause[*Widget]) error {
		f, err := os.OpenFile(os.Getenv(crashCallsEnv), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		fmt.Fprintln(f, cs.Object.Name)
		f.Close()
		if cs.Object.Name == "poison" {
			os.Exit(3) // as an OOM kill or a nil dereference in C code would
		}
		return nil
	}, operator.Retries(3), operator.Backoff(operator.BackoffPolicy{Initial: 200 * time.Millisecond, Max: time.Second}))
	if err := op.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestACrashingHandlerReachesItsRetryLimit: a handler that kills its
// process is a failed attempt too, recorded before the call, so under a
// supervisor that restarts the operator it runs Retries(3) times, is
// then marked failed for good, and the other objects are handled.
func TestACrashingHandlerReachesItsRetryLimit(t *testing.T) {
	installWidgetCRD(t)
	env := testkit.Env(t)
	ns := env.Namespace(t)
	wc := widgetClient(t)
	callsFile := t.TempDir() + "/calls"
	for _, name := range []string{"poison", "healthy"} {
		if err := wc.Create(t.Context(), &Widget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: WidgetSpec{Size: 1}}); err != nil {
			t.Fatal(err)
		}
	}
	calls := func(name string) int {
		b, _ := os.ReadFile(callsFile)
		n := 0
		for _, l := range strings.Split(string(b), "\n") {
			if l == name {
				n++
			}
		}
		return n
	}
	handled := func(name string) bool {
		w := &Widget{}
		if err := wc.Get(t.Context(), clientKeyOf(ns, name), w); err != nil {
			return false
		}
		_, ok := w.Annotations["setpoint.dev/last-handled-configuration"]
		return ok
	}
	// The supervisor: start the operator again each time it dies, until
	// the poison Widget's flow is over.
	var helper *exec.Cmd
	var exited chan struct{}
	dead := func() bool {
		select {
		case <-exited:
			return true
		default:
			return false
		}
	}
	testkit.Eventually(t, 2*time.Minute, func() error {
		if helper == nil || dead() {
			helper = exec.Command(os.Args[0], "-test.run=^$")
			helper.Env = append(os.Environ(), crashHelperEnv+"="+ns, crashKubeconfigEnv+"="+env.ControlPlane.KubeconfigPath, crashCallsEnv+"="+callsFile)
			if err := helper.Start(); err != nil {
				return err
			}
			exited = make(chan struct{})
			go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(helper, exited)
		}
		if !handled("poison") || !handled("healthy") {
			return fmt.Errorf("poison called %d times, healthy %d; not both handled yet", calls("poison"), calls("healthy"))
		}
		return nil
	})
	defer func() { _ = helper.Process.Kill(); <-exited }()
	if n := calls("poison"); n != 3 {
		t.Errorf("the crashing handler ran %d times, want 3 (its retry limit)", n)
	}
	poison := &Widget{}
	if err := wc.Get(t.Context(), clientKeyOf(ns, "poison"), poison); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, poison, "failed permanently: gave up after 3 attempts: the operator stopped during the call")
	// A Widget created now is handled by the process that is still up:
	// the poison one no longer takes it down.
	if err := wc.Create(t.Context(), &Widget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "later"}, Spec: WidgetSpec{Size: 1}}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, wait, func() error {
		if !handled("later") {
			return fmt.Errorf("later not handled")
		}
		return nil
	})
	if dead() {
		t.Error("the operator exited after the poison Widget failed")
	}
	if n := calls("poison"); n != 3 {
		t.Errorf("the crashing handler ran %d times after it failed, want 3", n)
	}
}

func clientKeyOf(ns, name string) client.ObjectKey {
	return client.ObjectKey{Namespace: ns, Name: name}
}
