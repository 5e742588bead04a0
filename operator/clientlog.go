package operator

import (
	"github.com/go-logr/logr"

	"github.com/setpoint-dev/setpoint/internal/logging"
)

// MaxLogVerbosity is the most verbose log line CappedLogger lets
// through. From verbosity 6 on, client-go's transport logs request URLs,
// then headers and, at 8, whole request and response bodies: the Secrets
// an operator reads among them. It logs through klog's global logger and
// through the logger in each request's context, which is the
// operator's.
const MaxLogVerbosity = logging.MaxVerbosity

// CappedLogger is log with lines above MaxLogVerbosity dropped, whatever
// log's level, so no verbosity a user can set puts Secret data in the
// logs. New caps Options.Logger with it; a binary also gives it to
// klog.SetLogger and ctrl.SetLogger.
func CappedLogger(log logr.Logger) logr.Logger {
	return logging.Cap(log, MaxLogVerbosity)
}
