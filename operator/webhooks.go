package operator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/setpoint-dev/setpoint/internal/certs"
)

// Webhooks configure the admission webhook server that serves the
// OnValidate and OnMutate handlers. The operator makes its own CA and
// serving certificate and registers a ValidatingWebhookConfiguration and a
// MutatingWebhookConfiguration named Options.Name, with one webhook per
// kind that has handlers, so nothing else (cert-manager, a chart's hook)
// is needed.
type Webhooks struct {
	// Host and Port the server listens on (default: all addresses, 9443).
	Host string
	Port int
	// URL is the base address the API server calls when the operator
	// runs outside the cluster, such as https://127.0.0.1:9443 for
	// `setpoint dev`. Set either URL or Service.
	URL string
	// Service is how the API server reaches the operator's pods in the
	// cluster.
	Service *WebhookService
	// CertSecret, when set, keeps the CA and serving certificate in this
	// Secret (namespace/name), so every replica serves the same one.
	// Without it they live in memory, which suits a single process.
	CertSecret types.NamespacedName
	// Timeout is how long the API server waits for an answer (default 10s).
	Timeout time.Duration
	// CertCheckInterval is how often each replica reads CertSecret again
	// (default 10s): a certificate put there (rotated by hand, by another
	// replica's renewal, by cert-manager) is served without a restart, and
	// one within 30 days of its end is renewed.
	CertCheckInterval time.Duration
	// FailurePolicy is what the API server does when the webhook cannot
	// be called: Fail (the default) refuses the request, so no object
	// the checks would refuse gets in while every replica is down;
	// Ignore lets requests through unchecked, so a broken operator never
	// blocks writes of its kinds.
	FailurePolicy admissionregistrationv1.FailurePolicyType
}

// WebhookService names the Service in front of the operator's webhook
// server.
type WebhookService struct {
	Namespace, Name string
	Port            int32 // default 443
}

const (
	certValidity = 10 * 365 * 24 * time.Hour
	// A certificate closer than this to its end is replaced at start.
	certRenewBefore = 30 * 24 * time.Hour
	certCAKey       = "ca.crt"
)

// webhookServer is the operator's admission side: the controller-runtime
// server, the certificate it serves and the kinds it serves for.
type webhookServer struct {
	opts   Webhooks
	server webhook.Server
	cert   atomic.Pointer[tls.Certificate]
	mu     sync.Mutex
	// caBundle is the PEM of the CA that signed cert, for the API server,
	// and after a rotation the CA before it, so the API server trusts
	// both while replicas switch.
	caBundle []byte
	// servedPEM is the certificate served, as PEM.
	servedPEM []byte
}

// bundle is the caBundle to register.
func (ws *webhookServer) bundle() []byte {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.caBundle
}

func newWebhookServer(o Webhooks) (*webhookServer, error) {
	if (o.URL == "") == (o.Service == nil) {
		return nil, errors.New("Options.Webhooks: set exactly one of URL and Service")
	}
	if o.URL != "" {
		u, err := url.Parse(o.URL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("Options.Webhooks.URL %q: want https://host[:port]", o.URL)
		}
	}
	switch o.FailurePolicy {
	case "", admissionregistrationv1.Fail, admissionregistrationv1.Ignore:
	default:
		return nil, fmt.Errorf("Options.Webhooks.FailurePolicy %q: want Fail or Ignore", o.FailurePolicy)
	}
	if o.Port == 0 {
		o.Port = 9443
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	if o.CertCheckInterval == 0 {
		o.CertCheckInterval = 10 * time.Second
	}
	if o.Service != nil && o.Service.Port == 0 {
		o.Service.Port = 443
	}
	ws := &webhookServer{opts: o}
	ws.server = webhook.NewServer(webhook.Options{
		Host: o.Host,
		Port: o.Port,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) {
			c.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				if cert := ws.cert.Load(); cert != nil {
					return cert, nil
				}
				return nil, errors.New("no serving certificate yet")
			}
		}},
	})
	return ws, nil
}

// hosts are the names the API server uses to reach the server, which the
// serving certificate must carry.
func (ws *webhookServer) hosts() []string {
	if s := ws.opts.Service; s != nil {
		return []string{s.Name + "." + s.Namespace + ".svc", s.Name + "." + s.Namespace + ".svc.cluster.local"}
	}
	u, _ := url.Parse(ws.opts.URL)
	return []string{u.Hostname()}
}

// admitter is a registered kind with admission handlers.
type admitter interface {
	admits() (validate, mutate bool)
	admissionHandler(mutate bool) admission.Handler
	kindGVK() schema.GroupVersionKind
}

func (k *Kind[T]) admissionHandler(mutate bool) admission.Handler {
	return &admissionHandler[T]{k: k, mutate: mutate}
}

func (k *Kind[T]) kindGVK() schema.GroupVersionKind { return k.gvk }

// admitted is one kind's webhook, as registered with the API server.
type admitted struct {
	gvk        schema.GroupVersionKind
	resource   string
	namespaced bool
	mutate     bool
}

func (a admitted) path() string {
	verb := "validate"
	if a.mutate {
		verb = "mutate"
	}
	group := a.gvk.Group
	if group == "" {
		group = "core"
	}
	return "/" + verb + "/" + group + "/" + a.gvk.Version + "/" + a.resource
}

// name is the webhook's name in its configuration (one configuration
// per operator): a fully qualified name, such as apps.apps.setpoint.dev or
// configmaps.core.setpoint.dev.
func (a admitted) name() string {
	if strings.Contains(a.gvk.Group, ".") {
		return a.resource + "." + a.gvk.Group
	}
	group := a.gvk.Group
	if group == "" {
		group = "core"
	}
	return a.resource + "." + group + ".setpoint.dev"
}

// setupWebhooks registers the kinds' admission handlers on the server and
// arranges for the certificate and the webhook configurations to be in
// place once the server listens.
func (op *Operator) setupWebhooks(ctx context.Context, kinds []setupper) error {
	var hooks []admitted
	for _, s := range kinds {
		a, ok := s.(admitter)
		if !ok {
			continue
		}
		validate, mutate := a.admits()
		if !validate && !mutate {
			continue
		}
		gvk := a.kindGVK()
		if op.webhooks == nil {
			op.log.Info("Admission handlers are registered but Options.Webhooks is not set: they are not served", "kind", gvk.Kind)
			continue
		}
		m, err := op.mgr.GetRESTMapper().RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("admission for %s: %w", gvk.Kind, err)
		}
		for _, mut := range []bool{false, true} {
			if (mut && !mutate) || (!mut && !validate) {
				continue
			}
			h := admitted{gvk: gvk, resource: m.Resource.Resource, namespaced: m.Scope.Name() == "namespace", mutate: mut}
			// Through the manager, which starts the server on first use.
			op.mgr.GetWebhookServer().Register(h.path(), &admission.Webhook{Handler: a.admissionHandler(mut)})
			hooks = append(hooks, h)
		}
	}
	if len(hooks) == 0 {
		return nil
	}
	ws := op.webhooks
	if err := ws.loadCert(ctx, op); err != nil {
		return err
	}
	// Only a replica that serves should be sent requests: readiness waits
	// for the server to listen.
	if err := op.mgr.AddReadyzCheck("webhooks", ws.server.StartedChecker()); err != nil {
		return fmt.Errorf("readyz: %w", err)
	}
	return op.mgr.Add(&everyReplica{fn: func(ctx context.Context) error {
		// Registering the webhooks before this replica listens would
		// fail requests for nothing; every replica applies the same
		// content, which is a no-op after the first.
		if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(context.Context) (bool, error) {
			return ws.server.StartedChecker()(&http.Request{}) == nil, nil
		}); err != nil {
			return nil // stopped before listening
		}
		register := func(ctx context.Context) error {
			for _, cfg := range webhookConfigs(op.opts.Name, hooks, ws.clientConfig, ws.bundle(), op.opts.Namespaces, ws.opts.Timeout, ws.opts.FailurePolicy) {
				if err := op.mgr.GetClient().Apply(ctx, client.ApplyConfigurationFromUnstructured(cfg), client.FieldOwner(op.opts.Name), client.ForceOwnership); err != nil {
					return fmt.Errorf("register %s %s: %w", cfg.GetKind(), cfg.GetName(), err)
				}
			}
			return nil
		}
		if err := register(ctx); err != nil {
			return err
		}
		op.log.Info("Admission webhooks registered", "name", op.opts.Name, "webhooks", len(hooks))
		tick := time.NewTicker(ws.opts.CertCheckInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				if err := ws.refresh(ctx, op, register); err != nil && ctx.Err() == nil {
					op.log.Error(err, "Webhook certificate not refreshed; serving the current one")
				}
			}
		}
	}})
}

// everyReplica runs in every replica, leader or not.
type everyReplica struct{ fn func(context.Context) error }

func (r *everyReplica) Start(ctx context.Context) error { return r.fn(ctx) }
func (r *everyReplica) NeedLeaderElection() bool        { return false }

// clientConfig is how the API server calls path.
func (ws *webhookServer) clientConfig(path string) admissionregistrationv1.WebhookClientConfig {
	if s := ws.opts.Service; s != nil {
		return admissionregistrationv1.WebhookClientConfig{
			Service: &admissionregistrationv1.ServiceReference{Namespace: s.Namespace, Name: s.Name, Path: &path, Port: &s.Port},
		}
	}
	u := strings.TrimSuffix(ws.opts.URL, "/") + path
	return admissionregistrationv1.WebhookClientConfig{URL: &u}
}

// loadCert reads the serving certificate from CertSecret, or makes one
// (and stores it there) when there is none that fits.
func (ws *webhookServer) loadCert(ctx context.Context, op *Operator) error {
	hosts := ws.hosts()
	use := func(ca, crt, key []byte) error {
		pair, err := tls.X509KeyPair(crt, key)
		if err != nil {
			return fmt.Errorf("webhook serving certificate: %w", err)
		}
		ws.mu.Lock()
		ws.caBundle, ws.servedPEM = ca, crt
		ws.mu.Unlock()
		ws.cert.Store(&pair)
		return nil
	}
	fits := func(s *corev1.Secret) bool {
		return certs.Covers(s.Data[certCAKey], s.Data[corev1.TLSCertKey], hosts, time.Now().Add(certRenewBefore)) && len(s.Data[corev1.TLSPrivateKeyKey]) > 0
	}
	key := ws.opts.CertSecret
	if key.Name != "" {
		s := &corev1.Secret{}
		err := op.mgr.GetAPIReader().Get(ctx, key, s)
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("read webhook certificate Secret %s: %w", key, err)
		}
		if err == nil && fits(s) {
			return use(s.Data[certCAKey], s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
		}
	}
	caPEM, crtPEM, keyPEM, err := ws.issue(op)
	if err != nil {
		return err
	}
	if key.Name == "" {
		return use(caPEM, crtPEM, keyPEM)
	}
	// Another replica may be doing the same: whoever writes first wins,
	// and the others read what it wrote.
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, Labels: map[string]string{"app.kubernetes.io/managed-by": "setpoint"}},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{certCAKey: caPEM, corev1.TLSCertKey: crtPEM, corev1.TLSPrivateKeyKey: keyPEM},
	}
	old := &corev1.Secret{}
	err = op.mgr.GetAPIReader().Get(ctx, key, old)
	switch {
	case apierrors.IsNotFound(err):
		err = op.mgr.GetClient().Create(ctx, s)
	case err == nil:
		s.ResourceVersion = old.ResourceVersion
		err = op.mgr.GetClient().Update(ctx, s)
	}
	if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
		won := &corev1.Secret{}
		if err := op.mgr.GetAPIReader().Get(ctx, key, won); err != nil {
			return fmt.Errorf("read webhook certificate Secret %s: %w", key, err)
		}
		if !fits(won) {
			return fmt.Errorf("webhook certificate Secret %s was just written by another process and does not fit %s", key, strings.Join(hosts, ", "))
		}
		return use(won.Data[certCAKey], won.Data[corev1.TLSCertKey], won.Data[corev1.TLSPrivateKeyKey])
	}
	if err != nil {
		return fmt.Errorf("write webhook certificate Secret %s: %w", key, err)
	}
	return use(caPEM, crtPEM, keyPEM)
}

// webhookConfigs builds the validating and mutating configurations for
// hooks (one that has none is left out). Updates that change neither
// the object's spec nor (for kinds without a spec) anything are not sent:
// the operator's own bookkeeping and a user removing a finalizer never
// wait on the webhook.
func webhookConfigs(name string, hooks []admitted, clientConfig func(string) admissionregistrationv1.WebhookClientConfig, caBundle []byte, namespaces []string, timeout time.Duration, policy admissionregistrationv1.FailurePolicyType) []*unstructured.Unstructured {
	none := admissionregistrationv1.SideEffectClassNone
	fail := admissionregistrationv1.Fail
	if policy != "" {
		fail = policy
	}
	secs := int32(timeout / time.Second)
	var validating []admissionregistrationv1.ValidatingWebhook
	var mutating []admissionregistrationv1.MutatingWebhook
	for _, h := range hooks {
		cc := clientConfig(h.path())
		cc.CABundle = caBundle
		scope := admissionregistrationv1.ClusterScope
		if h.namespaced {
			scope = admissionregistrationv1.NamespacedScope
		}
		common := struct {
			rules      []admissionregistrationv1.RuleWithOperations
			nsSelector *metav1.LabelSelector
			conditions []admissionregistrationv1.MatchCondition
		}{
			rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{h.gvk.Group}, APIVersions: []string{h.gvk.Version}, Resources: []string{h.resource}, Scope: &scope},
			}},
			conditions: []admissionregistrationv1.MatchCondition{{
				Name:       "spec-changed",
				Expression: "request.operation != 'UPDATE' || (has(object.spec) ? object.spec != oldObject.spec : true)",
			}},
		}
		if len(namespaces) > 0 && h.namespaced {
			common.nsSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
				Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: namespaces,
			}}}
		}
		if h.mutate {
			reinvoke := admissionregistrationv1.NeverReinvocationPolicy
			mutating = append(mutating, admissionregistrationv1.MutatingWebhook{
				Name: h.name(), ClientConfig: cc, Rules: common.rules, FailurePolicy: &fail, SideEffects: &none,
				TimeoutSeconds: &secs, AdmissionReviewVersions: []string{"v1"}, NamespaceSelector: common.nsSelector,
				MatchConditions: common.conditions, ReinvocationPolicy: &reinvoke,
			})
		} else {
			validating = append(validating, admissionregistrationv1.ValidatingWebhook{
				Name: h.name(), ClientConfig: cc, Rules: common.rules, FailurePolicy: &fail, SideEffects: &none,
				TimeoutSeconds: &secs, AdmissionReviewVersions: []string{"v1"}, NamespaceSelector: common.nsSelector,
				MatchConditions: common.conditions,
			})
		}
	}
	meta := metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/managed-by": "setpoint"}}
	var out []*unstructured.Unstructured
	add := func(kind string, obj runtime.Object) {
		u := &unstructured.Unstructured{Object: toMap(obj)}
		u.SetAPIVersion(admissionregistrationv1.SchemeGroupVersion.String())
		u.SetKind(kind)
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		out = append(out, u)
	}
	if len(validating) > 0 {
		add("ValidatingWebhookConfiguration", &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: meta, Webhooks: validating})
	}
	if len(mutating) > 0 {
		add("MutatingWebhookConfiguration", &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: meta, Webhooks: mutating})
	}
	return out
}

func toMap(v runtime.Object) map[string]any {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(v)
	if err != nil {
		panic(fmt.Sprintf("setpoint: convert %T: %v", v, err)) // built from our own typed values
	}
	return m
}
