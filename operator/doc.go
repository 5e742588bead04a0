// Package operator is Setpoint's library for writing Kubernetes operators
// with Kopf's ease on controller-runtime's foundation.
//
// An author registers typed handlers for a kind and Setpoint does the
// watching, cause detection, bookkeeping, retries and reporting:
//
//	op, _ := operator.New(cfg, operator.Options{Scheme: scheme})
//	things := operator.Watch[*v1alpha1.Thing](op)
//	things.OnCreate(createThing)
//	things.OnField("spec.size", resize, operator.Retries(5))
//	things.OnDelete(cleanUp)
//	things.Every(30*time.Second, poll, operator.Idle(time.Minute))
//	_ = op.Run(ctx)
//
// How it works, and what it promises:
//
//   - Causes. A pass decides between create, update, delete and resume by
//     comparing the object with the diff base stored on it (annotation
//     <prefix>/last-handled-configuration: spec and other user fields plus
//     labels and annotations). A change made while the operator was down is
//     still an update after a restart; status-only changes, resyncs and
//     the operator's own bookkeeping cause nothing, and a pass with nothing
//     to do makes no write.
//   - Progress. Each handler's state (started, running, retries, delayed
//     until, success or failure, message) is kept in
//     <prefix>/handler-progress while a flow runs, and written before each
//     call, so a flow cut by a crash resumes where it stopped and never
//     re-runs a handler that succeeded, and a call that killed the process
//     counts as a failed attempt. A flow of one handler that succeeds at
//     once costs two writes (the attempt; then diff base and progress in
//     one patch); each further handler costs one more. If the object
//     changes mid-flow, the flow starts again for the new version.
//   - Errors. A plain error is retried with capped exponential backoff;
//     Temporary(err, d) retries after d; Permanent(err) stops. Retries(n)
//     and Timeout(d) bound a handler. A panic is an error. One object's
//     retries are scheduled with RequeueAfter and never delay another's.
//   - Children. Kind.Children makes a kind level-triggered: a pure function
//     returns the desired children; each pass applies (server-side) only
//     those that differ from the cluster, prunes the ones it made that are
//     no longer desired, and Kind.Status writes the status only when it
//     changed. A converged pass writes nothing, and nothing is kept on the
//     parent for it.
//   - Deletion. A finalizer is added only when a non-optional delete
//     handler exists, and removed once the delete handlers have finished.
//     Timers and daemons never hold a finalizer.
//   - Reporting. Handler outcomes and the handler's log lines (Info up to
//     Options.EventLevel, and errors) become Events on the object,
//     rate-limited per object. Prometheus metrics per handler are served
//     with controller-runtime's.
//   - Robustness. Objects are read as unstructured and decoded one by one:
//     an object that does not decode gets a Warning Event and is skipped;
//     the operator does not crash and other objects are not affected.
//
// The annotation prefix (Options.Prefix) is per operator, so two operators
// may handle the same kind without clobbering each other's books.
package operator
