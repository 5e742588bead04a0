// Command greeter is a complete example operator built with Setpoint.
//
// For every ConfigMap labelled example.setpoint.dev/greet=true it keeps a
// child ConfigMap "<name>-greeting" whose greeting follows the parent's
// data.name. It shows create, field and delete handlers, retries,
// log lines that become Events, and a timer.
//
// Try it on the local control plane (`make dev` in another terminal):
//
//	export KUBECONFIG=...        # the line `make dev` printed
//	go run ./examples/greeter
//	kubectl apply -f examples/greeter/greeter.yaml
//	kubectl get configmap world-greeting -o yaml
//	kubectl describe configmap world     # the Events
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	"github.com/setpoint-dev/setpoint/operator"
)

// What the greeter does in the cluster; `setpoint generate` makes its
// ClusterRole from this marker (the library's own needs, Events and the
// leader-election Lease, are added to it):
//
//	setpoint generate --name greeter --image example.com/greeter:1 --paths ./examples/greeter
//
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch;create;update;patch;delete

// Label marks the ConfigMaps the greeter handles.
const Label = "example.setpoint.dev/greet"

func main() {
	ns := flag.String("namespace", "", "namespace to watch (default: all)")
	flag.Parse()
	ctrl.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, nil)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var namespaces []string
	if *ns != "" {
		namespaces = []string{*ns}
	}
	if err := run(ctx, ctrl.GetConfigOrDie(), operator.Options{Name: "greeter", Namespaces: namespaces}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run registers the greeter's handlers and runs it until ctx ends.
func run(ctx context.Context, cfg *rest.Config, opts operator.Options) error {
	op, err := operator.New(cfg, opts)
	if err != nil {
		return err
	}
	g := &greeter{c: op.Client()}
	cms := operator.Watch[*corev1.ConfigMap](op, operator.Labels(map[string]string{Label: "true"}))
	cms.OnCreate(g.create)
	cms.OnField("data.name", g.rename)
	cms.OnDelete(g.farewell)
	cms.Every(time.Minute, g.check, operator.Idle(5*time.Minute))
	return op.Run(ctx)
}

type greeter struct{ c client.Client }

func greeting(cm *corev1.ConfigMap) string {
	name := cm.Data["name"]
	if name == "" {
		name = "stranger"
	}
	return "Hello, " + name + "!"
}

// create makes the child. Returning an error retries with backoff; an
// already existing child (a retry after a crash) is fine: handlers must be
// idempotent.
func (g *greeter) create(ctx context.Context, c *operator.Cause[*corev1.ConfigMap]) error {
	parent := c.Object
	child := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: parent.Name + "-greeting", Namespace: parent.Namespace},
		Data:       map[string]string{"greeting": greeting(parent)},
	}
	// The owner reference lets Kubernetes' garbage collector delete the
	// child with its parent.
	if err := controllerutil.SetOwnerReference(parent, child, g.c.Scheme()); err != nil {
		return operator.Permanent(err)
	}
	if err := g.c.Create(ctx, child); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create %s: %w", child.Name, err)
	}
	c.Log.Info("greeted " + parent.Data["name"]) // also an Event on the parent
	return nil
}

// rename follows data.name. It also runs on creation (Old is nil), when
// the child may not exist yet: a temporary error retries shortly.
func (g *greeter) rename(ctx context.Context, c *operator.Cause[*corev1.ConfigMap]) error {
	if c.Reason == operator.Create {
		return nil // create makes the child with the right greeting
	}
	var child corev1.ConfigMap
	key := client.ObjectKey{Namespace: c.Object.Namespace, Name: c.Object.Name + "-greeting"}
	if err := g.c.Get(ctx, key, &child); err != nil {
		return operator.Temporary(fmt.Errorf("get %s: %w", key, err), 2*time.Second)
	}
	child.Data = map[string]string{"greeting": greeting(c.Object)}
	if err := g.c.Update(ctx, &child); err != nil {
		return fmt.Errorf("update %s: %w", key, err)
	}
	c.Log.Info(fmt.Sprintf("renamed %v to %v", c.Old, c.New))
	return nil
}

// farewell runs before the parent goes (a finalizer holds it until then).
func (g *greeter) farewell(ctx context.Context, c *operator.Cause[*corev1.ConfigMap]) error {
	c.Log.Info("goodbye, " + c.Object.Data["name"])
	return nil
}

// check runs every minute for parents left unchanged for five minutes.
func (g *greeter) check(ctx context.Context, cm *corev1.ConfigMap, log logr.Logger) error {
	var child corev1.ConfigMap
	err := g.c.Get(ctx, client.ObjectKey{Namespace: cm.Namespace, Name: cm.Name + "-greeting"}, &child)
	if apierrors.IsNotFound(err) {
		log.Error(nil, "greeting is missing") // a Warning Event
		return nil
	}
	return err
}
