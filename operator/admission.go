package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Review is one admission request for an object of kind T, as an
// OnValidate or OnMutate handler sees it.
type Review[T client.Object] struct {
	// Operation is admissionv1.Create or admissionv1.Update.
	Operation admissionv1.Operation
	// Object is the object as it would be stored. An OnMutate handler
	// changes it in place; an OnValidate handler must not.
	Object T
	// Old is the stored object an update replaces; the zero T on create.
	Old T
	// User made the request.
	User authenticationv1.UserInfo
	// DryRun requests are not stored: a handler must not act on them
	// outside the API server.
	DryRun bool

	// Findings collects the handler's warnings and problems (Warn, Refuse).
	Findings

	// c makes the SubjectAccessReviews of Allowed.
	c client.Client
}

// Allowed reports whether the user who made the request may do verb on
// a resource (group "" for the core group) in namespace, by a
// SubjectAccessReview, for messages that would tell the user what only
// such a user may learn: list the keys of a Secret only to someone who
// may read it. It is false when the review cannot be made (the
// operator's role lacks create on subjectaccessreviews).
func (r *Review[T]) Allowed(ctx context.Context, verb, group, resource, namespace, name string) bool {
	if r.c == nil {
		return false
	}
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range r.User.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: r.User.Username, UID: r.User.UID, Groups: r.User.Groups, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Group: group, Resource: resource, Namespace: namespace, Name: name},
	}}
	if err := r.c.Create(ctx, sar); err != nil {
		return false
	}
	return sar.Status.Allowed
}

// Findings collects what an admission check found. A check written as a
// pure function can take *Findings and be table-tested without a request.
type Findings struct {
	// Problems refuse the request, all of them in one message.
	Problems []string
	// Warnings are shown to the user (kubectl prints them); the request
	// still goes through.
	Warnings []string
}

// Warn records a warning: for what is probably wrong but may be fine,
// such as a reference to a Secret that does not exist yet.
func (f *Findings) Warn(format string, args ...any) {
	f.Warnings = append(f.Warnings, fmt.Sprintf(format, args...))
}

// Refuse records a problem: the request is refused when the handler
// returns, with every problem found, so the user fixes them in one go.
func (f *Findings) Refuse(format string, args ...any) {
	f.Problems = append(f.Problems, fmt.Sprintf(format, args...))
}

// AdmitFunc handles one admission request. Problems recorded with
// Review.Refuse, or a returned error, refuse the request with their text
// as the message the user sees (an apierrors status error keeps its own
// code and details).
type AdmitFunc[T client.Object] func(ctx context.Context, r *Review[T]) error

// OnValidate registers a validating admission handler, called on create
// and on updates that change the object's spec (updates of metadata or
// status alone, such as a finalizer being removed, are not sent to it, so
// a stopped operator never blocks them). It runs in every replica, leader
// or not, when the operator has Options.Webhooks; without them it is not
// served. Validation that CEL in the CRD can express belongs there: use
// this for what needs other objects or a computation.
func (k *Kind[T]) OnValidate(fn AdmitFunc[T]) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.validators = append(k.validators, fn)
}

// OnMutate registers a mutating admission handler that changes
// Review.Object in place (defaults that depend on more than the schema,
// for example); it is sent the same requests as OnValidate. Mutating
// handlers run before validating ones.
func (k *Kind[T]) OnMutate(fn AdmitFunc[T]) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.mutators = append(k.mutators, fn)
}

// admits reports the kind's admission handlers, for the webhook server.
func (k *Kind[T]) admits() (validate, mutate bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.validators) > 0, len(k.mutators) > 0
}

// admissionHandler serves one kind's validating or mutating handlers.
type admissionHandler[T client.Object] struct {
	k      *Kind[T]
	mutate bool
}

var _ admission.Handler = (*admissionHandler[client.Object])(nil)

func (h *admissionHandler[T]) Handle(ctx context.Context, req admission.Request) (resp admission.Response) {
	log := h.k.logger().WithValues("namespace", req.Namespace, "name", req.Name, "operation", req.Operation, "mutate", h.mutate)
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	r := &Review[T]{Operation: req.Operation, Object: h.k.newT(), User: req.UserInfo, DryRun: req.DryRun != nil && *req.DryRun, c: h.k.op.mgr.GetClient()}
	if err := json.Unmarshal(req.Object.Raw, r.Object); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode %s: %w", h.k.gvk.Kind, err))
	}
	if req.Operation == admissionv1.Update {
		r.Old = h.k.newT()
		if err := json.Unmarshal(req.OldObject.Raw, r.Old); err != nil {
			return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode old %s: %w", h.k.gvk.Kind, err))
		}
	}
	h.k.mu.Lock()
	fns := h.k.validators
	if h.mutate {
		fns = h.k.mutators
	}
	h.k.mu.Unlock()

	defer func() {
		// A bug in one handler answers this request with an error; it
		// must not take down the webhook server of every kind.
		if p := recover(); p != nil {
			log.Error(fmt.Errorf("%v", p), "Admission handler panicked")
			resp = admission.Errored(http.StatusInternalServerError, fmt.Errorf("admission handler for %s panicked: %v", h.k.gvk.Kind, p))
		}
	}()
	var original T
	if h.mutate {
		original = r.Object.DeepCopyObject().(T)
	}
	for _, fn := range fns {
		if err := fn(ctx, r); err != nil {
			var status apierrors.APIStatus
			if errors.As(err, &status) {
				log.V(1).Info("Admission refused", "reason", err.Error())
				return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: new(status.Status())}}.WithWarnings(r.Warnings...)
			}
			r.Problems = append(r.Problems, err.Error())
		}
	}
	if len(r.Problems) > 0 {
		msg := strings.Join(r.Problems, "; ")
		log.V(1).Info("Admission refused", "reason", msg)
		return admission.Denied(msg).WithWarnings(r.Warnings...)
	}
	if !h.mutate {
		return admission.Allowed("").WithWarnings(r.Warnings...)
	}
	ops, err := mutations(original, r.Object)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("%s: %w", h.k.gvk.Kind, err))
	}
	if len(ops) == 0 {
		return admission.Allowed("").WithWarnings(r.Warnings...)
	}
	return admission.Patched("", ops...).WithWarnings(r.Warnings...)
}

// mutations is the JSON patch from before to after, both typed. It is
// computed between two encodings of the Go type, not against the request's
// raw JSON, so fields the Go type drops or adds when encoding (unknown
// fields, zero values) are left alone; only what a handler changed is
// patched. A replace becomes an add, which sets a member whether or not
// the raw object spelled it out.
func mutations(before, after any) ([]jsonpatch.JsonPatchOperation, error) {
	b, err := json.Marshal(before)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	a, err := json.Marshal(after)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	ops, err := jsonpatch.CreatePatch(b, a)
	if err != nil {
		return nil, fmt.Errorf("diff: %w", err)
	}
	for i := range ops {
		if ops[i].Operation == "replace" {
			ops[i].Operation = "add"
		}
	}
	return ops, nil
}
