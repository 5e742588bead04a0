package operator_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// The handlers of a kind are served by the API server's admission chain:
// a validator refuses with its message, warns without refusing, and a
// mutator's change is stored; the handler sees the operation, the old
// object and dry runs.
func TestAdmissionHandlers(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	c, warned := testkit.WarnedClient(t)
	ctx := t.Context()
	var seen struct {
		sync.Mutex
		ops    []string
		dryRun bool
	}
	o := opts(ns)
	o.Webhooks = testkit.Webhooks(t)
	o.Webhooks.CertSecret = types.NamespacedName{Namespace: ns, Name: "webhook-cert"}
	start(t, nil, o, func(op *operator.Operator) {
		cms := operator.Watch[*corev1.ConfigMap](op)
		cms.OnMutate(func(_ context.Context, r *operator.Review[*corev1.ConfigMap]) error {
			if r.Object.Labels == nil {
				r.Object.Labels = map[string]string{}
			}
			r.Object.Labels["mutated"] = "yes"
			if _, ok := r.Object.Data["greeting"]; !ok && r.Object.Data != nil {
				r.Object.Data["greeting"] = "hello"
			}
			return nil
		})
		cms.OnValidate(func(_ context.Context, r *operator.Review[*corev1.ConfigMap]) error {
			seen.Lock()
			seen.ops = append(seen.ops, string(r.Operation))
			seen.dryRun = seen.dryRun || r.DryRun
			seen.Unlock()
			if r.Object.Labels["mutated"] != "yes" {
				return errors.New("mutating handler did not run first")
			}
			if c := r.Object.Data["color"]; c == "red" || c == "blue" {
				r.Refuse("data.color: %s is not allowed", c)
			}
			if c := r.Object.Data["color"]; c == "blue" {
				r.Refuse("data.color: blue is taken")
			}
			size, ok := r.Object.Data["size"]
			if !ok {
				return nil
			}
			if r.Object.Data["panic"] == "true" {
				panic("boom")
			}
			if _, err := strconv.Atoi(size); err != nil {
				return fmt.Errorf("data.size: %q is not a whole number", size)
			}
			if r.Operation == admissionv1.Update && r.Old.Data["size"] != size {
				r.Warn("size changed from %s to %s", r.Old.Data["size"], size)
			}
			return nil
		})
	})

	bad := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad"}, Data: map[string]string{"size": "big"}}
	// The webhooks are registered once the server listens.
	testkit.Eventually(t, wait, func() error {
		err := c.Create(ctx, bad.DeepCopy())
		if err == nil {
			return errors.New("a ConfigMap with size=big was admitted")
		}
		if !strings.Contains(err.Error(), `admission webhook "configmaps.core.setpoint.dev" denied the request: data.size: "big" is not a whole number`) {
			return fmt.Errorf("refused with an unexpected message: %v", err)
		}
		return nil
	})

	// Every problem a handler records is in the one message.
	blue := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "blue"}, Data: map[string]string{"color": "blue"}}
	if err := c.Create(ctx, blue); err == nil || !strings.Contains(err.Error(), "denied the request: data.color: blue is not allowed; data.color: blue is taken") {
		t.Errorf("create with two problems: %v, want both in the message", err)
	}

	good := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "good"}, Data: map[string]string{"size": "3"}}
	if err := c.Create(ctx, good, client.DryRunAll); err != nil {
		t.Fatalf("dry run of a good ConfigMap: %v", err)
	}
	if err := c.Create(ctx, good); err != nil {
		t.Fatalf("create a good ConfigMap: %v", err)
	}
	stored := &corev1.ConfigMap{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(good), stored); err != nil {
		t.Fatal(err)
	}
	if stored.Labels["mutated"] != "yes" || stored.Data["greeting"] != "hello" || stored.Data["size"] != "3" {
		t.Errorf("stored ConfigMap lacks the mutation: labels %v, data %v", stored.Labels, stored.Data)
	}

	warned.Take()
	stored.Data["size"] = "4"
	if err := c.Update(ctx, stored); err != nil {
		t.Fatalf("update size to 4: %v", err)
	}
	if got := warned.Take(); len(got) != 1 || got[0] != "size changed from 3 to 4" {
		t.Errorf("warnings of the update: %q, want [size changed from 3 to 4]", got)
	}
	stored.Data["size"] = "four"
	if err := c.Update(ctx, stored); err == nil || !strings.Contains(err.Error(), `data.size: "four" is not a whole number`) {
		t.Errorf("update to size=four: %v, want refused", err)
	}

	// A panicking handler fails its request with a message, and the
	// server goes on answering.
	p := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "panics"}, Data: map[string]string{"size": "1", "panic": "true"}}
	if err := c.Create(ctx, p); err == nil || !strings.Contains(err.Error(), "panicked: boom") {
		t.Errorf("create with a panicking handler: %v, want an error naming the panic", err)
	}
	if err := c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "after"}, Data: map[string]string{"size": "2"}}); err != nil {
		t.Errorf("create after a panic: %v", err)
	}

	seen.Lock()
	defer seen.Unlock()
	if !seen.dryRun {
		t.Error("no handler call saw DryRun")
	}
	if !strings.Contains(strings.Join(seen.ops, ","), "UPDATE") {
		t.Errorf("operations seen: %v, want an UPDATE", seen.ops)
	}

	// Other namespaces are not sent to this operator's webhooks.
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := c.Get(ctx, client.ObjectKey{Name: "test-" + ns}, &vwc); err != nil {
		t.Fatal(err)
	}
	if sel := vwc.Webhooks[0].NamespaceSelector; sel == nil || len(sel.MatchExpressions) != 1 || sel.MatchExpressions[0].Values[0] != ns {
		t.Errorf("namespace selector %v, want only %s", sel, ns)
	}
}

// Updates that change neither spec nor status are not sent to the
// webhook, so a stopped operator never blocks removing a finalizer;
// spec changes are. A second process with the same certificate Secret
// serves the certificate the first one made.
func TestAdmissionSkipsMetadataOnlyUpdatesAndSharesTheCertificate(t *testing.T) {
	installWidgetCRD(t)
	ns := testkit.Env(t).Namespace(t)
	ctx := t.Context()
	c := testkit.Env(t).Client
	scheme := widgetScheme(t)
	wc, err := client.New(testkit.Env(t).Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	secret := types.NamespacedName{Namespace: ns, Name: "webhook-cert"}
	run := func() *running {
		o := opts(ns)
		o.Scheme = scheme
		o.Webhooks = testkit.Webhooks(t)
		o.Webhooks.CertSecret = secret
		return start(t, nil, o, func(op *operator.Operator) {
			operator.Watch[*Widget](op).OnValidate(func(_ context.Context, r *operator.Review[*Widget]) error {
				if r.Operation == admissionv1.Update {
					return errors.New("widgets are frozen")
				}
				return nil
			})
		})
	}
	first := run()
	w := &Widget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "w"}, Spec: WidgetSpec{Size: 1}}
	testkit.Eventually(t, wait, func() error {
		var vwc admissionregistrationv1.ValidatingWebhookConfiguration
		return c.Get(ctx, client.ObjectKey{Name: "test-" + ns}, &vwc)
	})
	if err := wc.Create(ctx, w); err != nil {
		t.Fatal(err)
	}
	w.Labels = map[string]string{"team": "a"}
	w.Finalizers = []string{"example.com/hold"}
	if err := wc.Update(ctx, w); err != nil {
		t.Fatalf("metadata-only update was sent to the webhook: %v", err)
	}
	w.Spec.Size = 2
	if err := wc.Update(ctx, w); err == nil || !strings.Contains(err.Error(), "widgets are frozen") {
		t.Fatalf("spec update: %v, want refused", err)
	}

	var cert corev1.Secret
	if err := c.Get(ctx, secret, &cert); err != nil {
		t.Fatalf("certificate Secret: %v", err)
	}
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	// Stopped: a finalizer can still be removed.
	if err := wc.Get(ctx, client.ObjectKeyFromObject(w), w); err != nil {
		t.Fatal(err)
	}
	w.Finalizers = nil
	if err := wc.Update(ctx, w); err != nil {
		t.Fatalf("removing a finalizer while the operator is stopped: %v", err)
	}

	run()
	testkit.Eventually(t, wait, func() error {
		w := &Widget{}
		if err := wc.Get(ctx, types.NamespacedName{Namespace: ns, Name: "w"}, w); err != nil {
			return err
		}
		w.Spec.Size = 3
		if err := wc.Update(ctx, w); err == nil || !strings.Contains(err.Error(), "widgets are frozen") {
			return fmt.Errorf("spec update with the second process: %v, want refused", err)
		}
		return nil
	})
	var again corev1.Secret
	if err := c.Get(ctx, secret, &again); err != nil {
		t.Fatal(err)
	}
	if again.ResourceVersion != cert.ResourceVersion {
		t.Error("the second process rewrote the certificate Secret instead of serving the one there")
	}
}
